"""Beyond the exercise: the 49,900 unlabelled training images take the 100 labels further (pseudo-labelling).

Iterated pseudo-labelling, the simplest method that uses the unlabelled images in the classification itself.
Start: Task 5's chosen recipe (Task 1's encoder + a fresh MLP on images 0..99), or the same from random
initialisation. Each round the current model labels images 100..49999 from their pixels; the predictions above
a confidence threshold become labels, and a fresh classifier from the same start (a round's mistakes stay out
of the next one's weights) trains on them and the 100 images, with Task 4's augmentation. Their true labels
never reach training: self_train() gets the images only; they are read afterwards, to report the pseudo-labels'
accuracy. The threshold and the rounds are chosen on the validation images 50000..59999 by tune.py's rule; a
round's training (2 epochs, batch 128, peak lr 0.01) is fixed, not chosen, to keep a seed within ~6 bare AE epochs.
"""
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python extras/...` from anywhere

import torch
import torch.nn.functional as F

import fewshot
import plots
from analysis import apply_batched
from data import FEW_SHOT, load_splits, validation_start
from models import load_pretrained
from train import evaluate, load_results, number, parser, pick_device, prepare_out_dir, run, save_results, seed_everything
from tune import choose

NAME = "semi_supervised"
THRESHOLDS = (0.9, 0.95, 0.99)
ROUNDS = 10  # the cap: 10 rounds of 2 epochs already cost ~10 bare AE epochs per seed (measured), past the ~6 budget


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0], epochs=2, batch_size=128, lr=0.01)  # a round's training: fixed, not chosen
    p.add_argument("--seeds", type=number(int, 1, 100), default=5, help="seeds from the AE start, 1..100 (default: 5)")
    p.add_argument("--random-seeds", type=number(int, 0, 100), default=3,
                   help="seeds from random initialisation, 0..100 (default: 3)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds, args.random_seeds = 1, 2, 1
    return args


def confident(logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted labels, mask of the predictions whose softmax confidence is above the threshold)."""
    confidence, labels = logits.softmax(1).max(1)
    return labels, confidence > threshold


def self_train(args, start_recipe, labelled, unlabelled_images, val, test, device, seed, threshold, rounds,
               encoder=None):
    """The start model (`start_recipe` on the labelled images), then `rounds` rounds of pseudo-labelling; per
    round (0 = the start): the validation and test accuracy, and the pseudo-labels that trained the next round."""
    generator, start = seed_everything(seed), time.perf_counter()
    model = fewshot.classifier(encoder)
    fewshot.train_recipe(model, start_recipe, labelled, None, device, generator, label=f"seed {seed}, start ")
    history = []
    for r in range(rounds + 1):
        row = {"round": r, "seconds": time.perf_counter() - start,
               "val_accuracy": evaluate(model, val, F.cross_entropy, device)["accuracy"],
               "test_accuracy": evaluate(model, test, F.cross_entropy, device)["accuracy"]}
        history.append(row)
        print(f"seed {seed}, threshold {threshold}, round {r}: validation {100 * row['val_accuracy']:.2f}%, "
              f"test {100 * row['test_accuracy']:.2f}%")
        if r < rounds:
            row["pseudo_labels"], row["kept"] = confident(apply_batched(model, unlabelled_images, device), threshold)
            train = (torch.cat([labelled[0], unlabelled_images[row["kept"]]]),
                     torch.cat([labelled[1], row["pseudo_labels"][row["kept"]]]))
            model = fewshot.classifier(encoder)
            fewshot.train_recipe(model, replace(fewshot.AUGMENTED, epochs=args.epochs, lr=args.lr,
                                                batch_size=args.batch_size),
                                 train, None, device, generator, label=f"seed {seed}, round {r + 1} ")
    return history


def main(argv=None):
    args = parse_args(argv)
    device, out, started = pick_device(args.device), prepare_out_dir(args), time.perf_counter()
    encoder = load_pretrained(out / "checkpoints" / "task1_autoencoder.pt",
                              "run python tasks/task1_autoencoder.py first (about 5 minutes)")["encoder"]
    task5 = load_results(out / "results" / "task5_transfer_learning.json",
                         "run python tasks/task5_transfer_learning.py first")
    start_recipe = fewshot.Recipe(**task5["final"]["recipes"][task5["final"]["best"]]["recipe"])  # Task 5's choice
    (x, y), test = load_splits(args.data_dir, args.quick)
    s = validation_start(len(x))
    labelled, val, unlabelled = (x[:FEW_SHOT], y[:FEW_SHOT]), (x[s:], y[s:]), x[FEW_SHOT:s]

    def reported(history):  # the pseudo-labels, counted against the hidden labels of 100..s-1, after training
        for row in history[:-1]:
            keep, right = row.pop("kept"), row.pop("pseudo_labels") == y[FEW_SHOT:s]
            row["pseudo"] = {"kept": int(keep.sum()), "accuracy": right[keep].float().mean().item() if keep.any() else None,
                             "kept_per_class": torch.bincount(y[FEW_SHOT:s][keep], minlength=10).tolist(),
                             "right_per_class": torch.bincount(y[FEW_SHOT:s][keep & right], minlength=10).tolist()}
        return history

    # The choice on validation (seed --seed, the AE start): the threshold, and the rounds read off each run
    cap = 2 if args.quick else ROUNDS
    selection = {t: reported(self_train(args, start_recipe, labelled, unlabelled, val, test, device, args.seed, t, cap,
                                        encoder)) for t in THRESHOLDS}
    candidates = [{"threshold": t, "rounds": row["round"], "val_accuracy": row["val_accuracy"],
                   "train_seconds": row["seconds"]} for t, h in selection.items() for row in h]
    chosen = choose(candidates, "val_accuracy")
    print(f"chosen on validation: threshold {chosen['threshold']}, {chosen['rounds']} rounds")

    # The chosen settings over seeds, from both starts (the selection's run of --seed is reused)
    results = {}
    for name, start, n in (("autoencoder", encoder, args.seeds), ("random", None, args.random_seeds)):
        histories = [selection[chosen["threshold"]][:chosen["rounds"] + 1] if start is encoder and seed == args.seed
                     else reported(self_train(args, start_recipe, labelled, unlabelled, val, test, device, seed,
                                              chosen["threshold"], chosen["rounds"], start))
                     for seed in range(args.seed, args.seed + n)]
        results[name] = fewshot.summarise([{"seed": args.seed + i, "test_accuracy": h[-1]["test_accuracy"],
                                            "val_accuracy": h[-1]["val_accuracy"], "seconds": h[-1]["seconds"]}
                                           for i, h in enumerate(histories)]) | {"history": histories} if n else None
    gain = fewshot.pretraining_gain(results["autoencoder"], task5["final"]["recipes"][task5["final"]["best"]])
    print(f"AE start: {100 * gain['test_accuracy_difference']:+.2f} points over Task 5's best (paired by seed)")

    plots.rounds({k: v["history"] for k, v in results.items() if v}, out / "figures" / f"{NAME}.png")
    save_results(out / "results" / f"{NAME}.json", args, device, started, selection=candidates,
                 final={"chosen": chosen, "rounds_cap": cap, "start_recipe": asdict(start_recipe),
                        "gain_over_task5_best": gain} | results)


if __name__ == "__main__":
    run(main)
