"""The latent analysis of Task 3 (and extras/q2_equivariance.py): encode and decode in batches, the
geometry of a latent space (within-class spread, between-class separation, nearest-class-mean and
linear-probe accuracy), simple style measures of digits and the held-out R^2 with which a linear
map recovers them from a code. Tensors in, numbers out."""
import torch
import torch.nn.functional as F
from torch import nn

from train import eval_mode


@torch.no_grad()
def apply_batched(module: nn.Module, x: torch.Tensor, device, batch_size: int = 1000) -> torch.Tensor:
    """module(x) on `device` in eval mode (every mode restored after), in batches, back on the CPU:
    encode or decode a whole split."""
    with eval_mode(module.to(device)):
        return torch.cat([module(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


def latent_geometry(z_train, y_train, z_test, y_test, seed: int) -> dict:
    """Within-class spread and between-class separation of test codes, made comparable across
    latent spaces by dividing every code by the RMS distance of the test codes to their overall
    mean (so each space has total spread 1), plus nearest-class-mean and linear-probe accuracy."""
    within, between, pair = spread_and_separation(z_test, y_test)
    pair.fill_diagonal_(float("inf"))
    nearest = pair.min(1)  # each class's nearest other class mean, in the 12-D normalised space

    def ncm(z, y):  # nearest class mean: class means from the training codes z, y, applied to the test codes
        means = torch.stack([z[y == c].mean(0) for c in range(10)])
        return (torch.cdist(z_test, means).argmin(1) == y_test).float().mean().item()

    return {"within_class_spread": within, "between_class_separation": between,
            "separation_to_spread_ratio": between / within,
            "class_mean_distances": pair.fill_diagonal_(0).tolist(),
            "nearest_class": nearest.indices.tolist(), "nearest_class_distance": nearest.values.tolist(),
            "nearest_class_mean_accuracy": ncm(z_train, y_train),
            "nearest_class_mean_accuracy_100_labels": ncm(z_train[:100], y_train[:100]),  # training images 0..99
            "linear_probe_accuracy": linear_probe(z_train, y_train, z_test, y_test, seed),
            "normalisation": "codes divided by their RMS distance to the overall mean of the test codes",
            "whitened": whitened_geometry(z_test, y_test)}


def spread_and_separation(z, y):
    """Scale the codes z to total spread 1 (RMS distance to their mean); return the mean distance of a code to its
    class mean, the mean distance between two class means, and the 10 x 10 matrix of class-mean distances."""
    zs = z / (z - z.mean(0)).pow(2).sum(1).mean().sqrt()
    means = torch.stack([zs[y == c].mean(0) for c in range(10)])
    within = (zs - means[y]).norm(dim=1).mean().item()
    pair = torch.cdist(means, means)
    return within, (pair.sum() / (10 * 9)).item(), pair  # the mean over the 45 distinct pairs (each counted twice)


def whitened_geometry(z, y) -> dict:
    """Spread and separation after whitening: the codes are mapped so that their covariance is the identity (every
    direction has the same variance), then scaled to total spread 1. Unchanged by any invertible linear map of the
    codes, so a difference between two code spaces here does not come from how they stretch some directions."""
    zc = (z - z.mean(0)).double()
    eigenvalues, vectors = torch.linalg.eigh(zc.T @ zc / len(z))
    within, between, _ = spread_and_separation((zc @ vectors / eigenvalues.clamp_min(1e-12).sqrt()).float(), y)
    return {"within_class_spread": within, "between_class_separation": between,
            "separation_to_spread_ratio": between / within}


def fit_linear_probe(z_train, y_train, seed: int, steps: int = 300):
    """Softmax regression on standardised codes (full batch: 60k x d is tiny); returns predict(z) -> labels."""
    torch.manual_seed(seed)
    mu, sd = z_train.mean(0), z_train.std(0) + 1e-8
    probe = nn.Linear(z_train.shape[1], 10)
    opt = torch.optim.Adam(probe.parameters(), lr=0.05)
    zt = (z_train - mu) / sd
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(probe(zt), y_train).backward()
        opt.step()
    probe.requires_grad_(False)
    return lambda z: probe((z - mu) / sd).argmax(1)


def linear_probe(z_train, y_train, z_test, y_test, seed: int) -> float:
    """Test accuracy of a softmax-regression classifier trained on the train codes."""
    return (fit_linear_probe(z_train, y_train, seed)(z_test) == y_test).float().mean().item()


def style_measures(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Simple appearance measures of each image (N, 1, 28, 28) in [0, 1], in pixels where it applies:
    ink mass (sum of intensities), stroke thickness (ink area / half its boundary length: a stroke of
    width w and length L has area wL and boundary 2L), slant (horizontal shift per row of the ink's
    second moments, positive = leaning right), centre of mass (x, y), width and height of the pixels
    above 0.5."""
    img = x[:, 0].double()
    n, h, w = img.shape
    cols, rows = torch.arange(w, dtype=img.dtype), torch.arange(h, dtype=img.dtype)
    mass = img.sum((1, 2)).clamp_min(1e-8)
    cx = (img * cols).sum((1, 2)) / mass
    cy = (img * rows[:, None]).sum((1, 2)) / mass
    dx, dy = cols[None, None, :] - cx[:, None, None], rows[None, :, None] - cy[:, None, None]
    mu11, mu02 = (img * dx * dy).sum((1, 2)) / mass, (img * dy * dy).sum((1, 2)) / mass
    ink = img > 0.5
    padded = F.pad(ink[:, None].float(), (1, 1, 1, 1))[:, 0]
    interior = (padded[:, :-2, 1:-1] * padded[:, 2:, 1:-1] * padded[:, 1:-1, :-2] * padded[:, 1:-1, 2:]).bool() & ink
    area, boundary = ink.sum((1, 2)).double(), (ink & ~interior).sum((1, 2)).double()

    def extent(mask_1d):  # (n, k) bool -> last - first + 1, 0 if empty
        k = mask_1d.shape[1]
        idx = torch.arange(k)
        first = torch.where(mask_1d, idx, k).min(1).values
        last = torch.where(mask_1d, idx, -1).max(1).values
        return (last - first + 1).clamp_min(0).double()

    return {"ink_mass": mass, "stroke_thickness": area / (boundary / 2).clamp_min(1), "slant": -mu11 / mu02.clamp_min(1e-8),
            "centre_x": cx, "centre_y": cy, "width": extent(ink.any(1)), "height": extent(ink.any(2))}


def style_r2(z_train, m_train: dict, z_test, m_test: dict) -> dict[str, float]:
    """Held-out R^2 of a least-squares linear map (with intercept) from the codes to each measure:
    fitted on the training images, scored on the test images."""
    def design(z):
        return torch.cat([z.double(), torch.ones(len(z), 1, dtype=torch.float64)], 1)

    out = {}
    for key in m_train:
        coef = torch.linalg.lstsq(design(z_train), m_train[key][:, None]).solution
        pred = (design(z_test) @ coef)[:, 0]
        ss_res = (m_test[key] - pred).pow(2).sum()
        ss_tot = (m_test[key] - m_test[key].mean()).pow(2).sum()
        out[key] = (1 - ss_res / ss_tot).item() if ss_tot > 0 else None  # None: the measure is constant
    return out


def per_class(values: torch.Tensor, labels: torch.Tensor) -> list[float]:
    return [values[labels == c].mean().item() for c in range(10)]


def within_class_pixel_std(images: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over classes of the mean per-pixel standard deviation within the class."""
    return sum(images[labels == c].std(0).mean().item() for c in range(10)) / 10


def pseudo_label_report(pseudo: torch.Tensor, kept: torch.Tensor, truth: torch.Tensor) -> dict:
    """How many pseudo-labels were kept and how many of them are right, overall and per true class."""
    right = pseudo == truth
    return {"kept": int(kept.sum()), "accuracy": right[kept].float().mean().item() if kept.any() else None,
            "kept_per_class": torch.bincount(truth[kept], minlength=10).tolist(),
            "right_per_class": torch.bincount(truth[kept & right], minlength=10).tolist()}
