"""Beyond the exercise: the 49,900 unlabelled training images take the 100 labels further (pseudo-labelling).

Iterated pseudo-labelling, the simplest method that uses the unlabelled images in the classification itself.
Start: Task 5's chosen recipe (Task 1's encoder + a fresh MLP on images 0..99), or the same from random
initialisation. Each round the current model labels images 100..49999; its predictions above a confidence
threshold become labels, and a fresh classifier from the same start (so a round's mistakes stay out of the next
one's weights) trains on them and the 100 images, with Task 4's augmentation. self_train() gets those images
without their labels, which are read only afterwards, to report the pseudo-labels' accuracy. Chosen on the
validation images 50000..59999 by tune.py's rule and bracket(), in this order: the threshold, a round's peak lr,
a round's epochs; the rounds are read off each run, capped at 20 epochs per seed in all (the cost budget).
"""
import functools
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python extras/...` from anywhere

import torch
import torch.nn.functional as F

import fewshot
import plots
from analysis import apply_batched, pseudo_label_report
from data import FEW_SHOT, load_splits, validation_start
from models import load_pretrained
from train import evaluate, load_results, number, parser, pick_device, prepare_out_dir, run, save_results, seed_everything
from tune import bracket, choose

NAME = "semi_supervised"
GRIDS = {"threshold": (0.9, 0.95, 0.99), "lr": (0.003, 0.01, 0.03), "round_epochs": (1, 2, 4)}  # first values tried
EPOCH_BUDGET = 20  # the cap: a seed's rounds train <= 20 epochs in all, ~6 bare AE epochs (measured)
CAPS = {"semi.round_epochs": (1, None, "a round trains at least one epoch")}
BATCH_SIZE = 128  # Task 2's batch size, chosen by the study for this classifier on ~50,000 images


def confident(logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted labels, mask of the predictions whose softmax confidence is above the threshold)."""
    confidence, labels = logits.softmax(1).max(1)
    return labels, confidence > threshold


def self_train(start_recipe, labelled, unlabelled_images, val, test, device, seed, encoder,
               threshold, lr, round_epochs, rounds):
    """The start model (`start_recipe` on the labelled images), then `rounds` rounds of pseudo-labelling, each
    training `round_epochs` epochs at peak `lr`; per round (0 = the start): the validation and test accuracy, and
    the pseudo-labels that trained the next round."""
    generator, start = seed_everything(seed), time.perf_counter()
    model, history = fewshot.classifier(encoder), []
    fewshot.train_recipe(model, start_recipe, labelled, None, device, generator, label=f"seed {seed}, start ")
    recipe = replace(fewshot.AUGMENTED, epochs=round_epochs, lr=lr, batch_size=BATCH_SIZE)
    for r in range(rounds + 1):
        row = {"round": r, "seconds": time.perf_counter() - start,
               "val_accuracy": evaluate(model, val, F.cross_entropy, device)["accuracy"],
               "test_accuracy": evaluate(model, test, F.cross_entropy, device)["accuracy"]}
        history.append(row)
        print(f"seed {seed}, round {r}/{rounds}: validation {100 * row['val_accuracy']:.2f}%, "
              f"test {100 * row['test_accuracy']:.2f}%")
        if r < rounds:
            row["pseudo_labels"], row["kept"] = confident(apply_batched(model, unlabelled_images, device), threshold)
            train = (torch.cat([labelled[0], unlabelled_images[row["kept"]]]),
                     torch.cat([labelled[1], row["pseudo_labels"][row["kept"]]]))
            model = fewshot.classifier(encoder)
            fewshot.train_recipe(model, recipe, train, None, device, generator, label=f"seed {seed}, round {r + 1} ")
    return history


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=number(int, 1, 100), default=3, help="seeds from the AE start, 1..100 (default: 3)")
    p.add_argument("--random-seeds", type=number(int, 0, 100), default=3, help="seeds from random init (default: 3)")
    args = p.parse_args(argv)
    grids, budget, caps = GRIDS, EPOCH_BUDGET, CAPS
    if args.quick:  # one value per question, 2 epochs of rounds, 2 + 1 seeds
        grids, budget, args.seeds, args.random_seeds = {k: g[:1] for k, g in GRIDS.items()}, 2, 2, 1
        caps = {f"semi.{k}": (g[0], g[0], "--quick") for k, g in grids.items()}
    device, out, started = pick_device(args.device), prepare_out_dir(args), time.perf_counter()
    encoder = load_pretrained(out / "checkpoints" / "task1_autoencoder.pt",
                              "run python tasks/task1_autoencoder.py first (about 5 minutes)")["encoder"]
    task5 = load_results(out / "results" / "task5_transfer_learning.json",
                         "run python tasks/task5_transfer_learning.py first")
    start_recipe = fewshot.Recipe(**task5["final"]["recipes"][task5["final"]["best"]]["recipe"])  # Task 5's choice
    (x, y), test = load_splits(args.data_dir, args.quick)
    s = validation_start(len(x))
    labelled, val, unlabelled = (x[:FEW_SHOT], y[:FEW_SHOT]), (x[s:], y[s:]), x[FEW_SHOT:s]

    def reported(history):  # the pseudo-labels against the hidden labels of 100..s-1, read after training
        for row in history[:-1]:
            row["pseudo"] = pseudo_label_report(row.pop("pseudo_labels"), row.pop("kept"), y[FEW_SHOT:s])
        return history

    # The choice on validation: one run per setting (the AE start, seed --seed), its rounds read off by the rule
    @functools.cache
    def selection_run(threshold, lr, round_epochs):  # as many rounds as the epoch budget allows
        return reported(self_train(start_recipe, labelled, unlabelled, val, test, device, args.seed, encoder,
                                   threshold, lr, round_epochs, budget // round_epochs))

    def score(setting):
        return choose([setting | {"rounds": r["round"], "val_accuracy": r["val_accuracy"], "train_seconds": r["seconds"],
                                  "cost": r["round"] * setting["round_epochs"]}  # the cost: the rounds' epochs
                       for r in selection_run(**setting)], "val_accuracy")

    setting, questions = {k: g[len(g) // 2] for k, g in grids.items()}, {}
    for key, grid in grids.items():
        questions[key] = bracket(f"semi.{key}", list(grid), lambda v: score(setting | {key: v}), "val_accuracy",
                                 caps=caps)
        setting[key] = questions[key]["chosen"]
    chosen = setting | {"rounds": score(setting)["rounds"]}
    print(f"chosen on validation: {chosen}")

    # The chosen settings over seeds, from both starts (the selection's run of --seed is reused)
    results = {}
    for name, start, n in (("autoencoder", encoder, args.seeds), ("random", None, args.random_seeds)):
        histories = [selection_run(**setting)[:chosen["rounds"] + 1] if start is encoder and seed == args.seed
                     else reported(self_train(start_recipe, labelled, unlabelled, val, test, device, seed, start, **chosen))
                     for seed in range(args.seed, args.seed + n)]
        results[name] = fewshot.summarise([{"seed": args.seed + i, "test_accuracy": h[-1]["test_accuracy"],
                                            "val_accuracy": h[-1]["val_accuracy"], "seconds": h[-1]["seconds"]}
                                           for i, h in enumerate(histories)]) | {"history": histories} if n else None
    gain = fewshot.pretraining_gain(results["autoencoder"], task5["final"]["recipes"][task5["final"]["best"]])
    print(f"AE start: {100 * gain['test_accuracy_difference']:+.2f} points over Task 5's best (paired by seed)")

    plots.rounds({k: v["history"] for k, v in results.items() if v}, out / "figures" / f"{NAME}.png")
    save_results(out / "results" / f"{NAME}.json", args, device, started, questions=questions,
                 final={"chosen": chosen, "epoch_budget": budget, "batch_size": BATCH_SIZE,
                        "start_recipe": asdict(start_recipe), "gain_over_task5_best": gain} | results)


if __name__ == "__main__":
    run(main)
