"""Task 2: a classifier: Task 1's Encoder architecture + a two-layer MLP, cross-entropy loss.

Story: load MNIST -> train Encoder + MLP (random shifts of up to 2 pixels as augmentation) ->
evaluate train/test loss and accuracy -> plot the curves -> save checkpoint and
results/task2_classifier.json.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

from torch import nn

import plots
from data import load_splits
from models import MLP, Encoder, count_parameters
from train import (base_parser, environment, evaluate, fit, out_dirs, pick_device, positive_int, run_main,
                   save_checkpoint, seed_everything, write_json)

NAME = "task2_classifier"


def parse_args(argv=None):
    p = base_parser(__doc__.splitlines()[0], epochs=20, batch_size=128, lr=3e-3)
    p.add_argument("--latent-dim", type=positive_int, default=12, help="latent size d (default: 12)")
    p.add_argument("--channels", type=positive_int, nargs=2, default=[16, 32],
                   help="conv channels at 14x14 and 7x7 (default: 16 32)")
    p.add_argument("--hidden", type=positive_int, default=128, help="hidden units of the MLP (default: 128)")
    p.add_argument("--augment-shift", type=int, choices=range(0, 5), default=2,
                   help="random translation of training images by up to this many pixels, 0 = off (default: 2)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = 1
    return args


def build_classifier(latent_dim: int, channels, hidden: int) -> nn.Sequential:
    return nn.Sequential(Encoder(latent_dim, channels, fc=True), MLP(latent_dim, hidden))


def train_classifier(args, train, test, device):
    """Seed, build and train the classifier; return (model, history, final metrics)."""
    generator = seed_everything(args.seed)
    model = build_classifier(args.latent_dim, args.channels, args.hidden)
    history = fit(model, train, test, objective="ce", epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  device=device, generator=generator, augment_shift=args.augment_shift, label="classifier ")
    clean_train = evaluate(model, *train, "ce", device)  # eval mode, no augmentation, no dropout
    final = {
        "test_accuracy": history[-1]["test_accuracy"],
        "test_loss": history[-1]["test_loss"],
        "train_accuracy": clean_train["accuracy"],
        "train_loss": clean_train["loss"],
        "train_seconds": history[-1]["seconds"],
        "parameters": count_parameters(model),
    }
    return model, history, final


def architecture(args) -> dict:
    return {"latent_dim": args.latent_dim, "channels": list(args.channels), "fc": True, "hidden": args.hidden}


def main(argv=None):
    started = time.perf_counter()
    args = parse_args(argv)
    dirs = out_dirs(args)
    device = pick_device(args.device)

    train, test = load_splits(args.data_dir, args.quick)

    model, history, final = train_classifier(args, train, test, device)
    encoder, mlp = model
    print(f"classifier: test accuracy {100 * final['test_accuracy']:.2f}%, test loss {final['test_loss']:.4f}, "
          f"train accuracy {100 * final['train_accuracy']:.2f}%, {final['train_seconds']:.0f}s")
    save_checkpoint(dirs["checkpoints"] / f"{NAME}.pt", {"encoder": encoder, "mlp": mlp}, architecture(args))

    plots.history_curves(history, dirs["figures"] / f"{NAME}_curves.png", "Task 2 classifier (cross-entropy)")
    write_json(dirs["results"] / f"{NAME}.json", {
        "config": vars(args), "architecture": architecture(args), "history": history, "final": final,
        "environment": environment(device, started),
    })
    print(f"wrote {dirs['results'] / f'{NAME}.json'}")


if __name__ == "__main__":
    run_main(main)
