"""Task 2: a classifier: Task 1's Encoder architecture + a two-layer MLP, cross-entropy loss.

The exercise: "Use the same architecture as the encoder in #1 in order to define a pre-classification
feature extractor and combine it with a small two-layered MLP network to map the latent vector into
a 10 classes prediction. Train this network to predict the digit classes using cross-entropy loss.
Plot the training and test errors as well as accuracies."

Story: load MNIST -> train Encoder + MLP on all 60,000 training images, each batch shifted at
random by up to --augment-shift pixels -> loss and accuracy per epoch on the test set and, in eval
mode like the test, on the first 10,000 training images -> plot the curves -> checkpoint and
results/task2_classifier.json.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import torch.nn.functional as F
from torch import nn

import plots
from data import load_splits, random_shift
from models import MLP, Encoder, count_parameters
from train import (evaluate, fit, number, parser, pick_device, prepare_out_dir, run, save_checkpoint, save_results,
                   seed_everything)

NAME = "task2_classifier"


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0], epochs=6, batch_size=256, lr=0.014)  # chosen on validation by tune.py
    p.add_argument("--latent-dim", type=number(int, 1, 1568), default=12, help="latent size d, 1..1568 (default: 12)")
    p.add_argument("--hidden", type=number(int, 1, 4096), default=128, help="hidden units of the MLP, 1..4096 (default: 128)")
    p.add_argument("--augment-shift", type=number(int, 0, 4), default=1,
                   help="random translation of the training images by up to this many pixels, 0..4; 0 = off (default: 1)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = 1
    return args


def main(argv=None):
    args = parse_args(argv)
    device, out, started = pick_device(args.device), prepare_out_dir(args), time.perf_counter()
    train, test = load_splits(args.data_dir, args.quick)

    generator = seed_everything(args.seed)
    model = nn.Sequential(Encoder(args.latent_dim), MLP(args.latent_dim, args.hidden))  # Task 1's encoder + the MLP
    augment = (lambda x, g: random_shift(x, args.augment_shift, g)) if args.augment_shift else None
    # AdamW; one-cycle schedule peaking at --lr; cross-entropy of the logits against the labels
    history = fit(model, train, test, loss_fn=F.cross_entropy, epochs=args.epochs, batch_size=args.batch_size,
                  lr=args.lr, device=device, generator=generator, schedule="onecycle", augment=augment,
                  label="classifier ")
    clean_train = evaluate(model, train, F.cross_entropy, device)  # all 60,000, eval mode, no augmentation
    final = {"test_accuracy": history[-1]["test_accuracy"], "test_loss": history[-1]["test_loss"],
             "train_accuracy": clean_train["accuracy"], "train_loss": clean_train["loss"],
             "train_seconds": history[-1]["seconds"], "parameters": count_parameters(model)}
    print(f"classifier: test accuracy {100 * final['test_accuracy']:.2f}%, train accuracy "
          f"{100 * final['train_accuracy']:.2f}%, {final['train_seconds']:.0f} s of training")

    save_checkpoint(out / "checkpoints" / f"{NAME}.pt", {"encoder": model[0], "mlp": model[1]})
    plots.history_curves(history, out / "figures" / f"{NAME}_curves.png", "Task 2 classifier", "cross-entropy")
    save_results(out / "results" / f"{NAME}.json", args, device, started, history=history, final=final)


if __name__ == "__main__":
    run(main)
