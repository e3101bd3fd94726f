"""Known answers for every number the report computes from the trained models: held-out R^2, the
standard errors, the latent geometry, the probes, the style measures, the Q2 overlap error, and
what the few-shot recipes actually train with (augmentation and learning-rate schedule)."""
import math

import pytest
import torch
from torch import nn

import fewshot
from analysis import latent_geometry, linear_probe, per_class, style_measures, style_r2, within_class_pixel_std
from fewshot import pretraining_gain
from models import Encoder


# ----------------------------------------------------------------------------- R^2, standard errors
def test_r2_is_held_out():
    """A relation that holds on the fitting set only: held out, R^2 is about 0 or below (1 if scored on
    the fitting set); a relation that holds on both gives 1."""
    g = torch.Generator().manual_seed(0)
    z_fit, z_score = torch.randn(200, 3, generator=g), torch.randn(200, 3, generator=g)
    w = torch.tensor([[1.0], [-2.0], [0.5]])
    fit_only = style_r2(z_fit, {"m": (z_fit @ w)[:, 0].double()}, z_score, {"m": torch.randn(200, generator=g).double()})
    assert fit_only["m"] < 0.05
    both = style_r2(z_fit, {"m": (z_fit @ w)[:, 0].double() + 3}, z_score, {"m": (z_score @ w)[:, 0].double() + 3})
    assert both["m"] == pytest.approx(1.0, abs=1e-9)


def test_standard_errors_match_a_hand_computation():
    # paired: differences 1, 2, 3, 4: mean 2.5, sample variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3, / n = 5/12
    rows = lambda accs: [{"seed": i, "test_accuracy": a} for i, a in enumerate(accs)]  # noqa: E731
    spread = pretraining_gain({"test_accuracy_mean": 2.5, "test_accuracy_std": 0.3, "seeds": 3, "per_seed": rows([1, 2, 3, 4])},
                              {"test_accuracy_mean": 0.0, "test_accuracy_std": 0.4, "seeds": 4, "per_seed": rows([0] * 4)})
    assert spread["paired_standard_error"] == pytest.approx(math.sqrt(5 / 12))
    assert spread["standard_error"] == pytest.approx(math.sqrt(0.3 ** 2 / 3 + 0.4 ** 2 / 4))  # unpaired, by hand
    t4 = {"recipe": {"name": "plain"}, "test_accuracy_mean": 0.6, "test_accuracy_std": 0.1, "seeds": 2,
          "per_seed": [{"seed": 0, "test_accuracy": 0.5}, {"seed": 1, "test_accuracy": 0.7}]}
    t5 = {"recipe": {"name": "fine-tune"}, "test_accuracy_mean": 0.8, "test_accuracy_std": 0.2, "seeds": 2,
          "per_seed": [{"seed": 1, "test_accuracy": 0.9}, {"seed": 0, "test_accuracy": 0.7}]}
    gain = pretraining_gain(t5, t4)  # pairs by seed: 0.7 - 0.5 and 0.9 - 0.7, both 0.2: no spread
    assert gain["test_accuracy_difference"] == pytest.approx(0.2)
    assert gain["standard_error"] == pytest.approx(math.sqrt(0.04 / 2 + 0.01 / 2))
    assert gain["paired_standard_error"] == pytest.approx(0.0, abs=1e-12) and gain["paired_seeds"] == 2


# ----------------------------------------------------------------------------- latent geometry and probes
def _planted_codes(a: float = 1.0, b: float = 0.1):
    """Class c: the two codes a*e_c +- b*f (f orthogonal to every e_c), in 11 dimensions."""
    z, y = [], []
    for c in range(10):
        for sign in (1, -1):
            v = torch.zeros(11)
            v[c], v[10] = a, sign * b
            z.append(v)
            y.append(c)
    return torch.stack(z), torch.tensor(y)


def test_latent_geometry_of_a_planted_space():
    """By hand: every code's distance to the overall mean is sqrt(0.9 a^2 + b^2) (the scale); within a
    class the distance to the mean is b, between class means a*sqrt(2); the ratio is a*sqrt(2)/b."""
    a, b = 1.0, 0.1
    z, y = _planted_codes(a, b)
    g = latent_geometry(z, y, z, y, seed=0)
    scale = math.sqrt(0.9 * a ** 2 + b ** 2)
    assert g["within_class_spread"] == pytest.approx(b / scale)
    assert g["between_class_separation"] == pytest.approx(a * math.sqrt(2) / scale)
    assert g["separation_to_spread_ratio"] == pytest.approx(a * math.sqrt(2) / b)
    assert g["nearest_class_mean_accuracy"] == 1.0 and g["linear_probe_accuracy"] == 1.0
    assert g["nearest_class_distance"] == pytest.approx([a * math.sqrt(2) / scale] * 10)  # all pairs equidistant
    assert g["class_mean_distances"][3][3] == 0 and g["class_mean_distances"][3][7] == pytest.approx(a * math.sqrt(2) / scale)


def test_whitened_geometry_ignores_a_linear_map_of_the_codes():
    """Stretching one direction of a planted space changes the plain spread and separation but not the whitened
    ones; and by hand, whitening gives a direction that separates the classes the same variance as the noise ones."""
    a, b = 1.0, 0.1
    z, y = _planted_codes(a, b)
    stretch = torch.ones(z.shape[1])
    stretch[0] = 20.0
    plain, stretched = latent_geometry(z, y, z, y, seed=0), latent_geometry(z * stretch, y, z * stretch, y, seed=0)
    assert stretched["separation_to_spread_ratio"] != pytest.approx(plain["separation_to_spread_ratio"], rel=0.05)
    for key in ("within_class_spread", "between_class_separation", "separation_to_spread_ratio"):
        assert stretched["whitened"][key] == pytest.approx(plain["whitened"][key], rel=1e-4)
    # even classes at -5, odd at +5 on axis 0, noise of std 1 on 3 other axes: after whitening axis 0 holds +-1, total
    # spread sqrt(1 + 3) = 2, so the scaled means of an even and an odd class lie 2 / 2 = 1 apart, same-parity ones
    # (almost) 0; 50 of the 90 ordered pairs differ in parity. Without whitening it would be 10 / sqrt(28) * 50 / 90.
    g = torch.Generator().manual_seed(0)
    y2 = torch.arange(10).repeat(5000)
    z2 = torch.cat([(10.0 * (y2 % 2) - 5).unsqueeze(1), torch.randn(len(y2), 3, generator=g)], 1)
    w = latent_geometry(z2, y2, z2, y2, seed=0)["whitened"]
    assert w["between_class_separation"] == pytest.approx(50 / 90, rel=0.03)


def test_the_nearest_class_is_the_planted_neighbour():
    """Classes 4 and 9 planted close together (and 1 near 7): each one's nearest class is the other."""
    centres = torch.eye(10) * 3
    centres[9], centres[7] = centres[4] + torch.tensor([0.5] + [0.0] * 9), centres[1] * 0.9
    g = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat(50)
    z = centres[y] + 0.05 * torch.randn(500, 10, generator=g)
    nearest = latent_geometry(z, y, z, y, seed=0)["nearest_class"]
    assert (nearest[4], nearest[9], nearest[1], nearest[7]) == (9, 4, 7, 1)


def test_probe_accuracy_is_held_out():
    """Codes that carry no label: 100 points in 60 dimensions can be memorised (train accuracy near 1),
    but the accuracy on 2000 new codes is chance."""
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(100, 60, generator=g), torch.randint(0, 10, (100,), generator=g)
    z_test, y_test = torch.randn(2000, 60, generator=g), torch.randint(0, 10, (2000,), generator=g)
    assert linear_probe(z, y, z, y, seed=0) > 0.9  # what the breakage "scored on its own codes" would report
    assert abs(linear_probe(z, y, z_test, y_test, seed=0) - 0.1) < 0.04


def test_per_class_means_and_within_class_pixel_std():
    values, labels = torch.tensor([1.0, 3.0, 10.0] + [0.0] * 8), torch.tensor([0, 0, 1] + list(range(2, 10)))
    assert per_class(values, labels)[:2] == [2.0, 10.0]
    images = torch.zeros(20, 1, 28, 28)
    images[::2] = 1.0  # class c holds one all-white and one all-black image: per-pixel std sqrt(0.5) everywhere
    assert within_class_pixel_std(images, torch.arange(20) // 2) == pytest.approx(math.sqrt(0.5))


def test_style_measures_of_a_planted_rectangle():
    """A 4 x 16 rectangle of ink, rows 10..13, columns 5..20: ink mass 64, centre (12.5, 11.5), width
    16, height 4, no slant; boundary = the 36 pixels with a blank 4-neighbour, thickness 64 / (36 / 2)."""
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10:14, 5:21] = 1.0
    m = {k: v.item() for k, v in style_measures(x).items()}
    assert m == pytest.approx({"ink_mass": 64, "centre_x": 12.5, "centre_y": 11.5, "width": 16, "height": 4,
                               "slant": 0.0, "stroke_thickness": 64 / 18})
    sheared = torch.zeros(1, 1, 28, 28)
    for r in range(8, 20):
        sheared[0, 0, r, 14 - (r - 14) // 2:16 - (r - 14) // 2] = 1.0  # leaning right: higher rows further right
    assert style_measures(sheared)["slant"].item() > 0.3


def test_q2_overlap_error_of_an_exactly_shifted_map():
    import q2_equivariance

    f = torch.rand(2, 3, 7, 7)
    shifted = torch.zeros_like(f)
    shifted[..., 1:] = f[..., :-1]  # f moved right by one cell
    assert q2_equivariance.overlap_error(shifted, f, 1) == 0.0
    assert q2_equivariance.overlap_error(shifted, f, 1, range(2, 6)) == 0.0
    assert q2_equivariance.overlap_error(f, f, 1) > 0.1  # no shift, compared with a shift: not equivariant


def test_q2_interior_is_the_cells_no_padding_reaches_and_is_exactly_equivariant_there():
    import q2_equivariance

    encoder = Encoder().eval()
    assert q2_equivariance.unpadded_cells(encoder) == range(2, 6)  # by hand: receptive fields of 3x3 convs, strides 1,2,1,2
    with torch.no_grad():  # a non-zero background after BatchNorm + ReLU, so the zero padding differs from it
        for m in encoder.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.fill_(0.5)
    x = torch.zeros(3, 1, 28, 28)
    x[:, :, 6:22, 4:20] = torch.rand(3, 1, 16, 16)  # 8 empty columns on the right: a shift by 4 loses nothing
    with torch.no_grad():
        f, f4 = encoder.features(x), encoder.features(q2_equivariance.shift_right(x, 4))
    assert q2_equivariance.overlap_error(f4, f, 1, range(2, 6)) < 1e-6  # exact off the padded cells
    assert q2_equivariance.overlap_error(f4, f, 1) > 1e-3  # the padded ring breaks it
    assert q2_equivariance.overlap_error(f4, f, 1, range(1, 6)) > 1e-3  # ring 1 is reached by the padding too


# ----------------------------------------------------------------------------- what the recipes train with
def _train_recipe(recipe, monkeypatch):
    """Train `recipe` on 20 copies of a planted image; return (the model's training inputs minus the
    image, the lr of every optimiser step)."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    inputs, lrs, real_init = [], [], fewshot.Encoder.__init__

    def init(self, *args, **kwargs):  # watch what the encoder of every seed is fed while training
        real_init(self, *args, **kwargs)
        self.register_forward_pre_hook(lambda m, a: inputs.append(a[0].clone()) if m.training else None)

    monkeypatch.setattr(fewshot.Encoder, "__init__", init)
    x = torch.zeros(20, 1, 28, 28)
    x[:, :, 8:20, 12:16] = 1.0
    data = (x, torch.arange(20) % 10)
    handle = register_optimizer_step_pre_hook(lambda o, a, k: lrs.append(o.param_groups[-1]["lr"]))
    try:
        fewshot.train_seeds(recipe, (data, data, data), [0], torch.device("cpu"))
    finally:
        handle.remove()
    return torch.cat(inputs) - x[0], lrs


def test_the_augmented_recipe_trains_on_transformed_images_and_the_plain_one_does_not(monkeypatch):
    diff, _ = _train_recipe(fewshot.Recipe(**{**fewshot.AUGMENTED.__dict__, "epochs": 2}), monkeypatch)
    assert diff.abs().amax((1, 2, 3)).gt(0.1).float().mean() > 0.9  # (nearly) every input differs from the image
    diff, _ = _train_recipe(fewshot.Recipe(**{**fewshot.PLAIN.__dict__, "epochs": 2}), monkeypatch)
    assert not diff.any()  # every input is the image itself


def test_the_recipes_learning_rate_schedules_are_the_stated_ones(monkeypatch):
    augmented = fewshot.AUGMENTED
    _, lrs = _train_recipe(fewshot.Recipe(**{**augmented.__dict__, "epochs": 10}), monkeypatch)
    peak = augmented.lr
    assert augmented.schedule == "onecycle"
    assert lrs[0] == pytest.approx(peak / 25) and max(lrs) == pytest.approx(peak) and lrs[-1] < peak * 1e-4
    assert lrs.index(max(lrs)) == pytest.approx(0.2 * len(lrs), abs=1)  # warm-up over the first 20% of the steps
    _, lrs = _train_recipe(fewshot.Recipe(**{**fewshot.PLAIN.__dict__, "epochs": 3}), monkeypatch)
    assert set(lrs) == {fewshot.PLAIN.lr} and fewshot.PLAIN.schedule == "constant"


def test_the_loss_of_errors_averages_the_misclassified_images_only():
    """Known answer: logits that put probability 1/2 on a wrong class cost log 2 on each mistake; right answers
    and an error-free model add nothing."""
    import math

    from torch import nn

    logits = torch.tensor([[0.0, 0.0, -1e4], [5.0, -1e4, -1e4], [-1e4, 3.0, -1e4]])  # rows: the images
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 3, bias=False))
    model[1].weight.data = torch.eye(3)
    images, labels = logits.view(3, 1, 3), torch.tensor([1, 0, 1])  # image 0 predicts class 0 (ties: the first)
    assert fewshot.loss_of_errors(model, (images, labels), torch.device("cpu")) == pytest.approx(math.log(2))
    assert fewshot.loss_of_errors(model, (images[1:], labels[1:]), torch.device("cpu")) == 0.0
