"""Task 2: a classifier: Task 1's Encoder architecture + a two-layer MLP, cross-entropy loss.

The exercise: "Use the same architecture as the encoder in #1 in order to define a pre-classification
feature extractor and combine it with a small two-layered MLP network to map the latent vector into
a 10 classes prediction. Train this network to predict the digit classes using cross-entropy loss.
Plot the training and test errors as well as accuracies."

Story: load MNIST -> train Encoder + MLP on all 60,000 training images (with --augment-shift,
random shifts as augmentation) -> evaluate train/test loss and accuracy -> plot the curves -> save
checkpoint and results/task2_classifier.json.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

from torch import nn

import plots
from data import describe_validation, load_splits, random_shift
from cli import base_parser, positive_int, settings_from
from models import MLP, Encoder, architecture, count_parameters, save_checkpoint
from runs import open_run, run_main
from train import evaluate, fit, pick_device, seed_everything

NAME = "task2_classifier"


def parse_args(argv=None):
    p = base_parser(__doc__.splitlines()[0], epochs=6, batch_size=128, lr=0.01)
    p.add_argument("--latent-dim", type=positive_int, default=12, help="latent size d (default: 12)")
    p.add_argument("--channels", type=positive_int, nargs=2, default=[16, 32],
                   help="conv channels at 14x14 and 7x7 (default: 16 32)")
    p.add_argument("--hidden", type=positive_int, default=128, help="hidden units of the MLP (default: 128)")
    p.add_argument("--augment-shift", type=int, choices=range(0, 5), default=2,
                   help="random translation of training images by up to this many pixels, 0 = off (default: 2)")
    args = p.parse_args(argv)
    args.settings_from = settings_from(p, args, ("epochs", "lr", "channels", "augment_shift"))
    if args.quick:
        args.epochs = 1
    return args


def build_classifier(latent_dim: int, channels, hidden: int) -> nn.Sequential:
    """Encoder (exactly Task 1's architecture) + the two-layer MLP head."""
    return nn.Sequential(Encoder(latent_dim, channels, fc=True), MLP(latent_dim, hidden))


def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    with open_run(NAME, args) as run:
        train, test = load_splits(args.data_dir, args.quick)

        generator = seed_everything(args.seed)
        model = build_classifier(args.latent_dim, args.channels, args.hidden)
        augment = (lambda x, g: random_shift(x, args.augment_shift, g)) if args.augment_shift else None
        history = fit(model, train, test, objective="ce", epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, device=device, generator=generator, augment=augment, label="classifier ")
        clean_train = evaluate(model, *train, "ce", device)  # eval mode, no augmentation, no dropout
        final = {
            "test_accuracy": history[-1]["test_accuracy"],
            "test_loss": history[-1]["test_loss"],
            "train_accuracy": clean_train["accuracy"],
            "train_loss": clean_train["loss"],
            "train_seconds": history[-1]["seconds"],
            "parameters": count_parameters(model),
        }
        print(f"classifier: test accuracy {100 * final['test_accuracy']:.2f}%, test loss {final['test_loss']:.4f}, "
              f"train accuracy {100 * final['train_accuracy']:.2f}%, {final['train_seconds']:.0f}s")
        modules = {"encoder": model[0], "mlp": model[1]}
        save_checkpoint(run.path("checkpoints", f"{NAME}.pt"), modules, run.run_id)
        plots.history_curves(history, run.path("figures", f"{NAME}_curves.png"), "Task 2 classifier (cross-entropy)")
        config = vars(args) | {"validation": describe_validation(len(train[0])) | {
            "used_for": "choosing lr, epochs and the shift augmentation (tasks/tune.py, results/tuning.json); "
                        "the run trains on all training images"}}
        run.write_results(f"{NAME}.json", {"config": config, "architecture": architecture(modules),
                                           "history": history, "final": final}, device)


if __name__ == "__main__":
    run_main(main, NAME)
