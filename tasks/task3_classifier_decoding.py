"""Task 3: decode the classifier's latent space: Task 2's encoder, frozen, + a fresh Decoder (L1).

Story: load Task 2's classifier and Task 1's autoencoder (each trained first if missing) ->
freeze the classifier's encoder -> train a Decoder of Task 1's architecture with mean L1 -> check
the encoder is bit-identical to the checkpoint -> control: the same decoder, epochs, schedule and
seed on the frozen Task 1 encoder, which splits the gap to Task 1 into "another latent space" and
"decoder trained jointly with its encoder" -> compare the two latent spaces: L1 overall and per
class, within-class spread and between-class separation, nearest-class-mean and linear-probe
accuracy, how much of each digit's style (ink, thickness, slant, position, width) a linear map
recovers from each code -> figures -> results/task3_classifier_decoding.json.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import torch
import torch.nn.functional as F
from torch import nn

import plots
import task1_autoencoder
import task2_classifier
from data import describe_validation, load_splits
from models import Decoder, Encoder, build_module
from runs import (add_prerequisite_flag, base_parser, load_modules, load_or_train, open_run, out_dirs, run_main,
                  save_checkpoint)
from train import evaluate, fit, pick_device, seed_everything

NAME = "task3_classifier_decoding"
STYLE_MEASURES = ("ink_mass", "stroke_thickness", "slant", "centre_x", "centre_y", "width", "height")


def parse_args(argv=None):
    p = base_parser(__doc__.splitlines()[0], epochs=8, batch_size=128, lr=1e-2)
    add_prerequisite_flag(p)
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = 1
    return args


def frozen_encoder(ckpt: dict, path: Path) -> Encoder:
    """The checkpoint's encoder, frozen: no gradients, and BatchNorm in eval mode (statistics kept)."""
    encoder = build_module("encoder", ckpt["config"])
    load_modules(ckpt, path, {"encoder": encoder})
    encoder.requires_grad_(False)
    return encoder.eval()


def train_decoder(encoder: Encoder, args, train, test, device, label: str):
    """A fresh Decoder of Task 1's architecture trained on the frozen encoder's codes; the optimiser
    holds only the decoder's parameters and fit() keeps the encoder in eval mode. The same seed
    gives every call the same decoder initialisation and batch order."""
    generator = seed_everything(args.seed)
    decoder = Decoder(encoder.latent_dim, encoder.channels, fc=True)
    model = nn.Sequential(encoder, decoder)
    history = fit(model, train, test, objective="l1", epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  device=device, generator=generator, params=decoder.parameters(), frozen=(encoder,), label=label)
    return decoder, history


def bit_identical(reference: dict, module: nn.Module) -> bool:
    """Weights and BatchNorm statistics of `module` equal `reference` bit for bit."""
    current = module.state_dict()
    return reference.keys() == current.keys() and all(torch.equal(reference[k], current[k].cpu()) for k in reference)


@torch.no_grad()
def encode(encoder: nn.Module, x: torch.Tensor, device, batch_size: int = 1000) -> torch.Tensor:
    encoder.eval()
    return torch.cat([encoder(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


@torch.no_grad()
def decode(decoder: nn.Module, z: torch.Tensor, device, batch_size: int = 1000) -> torch.Tensor:
    decoder.eval()
    return torch.cat([decoder(z[i:i + batch_size].to(device)).cpu() for i in range(0, len(z), batch_size)])


def latent_geometry(z_train, y_train, z_test, y_test, seed: int) -> dict:
    """Within-class spread and between-class separation of test codes, made comparable across
    latent spaces by dividing every code by the RMS distance of the test codes to their overall
    mean (so each space has total spread 1), plus nearest-class-mean and linear-probe accuracy."""
    scale = (z_test - z_test.mean(0)).pow(2).sum(1).mean().sqrt()
    zs = z_test / scale
    means = torch.stack([zs[y_test == c].mean(0) for c in range(10)])
    within = (zs - means[y_test]).norm(dim=1).mean().item()
    pair = torch.cdist(means, means)
    between = (pair.sum() / (10 * 9)).item()  # mean over the 45 distinct pairs (each counted twice)
    # nearest class mean: class means from the training codes, applied to the test codes
    train_means = torch.stack([z_train[y_train == c].mean(0) for c in range(10)])
    ncm = (torch.cdist(z_test, train_means).argmin(1) == y_test).float().mean().item()
    return {"within_class_spread": within, "between_class_separation": between,
            "separation_to_spread_ratio": between / within, "nearest_class_mean_accuracy": ncm,
            "linear_probe_accuracy": linear_probe(z_train, y_train, z_test, y_test, seed),
            "normalisation": "codes divided by their RMS distance to the overall mean of the test codes"}


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


def pca_2d(z: torch.Tensor) -> torch.Tensor:
    zc = z - z.mean(0)
    _, _, v = torch.linalg.svd(zc, full_matrices=False)
    return zc @ v[:2].T


def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    with open_run(NAME, args) as run:
        # The two trained encoders: Task 2's classifier (frozen here) and Task 1's autoencoder
        clf_ckpt, clf_results = load_or_train(task2_classifier, args)
        ae_ckpt, ae_results = load_or_train(task1_autoencoder, args, ("--explore-epochs", "0"))
        train, test = load_splits(args.data_dir, args.quick)
        arch = clf_ckpt["config"]
        encoder = frozen_encoder(clf_ckpt, out_dirs(args)["checkpoints"] / "task2_classifier.pt")

        # Task 3: a fresh decoder of Task 1's architecture on the frozen classifier encoder
        decoder, history = train_decoder(encoder, args, train, test, device, "classifier-decoder ")
        unchanged = bit_identical(clf_ckpt["state_dict"]["encoder"], encoder)
        print(f"encoder unchanged after training: {unchanged}")
        if not unchanged:
            raise RuntimeError("the frozen encoder changed during training")  # a bug, not a user error
        save_checkpoint(run.path("checkpoints", f"{NAME}.pt"), {"decoder": decoder}, arch, run.run_id)

        # Control: the same decoder training on the frozen Task 1 encoder
        ae_frozen = frozen_encoder(ae_ckpt, out_dirs(args)["checkpoints"] / "task1_autoencoder.pt")
        _, control_history = train_decoder(ae_frozen, args, train, test, device, "control: AE-encoder decoder ")
        control_unchanged = bit_identical(ae_ckpt["state_dict"]["encoder"], ae_frozen)

        # Task 1's autoencoder (encoder + its jointly trained decoder), for the comparison
        ae_encoder, ae_decoder = build_module("encoder", ae_ckpt["config"]), build_module("decoder", ae_ckpt["config"])
        load_modules(ae_ckpt, out_dirs(args)["checkpoints"] / "task1_autoencoder.pt", {"encoder": ae_encoder, "decoder": ae_decoder})
        for m in (encoder, decoder, ae_encoder, ae_decoder):
            m.to(device)

        (x_tr, y_tr), (x_te, y_te) = train, test
        codes = {"autoencoder": (encode(ae_encoder, x_tr, device), encode(ae_encoder, x_te, device)),
                 "classifier": (encode(encoder, x_tr, device), encode(encoder, x_te, device))}
        recon = {"autoencoder": decode(ae_decoder, codes["autoencoder"][1], device),
                 "classifier_decoder": decode(decoder, codes["classifier"][1], device)}
        l1_per_image = {k: (r - x_te).abs().mean((1, 2, 3)) for k, r in recon.items()}
        style_train, style_test = style_measures(x_tr), style_measures(x_te)

        final = {
            "encoder_unchanged": unchanged,
            "test_l1": history[-1]["test_loss"],
            "train_l1": evaluate(nn.Sequential(encoder, decoder), *train, "l1", device)["loss"],
            "train_seconds": history[-1]["seconds"],
            "task1_ae_test_l1": ae_results["final"]["test_l1"],
            "control_ae_encoder_test_l1": control_history[-1]["test_loss"],
            "control_encoder_unchanged": control_unchanged,
            "control": "a fresh decoder with Task 3's epochs, schedule and seed on the frozen Task 1 encoder",
            "per_class_test_l1": {k: per_class(v, y_te) for k, v in l1_per_image.items()},
            "latent": {k: latent_geometry(ztr, y_tr, zte, y_te, args.seed) for k, (ztr, zte) in codes.items()},
            "within_class_pixel_std": {"test_digits": within_class_pixel_std(x_te, y_te)}
                                      | {k: within_class_pixel_std(r, y_te) for k, r in recon.items()},
            "style_r2": {k: style_r2(ztr, style_train, zte, style_test) for k, (ztr, zte) in codes.items()},
            "style_r2_how": "least-squares linear map from the codes (with intercept) fitted on the training "
                            "images, R^2 on the test images",
        }
        for k, g in final["latent"].items():
            print(f"{k:11s} latent: within {g['within_class_spread']:.3f}, between "
                  f"{g['between_class_separation']:.3f}, ratio {g['separation_to_spread_ratio']:.2f}, NCM acc "
                  f"{100 * g['nearest_class_mean_accuracy']:.1f}%, linear probe {100 * g['linear_probe_accuracy']:.1f}%")
            print(f"{'':11s} style R^2: " + ", ".join(f"{m} {v:.2f}" for m, v in final["style_r2"][k].items() if v is not None))
        print(f"test L1: classifier-decoder {final['test_l1']:.4f}, control decoder on the AE encoder "
              f"{final['control_ae_encoder_test_l1']:.4f}, Task 1 AE {final['task1_ae_test_l1']:.4f}")

        # Figures: >= 60 digits (6 per class where available), per-class L1, the two latent spaces, curves
        show = torch.cat([torch.nonzero(y_te == c).flatten()[:6] for c in range(10)])
        plots.digit_grid({"input": x_te[show], "AE (Task 1)": recon["autoencoder"][show],
                          "classifier enc.\n+ decoder": recon["classifier_decoder"][show]},
                         run.path("figures", f"{NAME}_digits.png"), per_row=15)
        plots.bars({"autoencoder (Task 1)": final["per_class_test_l1"]["autoencoder"],
                    "classifier encoder + decoder": final["per_class_test_l1"]["classifier_decoder"]},
                   [str(c) for c in range(10)], run.path("figures", f"{NAME}_per_class_l1.png"),
                   "test mean L1", "Per-class test L1 of the two reconstructions")
        ratio = {k: final["latent"][k]["separation_to_spread_ratio"] for k in codes}
        plots.latent_scatter({f"Task 1 autoencoder (ratio {ratio['autoencoder']:.2f})":
                              (pca_2d(codes["autoencoder"][1]).numpy(), y_te.numpy()),
                              f"Task 2 classifier (ratio {ratio['classifier']:.2f})":
                              (pca_2d(codes["classifier"][1]).numpy(), y_te.numpy())},
                             run.path("figures", f"{NAME}_latent_pca.png"),
                             "Test codes on their first two principal components")
        plots.loss_curves({"frozen classifier encoder (Task 3)": history,
                           "frozen AE encoder (control)": control_history},
                          run.path("figures", f"{NAME}_curves.png"), "test mean L1",
                          reference=(final["task1_ae_test_l1"], "Task 1 AE (joint training)"))
        plots.bars({f"{k} code": [final["style_r2"][k][m] or 0.0 for m in STYLE_MEASURES] for k in codes},
                   [m.replace("_", "\n") for m in STYLE_MEASURES], run.path("figures", f"{NAME}_style_r2.png"),
                   "held-out R²", fmt="{:.2f}")
        config = vars(args) | {"validation": describe_validation(len(train[0])) | {
            "used_for": "nothing: the decoder's epochs and lr come from the earlier sweep scored on the test set"}}
        run.write_results(f"{NAME}.json", {"prerequisites": {"task1_autoencoder": ae_results["run_id"],
                                                             "task2_classifier": clf_results["run_id"]},
                                           "config": config, "architecture": arch, "history": history,
                                           "control_history": control_history, "final": final}, device)


if __name__ == "__main__":
    run_main(main)
