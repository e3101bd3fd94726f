"""Beyond the exercise: theory Q2, measured: how shift-equivariant are our trained encoders (Tasks 1 and 2)?

The exercise: "TI. Explain whether each of the following layers are time/space invariant or not:
a) Additive constant b) Pointwise nonlinearity (such as ReLU) c) Strided pooling by a factor > 1
d) As a result, is a CNN composed of all these operators (+convolution) time invariant?" The
report answers it in theory; this script measures it on the trained encoders.

Story: load both trained encoders -> shift every test digit right
by t = 0, 1, 2, 3, 4 and 8 pixels (zero fill) -> compare the 32x7x7 feature map before the FC
layer with a shifted copy of the unshifted digit's map: for t a multiple of the stride product
P = 4, with the map shifted by t/4 cells (exact equivariance on an infinite grid, up to the borders
here); for other t, with the best-matching integer shift of the map -> measure how much the
12-number code changes and the accuracy on shifted digits (the classifier's own MLP; for the AE,
a linear probe fitted on unshifted training codes) -> results/q2_equivariance.json.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python extras/...` from anywhere

import torch

from analysis import apply_batched, fit_linear_probe
from data import load_splits
from models import load_pretrained
from train import load_results, parser, pick_device, prepare_out_dir, run, save_results

NAME = "q2_equivariance"
SHIFTS = (0, 1, 2, 3, 4, 8)
STRIDE_PRODUCT = 4  # two stride-2 convolutions: 28 -> 14 -> 7


def parse_args(argv=None):
    return parser(__doc__.splitlines()[0]).parse_args(argv)  # nothing trains here: no training flags


def shift_right(x: torch.Tensor, t: int) -> torch.Tensor:
    """Shift the last axis by t >= 0 cells to the right, filling with zeros (content leaving the frame is lost)."""
    if t == 0:
        return x.clone()
    out = torch.zeros_like(x)
    out[..., t:] = x[..., :-t]
    return out


def unpadded_cells(encoder, size: int = 28) -> range:
    """The indices (along one axis) of the encoder's coarsest map whose receptive field reads no
    padded cell at any convolution: there the finite-grid map equals the infinite-grid one. For
    3x3 convolutions with padding 1 and strides 1, 2, 1, 2 on 28 pixels: cells 2..5 of 0..6."""
    ok = [True] * size
    for conv in (m for m in encoder.features.modules() if isinstance(m, torch.nn.Conv2d)):
        (k,), (s,), (p,) = conv.kernel_size[:1], conv.stride[:1], conv.padding[:1]
        n_out = (len(ok) + 2 * p - k) // s + 1
        ok = [all(0 <= o * s - p + i < len(ok) and ok[o * s - p + i] for i in range(k)) for o in range(n_out)]
    inside = [i for i, good in enumerate(ok) if good]
    return range(inside[0], inside[-1] + 1)


def overlap_error(f_shifted: torch.Tensor, f: torch.Tensor, k: int, cells: range | None = None) -> float:
    """Relative L2 error between F(shifted x) and F(x) shifted right by k cells, over the cells both
    define (columns k..W-1 of F(shifted x)); with `cells`, only over the cells that lie in `cells`
    along both axes in both maps (len(cells) rows, len(cells) - k columns)."""
    h, w = f.shape[-2:]
    (r0, r1), (c0, c1) = ((cells.start, cells.stop), (cells.start + k, cells.stop)) if cells else ((0, h), (k, w))
    a, b = f_shifted[..., r0:r1, c0:c1], f[..., r0:r1, c0 - k:c1 - k]
    return ((a - b).norm() / b.norm()).item()


def measure(encoder, classify, x: torch.Tensor, y: torch.Tensor, device) -> dict:
    """Feature-map equivariance error (the coarsest map, before the FC layer), code change and
    accuracy for every shift in SHIFTS."""
    f0, z0 = apply_batched(encoder.features, x, device), apply_batched(encoder, x, device)
    cells = unpadded_cells(encoder)
    rows = []
    for t in SHIFTS:
        xt = shift_right(x, t)
        ft, zt = apply_batched(encoder.features, xt, device), apply_batched(encoder, xt, device)
        if t % STRIDE_PRODUCT == 0:
            k = t // STRIDE_PRODUCT
            errors = {k: overlap_error(ft, f0, k)}
        else:  # the best-matching integer shift of the map
            errors = {k: overlap_error(ft, f0, k) for k in range(0, t // STRIDE_PRODUCT + 2)}
            k = min(errors, key=errors.get)
        rows.append({
            "shift": t,
            "multiple_of_stride_product": t % STRIDE_PRODUCT == 0,
            "map_shift_cells": k,
            "feature_map_relative_error": errors[k],
            "feature_map_relative_error_interior": overlap_error(ft, f0, k, cells),
            "interior_cells": len(cells) * max(0, len(cells) - k),
            "code_relative_change": ((zt - z0).norm(dim=1) / z0.norm(dim=1)).mean().item(),
            "accuracy": (classify(zt) == y).float().mean().item(),
        })
    return {"per_shift": rows}


def main(argv=None):
    args = parse_args(argv)
    device, out, started = pick_device(args.device), prepare_out_dir(args), time.perf_counter()
    fix = "run python tasks/{}.py first"
    clf = load_pretrained(out / "checkpoints" / "task2_classifier.pt", fix.format("task2_classifier"))
    ae = load_pretrained(out / "checkpoints" / "task1_autoencoder.pt", fix.format("task1_autoencoder"))
    shift = load_results(out / "results" / "task2_classifier.json", fix.format("task2_classifier"))["config"]["augment_shift"]
    (x_tr, y_tr), (x_te, y_te) = load_splits(args.data_dir, args.quick)
    encoders = {"classifier": clf["encoder"].to(device), "autoencoder": ae["encoder"].to(device)}
    mlp = clf["mlp"].to(device).eval()
    probe = fit_linear_probe(apply_batched(encoders["autoencoder"], x_tr, device), y_tr, args.seed)

    with torch.inference_mode():
        results = {
            "classifier": measure(encoders["classifier"], lambda z: mlp(z.to(device)).argmax(1).cpu(), x_te, y_te,
                                  device) | {"trained_with_shifts_up_to": shift},
            "autoencoder": measure(encoders["autoencoder"], probe, x_te, y_te, device) | {"trained_with_shifts_up_to": 0},
        }
    for name, r in results.items():
        for row in r["per_shift"]:
            print(f"{name:11s} shift {row['shift']}: map error {row['feature_map_relative_error']:.3f} "
                  f"(interior {row['feature_map_relative_error_interior']:.3f}, {row['map_shift_cells']} cells), "
                  f"code change {row['code_relative_change']:.3f}, accuracy {100 * row['accuracy']:.1f}%")
    save_results(out / "results" / f"{NAME}.json", args, device, started, final=results,
                 measured={"shifts": list(SHIFTS), "stride_product": STRIDE_PRODUCT})


if __name__ == "__main__":
    run(main)
