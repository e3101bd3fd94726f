"""Task 1: a convolutional autoencoder to a d = 12 latent, trained with mean L1 loss.

The exercise: "Define a convolutional autoencoder to encode (and decode) the images into a small
dimensional latent space (around d ~ 12). Explore the use of an FC layer at the coarsest level (i.e.
in latent space) in order to gain a better reconstruction accuracy and reach the embedded dimension
d. Report these tests (input vs. reconstructed images) and the scores obtained. [...] Use a mean L1
error to define the reconstruction loss."

Story: load MNIST -> train Encoder (FC to d) + Decoder on all 60,000 training images -> train and
test L1 -> reconstructions and learning curves -> the exploration: the FC layer at the coarsest
level against a conv-only encoder and decoder, each trained on images 0..49999 and scored on the
validation images 50000..59999 only -> checkpoint and results/task1_autoencoder.json.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import torch
import torch.nn.functional as F
from torch import nn

import plots
from data import load_splits, validation_start
from models import Decoder, Encoder, count_parameters
from train import (eval_mode, evaluate, fit, number, parser, pick_device, prepare_out_dir, run, save_checkpoint,
                   save_results, seed_everything)

NAME = "task1_autoencoder"


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0], epochs=8, batch_size=128, lr=0.01)  # chosen on validation by tune.py
    p.add_argument("--latent-dim", type=number(int, 1, 1568), default=12, help="latent size d, 1..1568 (default: 12)")
    p.add_argument("--explore-epochs", type=number(int, 0, 1000), default=2,
                   help="epochs of each exploration run (FC vs conv-only), 0..1000; 0 skips it (default: 2)")
    args = p.parse_args(argv)
    if args.explore_epochs and args.latent_dim % 4:
        p.error(f"the conv-only encoder of the exploration needs a --latent-dim divisible by 4 (got {args.latent_dim}); "
                f"or pass --explore-epochs 0")
    if args.quick:
        args.epochs, args.explore_epochs = 1, min(args.explore_epochs, 1)
    return args


def train_autoencoder(args, images, test, device, fc: bool, epochs: int, label: str, eval_every: int = 1):
    """Seed, build and train one autoencoder on `images` (the input is its own target)."""
    generator = seed_everything(args.seed)
    model = nn.Sequential(Encoder(args.latent_dim, fc=fc), Decoder(args.latent_dim, fc=fc))
    # AdamW; one-cycle schedule peaking at --lr; mean L1 between the reconstruction and the input
    history = fit(model, (images, images), test, loss_fn=F.l1_loss, epochs=epochs, batch_size=args.batch_size,
                  lr=args.lr, device=device, generator=generator, schedule="onecycle", eval_every=eval_every, label=label)
    return model, history


def reconstruct(model, x, device):
    with torch.no_grad(), eval_mode(model):
        return model(x.to(device)).cpu()


def main(argv=None):
    args = parse_args(argv)
    device, out, started = pick_device(args.device), prepare_out_dir(args), time.perf_counter()
    (x_train, _), (x_test, _) = load_splits(args.data_dir, args.quick)

    # The autoencoder: Encoder with an FC layer to d, Decoder; all 60,000 training images
    model, history = train_autoencoder(args, x_train, (x_test, x_test), device, fc=True, epochs=args.epochs,
                                       label="AE ")
    final = {"test_l1": history[-1]["test_loss"],
             "train_l1": evaluate(model, (x_train, x_train), F.l1_loss, device)["loss"],  # all 60,000, eval mode
             "train_seconds": history[-1]["seconds"], "parameters": count_parameters(model),
             "train_images": len(x_train), "test_images": len(x_test)}
    print(f"AE d={args.latent_dim}: test L1 {final['test_l1']:.4f}, train L1 {final['train_l1']:.4f}, "
          f"{final['train_seconds']:.0f} s of training")
    save_checkpoint(out / "checkpoints" / f"{NAME}.pt", {"encoder": model[0], "decoder": model[1]})
    plots.digit_grid({"input": x_test[:24], f"AE (d={args.latent_dim})": reconstruct(model, x_test[:24], device)},
                     out / "figures" / f"{NAME}_reconstructions.png", per_row=12,
                     title=f"Task 1: test digits and their reconstructions (test L1 {final['test_l1']:.4f})")
    plots.history_curves(history, out / "figures" / f"{NAME}_curves.png", "Task 1 autoencoder (mean L1)")

    # The exploration, on the validation split: the FC layer at the coarsest level against conv-only
    if args.explore_epochs:
        e = args.explore_epochs
        x_fit, x_val = x_train[:validation_start(len(x_train))], x_train[validation_start(len(x_train)):]
        rows, final["exploration"] = {"input": x_val[:12]}, {"epochs": e}
        for fc, key, name in ((True, "with_fc", "with FC"), (False, "conv_only", "conv-only")):
            m, _ = train_autoencoder(args, x_fit, None, device, fc=fc, epochs=e, label=f"{name} ", eval_every=e)
            val_l1 = evaluate(m, (x_val, x_val), F.l1_loss, device)["loss"]
            final["exploration"][key] = {"val_l1": val_l1, "parameters": count_parameters(m)}
            rows[f"{name}\n(val L1 {val_l1:.4f})"] = reconstruct(m, x_val[:12], device)
        plots.digit_grid(rows, out / "figures" / f"{NAME}_fc_ablation.png", per_row=12,
                         title=f"FC layer at the coarsest level vs conv-only, d = {args.latent_dim}, {e} epochs each "
                               f"(validation digits)")
    save_results(out / "results" / f"{NAME}.json", args, device, started, history=history, final=final)


if __name__ == "__main__":
    run(main)
