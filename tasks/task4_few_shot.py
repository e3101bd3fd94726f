"""Task 4: only 100 labelled examples: Encoder + MLP from random initialisation on training images 0..99.

The exercise: "Assume we have very few labeled training examples, only 100 (taken from the training
set). Use this small set to train the classifier network (both encoder and classifier MLP). Report
the losses and accuracies obtained as function of training time, and whether over-fitting is
observed."

Story: keep the first 100 training images (torch.arange(100)) and hold out the validation images
50000..59999 -> the plain set-up: for each of 5 seeds (same images; initialisation and shuffling
change) train Task 2's classifier architecture with a constant learning rate, evaluating on the
full test set every 2 epochs (loss and accuracy against training time, and over-fitting) -> the
augmented recipe (random affine, one-cycle schedule) and its schedule without the augmentation
("schedule only") -> the recipe with the best validation accuracy is the chosen one; the test set
only reports -> figure and results/task4_few_shot.json.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import torch

import fewshot
import plots
from cli import base_parser
from data import FEW_SHOT_SIZE
from runs import open_run, run_main
from train import pick_device

NAME = "task4_few_shot"


def parse_args(argv=None):
    p = base_parser(__doc__.splitlines()[0], epochs=fewshot.PLAIN["epochs"], batch_size=10, lr=fewshot.PLAIN["lr"])
    return fewshot.parse_args(p, argv)


def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    with open_run(NAME, args) as run:
        train, val, test, validation = fewshot.load_data(args)
        histories, recipes = fewshot.run_recipes("scratch", args, (train, val, test), device, label="scratch: ")
        best = fewshot.select(recipes)
        print(f"chosen on validation: {best['recipe']} (test accuracy {100 * best['test_accuracy_mean']:.2f}%)")

        title = f"Task 4: 100 labelled images, random initialisation, {args.seeds} seeds (mean, min-max band)"
        plots.mean_band({"from scratch": histories["plain"]}, run.path("figures", f"{NAME}_curves.png"), title,
                        x_key="seconds")
        final = recipes["plain"] | {"recipes": recipes, "best": best,
                                    "label_counts": torch.bincount(train[1], minlength=10).tolist()}
        run.write_results(f"{NAME}.json", {
            "config": vars(args) | {"train_indices": f"0..{FEW_SHOT_SIZE - 1}", "validation": validation | {
                "used_for": "choosing the recipe (final.best)"}},
            "histories": histories["plain"], "recipe_histories": histories, "final": final}, device)


if __name__ == "__main__":
    run_main(main, NAME)
