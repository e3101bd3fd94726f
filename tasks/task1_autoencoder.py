"""Task 1: a convolutional autoencoder to a d = 12 latent, trained with mean L1 loss.

The exercise: "Define a convolutional autoencoder to encode (and decode) the images into a small
dimensional latent space (around d ~ 12). Explore the use of an FC layer at the coarsest level (i.e.
in latent space) in order to gain a better reconstruction accuracy and reach the embedded dimension
d. Report these tests (input vs. reconstructed images) and the scores obtained. [...] Use a mean L1
error to define the reconstruction loss."

Story: load MNIST -> train Encoder (FC to d) + Decoder on all 60,000 training images -> train and
test L1 -> reconstructions and learning curves -> checkpoint and results/task1_autoencoder.json.

The exploration (the FC layer at the coarsest level against conv-only encoders and decoders, one of
them with the FC model's parameter count, 3 seeds each at two budgets) is part of the validation
study, tune.py: it trains on images 0..49999 and scores on the validation images 50000..59999 only
(results/tuning.json, "exploration"; figures/tuning_fc_exploration.png).
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import torch
import torch.nn.functional as F
from torch import nn

import plots
from data import load_splits
from models import Decoder, Encoder, count_parameters
from train import (eval_mode, evaluate, fit, number, parser, pick_device, prepare_out_dir, run, save_checkpoint,
                   save_results, seed_everything)

NAME = "task1_autoencoder"


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0], epochs=8, batch_size=128, lr=0.02)  # chosen on validation by tune.py
    p.add_argument("--latent-dim", type=number(int, 1, 1568), default=12, help="latent size d, 1..1568 (default: 12)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = 1
    return args


def reconstruct(model, x, device):
    with torch.no_grad(), eval_mode(model):
        return model(x.to(device)).cpu()


def main(argv=None):
    args = parse_args(argv)
    device, out, started = pick_device(args.device), prepare_out_dir(args), time.perf_counter()
    (x_train, _), (x_test, _) = load_splits(args.data_dir, args.quick)

    # The autoencoder: Encoder with an FC layer to d, Decoder; all 60,000 training images, each its own target
    generator = seed_everything(args.seed)
    model = nn.Sequential(Encoder(args.latent_dim), Decoder(args.latent_dim))
    # AdamW; one-cycle schedule peaking at --lr; mean L1 between the reconstruction and the input
    history = fit(model, (x_train, x_train), (x_test, x_test), loss_fn=F.l1_loss, epochs=args.epochs,
                  batch_size=args.batch_size, lr=args.lr, device=device, generator=generator, schedule="onecycle",
                  label="AE ")
    final = {"test_l1": history[-1]["test_loss"],
             "train_l1": evaluate(model, (x_train, x_train), F.l1_loss, device)["loss"],  # all 60,000, eval mode
             "train_seconds": history[-1]["seconds"], "parameters": count_parameters(model),
             "train_images": len(x_train), "test_images": len(x_test)}
    print(f"AE d={args.latent_dim}: test L1 {final['test_l1']:.4f}, train L1 {final['train_l1']:.4f}, "
          f"{final['train_seconds']:.0f} s of training")
    save_checkpoint(out / "checkpoints" / f"{NAME}.pt", {"encoder": model[0], "decoder": model[1]})
    plots.digit_grid({"input": x_test[:24], f"AE (d={args.latent_dim})": reconstruct(model, x_test[:24], device)},
                     out / "figures" / f"{NAME}_reconstructions.png", per_row=12, numbers=list(range(24)))
    plots.history_curves(history, out / "figures" / f"{NAME}_curves.png", "Task 1 autoencoder", "mean L1 per pixel")
    save_results(out / "results" / f"{NAME}.json", args, device, started, history=history, final=final)


if __name__ == "__main__":
    run(main)
