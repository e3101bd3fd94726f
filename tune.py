"""Validation study: the training settings of every task, chosen on the validation split.

Every run trains on the training images 0..49999 (the few-shot runs on the images 0..99) and is
scored on the validation images 50000..59999; the test set is not even loaded. The questions are
asked in order, each with the settings chosen before it: Task 1's peak lr (at a short budget),
the channel widths (16/32 against 32/64 at an equal training-time budget) and the epochs; Task 2's
lr, epochs and shift augmentation; Task 3's decoder epochs; the plain few-shot schedule (epochs x
lr) and the augmented one (epochs x peak lr).

The rule was fixed before the study ran and is written into its output: among the settings whose
validation score is within the tolerance of the best, take the one with the fewest training
seconds. Tolerances: 2 % of the best validation L1 (Tasks 1 and 3); 0.1 points of validation
accuracy for Task 2 (about 1.4 binomial standard errors at 99.5 % on 10,000 images); for the
few-shot schedules (3 seeds) one standard error of the best setting's mean.

    python tune.py           # about 40 minutes on 2 cores: results/tuning.json
"""
import time

import torch.nn.functional as F
from torch import nn

import fewshot
from analysis import apply_batched
from data import few_shot, load_mnist, random_shift, split_validation
from models import MLP, Decoder, Encoder
from train import evaluate, fit, parser, pick_device, prepare_out_dir, run, save_results, seed_everything

NAME = "tuning"
RULE = ("among the settings whose validation score is within the tolerance of the best, the one with the fewest "
        "training seconds; questions asked in order, each with the settings chosen before it")
TOLERANCE = {"val_l1": ("relative", 0.02), "val_accuracy": ("absolute", 0.001), "val_accuracy_mean": ("seed SE", 1)}
SEEDS = 3  # few-shot seeds per setting


def choose(rows: list[dict], metric: str) -> dict:
    """The rule, on validation metrics only: the cheapest row within the tolerance of the best."""
    kind, tol = TOLERANCE[metric]
    lower = metric == "val_l1"  # L1: lower is better; accuracy: higher
    best = min(rows, key=lambda r: r[metric]) if lower else max(rows, key=lambda r: r[metric])
    margin = {"relative": tol * best[metric], "absolute": tol}.get(kind) or tol * best.get("val_accuracy_se", 0.0)
    near = [r for r in rows if (r[metric] <= best[metric] + margin if lower else r[metric] >= best[metric] - margin)]
    return min(near, key=lambda r: r["train_seconds"])


def main(argv=None):
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    device, out, started = pick_device(args.device), prepare_out_dir(args), time.perf_counter()
    (x, y) = load_mnist(args.data_dir, train=True)  # the test set is never loaded
    fit_part, val = split_validation(x, y)
    if args.quick:
        fit_part, val = (fit_part[0][:1000], fit_part[1][:1000]), (val[0][:300], val[1][:300])
    short = 1 if args.quick else 2
    grid = {"task1.lr": (3e-3, 1e-2, 3e-2), "task1.channels": ((16, 32), (32, 64)), "task1.epochs": (2, 4, 8),
            "task2.lr": (1e-3, 3e-3, 1e-2), "task2.epochs": (3, 6, 12), "task2.augment_shift": (0, 2),
            "task3.epochs": (2, 4, 8), "plain.epochs": (15, 30, 60), "plain.lr": (3e-4, 1e-3, 3e-3),
            "augmented.epochs": (50, 100, 150), "augmented.lr": (1e-3, 3e-3, 1e-2)}
    if args.quick:
        grid |= {"task1.epochs": (1, 2), "task2.epochs": (1, 2), "task3.epochs": (1, 2),
                 "plain.epochs": (2, 4), "augmented.epochs": (2, 4)}
    rows, chosen, models = [], {}, {}

    def trial(question: str, setting: dict, build, lr: float, data=None, **fit_args) -> dict:
        """Seed, build and train one model on `data` (default: the images before the validation split) with
        AdamW and the one-cycle schedule, as the tasks do; its validation score as a row (asked again: not retrained)."""
        for r in rows:
            if r["question"] == question and r["setting"] == setting:
                return r
        g = seed_everything(args.seed)
        model, labels = build(), question == "task2"
        loss_fn, metric = (F.cross_entropy, "val_accuracy") if labels else (F.l1_loss, "val_l1")
        train, held_out = data or ((fit_part if labels else (fit_part[0], fit_part[0])),
                                   (val if labels else (val[0], val[0])))
        h = fit(model, train, None, loss_fn=loss_fn, epochs=setting["epochs"], batch_size=128, lr=lr,
                device=device, generator=g, eval_every=setting["epochs"], label=f"{question} ", **fit_args)
        score = evaluate(model, held_out, loss_fn, device)["accuracy" if labels else "loss"]
        row = {"question": question, "setting": setting, metric: score, "train_seconds": h[-1]["seconds"],
               "seeds": [args.seed]}
        rows.append(row)
        models[id(row)] = model
        print(f"{question} {setting}: {metric} {row[metric]:.4f}, {row['train_seconds']:.0f} s")
        return row

    def ask(question: str, candidates: list[dict]) -> dict:
        pick = choose(candidates, next(k for k in candidates[0] if k.startswith("val_")))
        group, key = question.split(".")
        chosen.setdefault(group, {})[key] = pick["setting"][key]
        print(f"chosen {question} = {pick['setting'][key]}")
        return pick

    # Task 1: the AE (mean L1), scored by the validation L1 of its reconstructions
    def autoencoder(lr, channels, epochs):
        return trial("task1", {"lr": lr, "channels": list(channels), "epochs": epochs},
                     lambda: nn.Sequential(Encoder(12, channels), Decoder(12, channels)), lr)

    lr1 = ask("task1.lr", [autoencoder(lr, (16, 32), short) for lr in grid["task1.lr"]])["setting"]["lr"]
    # The widths at an equal training time: 32/64 for the short budget, 16/32 for as many epochs as fit in it
    wide, narrow = autoencoder(lr1, (32, 64), short), autoencoder(lr1, (16, 32), short)
    same_time = max(short, int(wide["train_seconds"] / (narrow["train_seconds"] / short)))
    ch = tuple(ask("task1.channels", [autoencoder(lr1, (16, 32), same_time), wide])["setting"]["channels"])
    ask("task1.epochs", [autoencoder(lr1, ch, e) for e in grid["task1.epochs"]])

    # Task 2: the classifier (same encoder architecture + MLP), scored by validation accuracy
    def classifier(lr, epochs, shift):
        return trial("task2", {"lr": lr, "epochs": epochs, "augment_shift": shift},
                     lambda: nn.Sequential(Encoder(12, ch), MLP(12)), lr,
                     augment=(lambda xb, gen: random_shift(xb, shift, gen)) if shift else None)

    lr2 = ask("task2.lr", [classifier(lr, grid["task2.epochs"][0], 2) for lr in grid["task2.lr"]])["setting"]["lr"]
    e2 = ask("task2.epochs", [classifier(lr2, e, 2) for e in grid["task2.epochs"]])["setting"]["epochs"]
    clf = ask("task2.augment_shift", [classifier(lr2, e2, s) for s in grid["task2.augment_shift"]])

    # Task 3: a fresh decoder on the codes of the chosen classifier's frozen encoder (lr: Task 1's)
    encoder = models[id(clf)][0]
    codes = ((apply_batched(encoder, fit_part[0], device), fit_part[0]), (apply_batched(encoder, val[0], device), val[0]))
    ask("task3.epochs", [trial("task3", {"epochs": e}, lambda: Decoder(12, ch), lr1, data=codes)
                         for e in grid["task3.epochs"]])

    # The few-shot schedules (Task 4's set-up: from scratch, batch 10), 3 seeds each, scored by validation accuracy
    train100 = few_shot(x, y)
    for name, base in (("plain", fewshot.PLAIN), ("augmented", fewshot.AUGMENTED)):
        candidates = []
        for e, lr in ((e, lr) for e in grid[f"{name}.epochs"] for lr in grid[f"{name}.lr"]):
            recipe = fewshot.Recipe(augment=base.augment, epochs=e, lr=lr, schedule=base.schedule)
            seeds = range(args.seed, args.seed + SEEDS)
            _, s = fewshot.train_seeds(recipe, (train100, val, None), seeds, device, label=f"{name} ")
            candidates.append({"question": name, "setting": {"epochs": e, "lr": lr},
                               "val_accuracy_mean": s["val_accuracy_mean"],
                               "val_accuracy_se": s["val_accuracy_std"] / SEEDS ** 0.5,
                               "val_accuracy_per_seed": [r["val_accuracy"] for r in s["per_seed"]],
                               "train_seconds": s["train_seconds_mean"] * SEEDS, "seeds": list(seeds)})
            print(f"{name} {candidates[-1]['setting']}: val accuracy {100 * s['val_accuracy_mean']:.2f}%")
        rows.extend(candidates)
        chosen[name] = dict(choose(candidates, "val_accuracy_mean")["setting"])
        print(f"chosen {name} = {chosen[name]}")

    save_results(out / "results" / f"{NAME}.json", args, device, started, rule=RULE,
                 tolerance={k: {"kind": v[0], "value": v[1]} for k, v in TOLERANCE.items()},
                 grid={k: list(v) for k, v in grid.items()}, rows=rows, chosen=chosen)


if __name__ == "__main__":
    run(main)
