"""Task 4: only 100 labelled examples: Encoder + MLP from random initialisation on training images 0..99.

The exercise: "Assume we have very few labeled training examples, only 100 (taken from the training
set). Use this small set to train the classifier network (both encoder and classifier MLP). Report
the losses and accuracies obtained as function of training time, and whether over-fitting is
observed."

Story: keep the first 100 training images -> for each of 5 seeds (same images; the initialisation
and the batch order change) train Task 2's classifier architecture from scratch with the plain
recipe (constant learning rate), evaluating on the test set every 2 epochs: loss and accuracy
against training time, and over-fitting -> the augmented recipe (random affine, long one-cycle
schedule) and that schedule without augmentation ("schedule only"), evaluated 30 times -> the recipe
with the best validation accuracy (images 50000..59999) is the answer; the test set only reports
-> figure and results/task4_few_shot.json.
"""
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import torch

import fewshot
import plots
from train import number, parser, pick_device, prepare_out_dir, run, save_results

NAME = "task4_few_shot"


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0], epochs=fewshot.PLAIN.epochs, batch_size=10, lr=fewshot.PLAIN.lr)
    p.add_argument("--seeds", type=number(int, 1, 100), default=5,
                   help="number of seeds, 1..100: --seed, --seed + 1, ... (default: 5)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds = 2, 2
    return args


def recipes(args) -> dict[str, fewshot.Recipe]:
    """The plain recipe, the augmented one, and the augmented one's schedule without the augmentation."""
    plain, augmented = fewshot.schedules(args)
    return {"plain": plain, "augmented": augmented, "schedule only": replace(augmented, augment=False)}


def main(argv=None):
    args = parse_args(argv)
    device, out, started = pick_device(args.device), prepare_out_dir(args), time.perf_counter()
    data = fewshot.load_data(args)
    seeds = range(args.seed, args.seed + args.seeds)

    histories, summaries = {}, {}
    for name, recipe in recipes(args).items():
        every = fewshot.curve_every(recipe)
        histories[name], summaries[name] = fewshot.train_seeds(recipe, data, seeds, device, eval_every=every,
                                                               label=f"scratch, {name}, ")
        s = summaries[name]
        print(f"{name}: test accuracy {100 * s['test_accuracy_mean']:.2f} +- {100 * s['test_accuracy_std']:.2f}%, "
              f"validation {100 * s['val_accuracy_mean']:.2f}%, train {100 * s['train_accuracy_mean']:.1f}%")
    best = fewshot.select(summaries)
    print(f"chosen on validation: {best} (test accuracy {100 * summaries[best]['test_accuracy_mean']:.2f}%)")

    plots.mean_band({r: {"from scratch": histories[r]} for r in ("plain", "augmented")}, out / "figures" / f"{NAME}_curves.png",
                    f"Task 4: 100 labelled images, random initialisation, {args.seeds} seeds (mean, min-max band)")
    save_results(out / "results" / f"{NAME}.json", args, device, started, history=histories,
                 final={"best": best, "recipes": summaries, "label_counts": torch.bincount(data[0][1], minlength=10).tolist()})


if __name__ == "__main__":
    run(main)
