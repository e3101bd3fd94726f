"""Task 4: only 100 labelled examples: Encoder + MLP from random initialisation on training images 0..99.

Story: load MNIST, keep the first 100 training images (torch.arange(100)) -> for each of 5 seeds
(same images; initialisation and shuffling change) train Task 2's classifier architecture with a
constant learning rate, evaluating on the full test set after every epoch -> report the epoch of
lowest test loss and the train/test accuracy gap (over-fitting) -> mean-and-band curves against
training time -> results/task4_few_shot.json.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import torch

import plots
from data import FEW_SHOT_SIZE, few_shot, load_splits
import task2_classifier
from train import (base_parser, environment, fit, out_dirs, pick_device, positive_int, run_main,
                   seed_everything, write_json)

NAME = "task4_few_shot"


def parse_args(argv=None, doc: str = __doc__):
    p = base_parser(doc.splitlines()[0], epochs=30, batch_size=10, lr=1e-3)
    p.add_argument("--seeds", type=positive_int, default=5,
                   help="number of seeds, --seed, --seed+1, ... (default: 5)")
    p.add_argument("--augment-shift", type=int, choices=range(0, 5), default=0,
                   help="extra, not the exercise's plain set-up: random shifts of the 100 training images by up "
                        "to this many pixels; outputs are named *_augmented (default: 0 = off)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds = 2, 2
    return args


def run_name(base: str, args) -> str:
    """Output name: the plain set-up keeps the task's name, the augmented extra gets a suffix."""
    return f"{base}_augmented" if args.augment_shift else base


def load_data(args):
    """The 100 labelled training images (indices 0..99) and the full test set."""
    train_full, test = load_splits(args.data_dir, args.quick)
    train = few_shot(*train_full)
    print(f"{len(train[0])} labelled training images (indices 0..{FEW_SHOT_SIZE - 1}), labels per class "
          f"{torch.bincount(train[1], minlength=10).tolist()}; {len(test[0])} test images")
    return train, test


def run_seeds(args, train, test, device, init_encoder: dict | None = None, label: str = "") -> tuple[list, dict]:
    """Train one classifier per seed on `train` (constant lr, full test set after every epoch).

    If init_encoder (a state_dict) is given, the encoder starts from it (Task 5); the MLP is always
    freshly initialised. Returns (per-seed histories, summary for results["final"])."""
    arch = task2_classifier.architecture(task2_classifier.parse_args([]))  # Task 2's architecture
    histories, per_seed = [], []
    for seed in range(args.seed, args.seed + args.seeds):
        generator = seed_everything(seed)
        model = task2_classifier.build_classifier(arch["latent_dim"], arch["channels"], arch["hidden"])
        if init_encoder is not None:
            model[0].load_state_dict(init_encoder)
            starts_equal = all(torch.equal(v, model[0].state_dict()[k]) for k, v in init_encoder.items())
        history = fit(model, train, test, objective="ce", epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, device=device, generator=generator, schedule="constant", eval_train=True,
                      augment_shift=args.augment_shift,

                      label=f"{label}seed {seed} ")
        best = min(history, key=lambda r: r["test_loss"])
        last = history[-1]
        row = {"seed": seed, "test_accuracy": last["test_accuracy"], "test_loss": last["test_loss"],
               "train_accuracy": last["train_accuracy"], "train_loss": last["train_loss"],
               "best_test_loss_epoch": best["epoch"], "best_test_loss": best["test_loss"],
               "test_accuracy_at_best_loss": best["test_accuracy"],
               "max_test_accuracy": max(r["test_accuracy"] for r in history), "train_seconds": last["seconds"]}
        if init_encoder is not None:
            row["encoder_started_from_ae"] = starts_equal
        histories.append(history)
        per_seed.append(row)
    return histories, summarise(per_seed)


def summarise(per_seed: list[dict]) -> dict:
    def stats(key):
        v = torch.tensor([float(r[key]) for r in per_seed], dtype=torch.float64)
        return v.mean().item(), (v.std().item() if len(v) > 1 else 0.0)

    acc_mean, acc_std = stats("test_accuracy")
    loss_mean, loss_std = stats("test_loss")
    out = {"test_accuracy_mean": acc_mean, "test_accuracy_std": acc_std,
           "test_loss_mean": loss_mean, "test_loss_std": loss_std,
           "train_accuracy_mean": stats("train_accuracy")[0], "train_loss_mean": stats("train_loss")[0],
           "train_test_accuracy_gap_mean": stats("train_accuracy")[0] - acc_mean,
           "best_test_loss_epoch_mean": stats("best_test_loss_epoch")[0],
           "max_test_accuracy_mean": stats("max_test_accuracy")[0],
           "train_seconds_mean": stats("train_seconds")[0], "per_seed": per_seed}
    return out


def report(name: str, final: dict, epochs: int) -> None:
    print(f"{name}: test accuracy {100 * final['test_accuracy_mean']:.2f} +- {100 * final['test_accuracy_std']:.2f}%, "
          f"test loss {final['test_loss_mean']:.3f}, train accuracy {100 * final['train_accuracy_mean']:.1f}%, "
          f"lowest test loss at epoch {final['best_test_loss_epoch_mean']:.1f} of {epochs} (mean over seeds)")


def main(argv=None):
    started = time.perf_counter()
    args = parse_args(argv)
    dirs = out_dirs(args)
    device = pick_device(args.device)
    train, test = load_data(args)

    histories, final = run_seeds(args, train, test, device, label="scratch ")
    report("Task 4 (from scratch)", final, args.epochs)

    name = run_name(NAME, args)
    title = f"Task 4: 100 labelled images{', shifted' if args.augment_shift else ''}, {args.seeds} seeds"
    plots.mean_band({"from scratch": histories}, dirs["figures"] / f"{name}_curves.png",
                    f"{title} (mean, min-max band)")
    plots.mean_band({"from scratch": histories}, dirs["figures"] / f"{name}_curves_epochs.png",
                    f"{title} (mean, min-max band)", x_key="epoch")
    write_json(dirs["results"] / f"{name}.json", {
        "config": vars(args) | {"train_indices": f"0..{FEW_SHOT_SIZE - 1}"},
        "histories": histories, "final": final, "environment": environment(device, started),
    })
    print(f"wrote {dirs['results'] / f'{name}.json'}")


if __name__ == "__main__":
    run_main(main)
