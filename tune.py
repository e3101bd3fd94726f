"""Validation study: the training settings of every task, chosen on the validation split.

Every run trains on the training images 0..49999 (the few-shot runs on the images 0..99) and is
scored on the validation images 50000..59999; the test set is not even loaded. The questions are
asked in order, each with the settings chosen before it:

  Task 1      batch size (the lr scaled with its square root) and peak lr at 4 epochs; the channel
              widths (c/2c for c = 8, 16, 32, 3 seeds each, at the multiply-adds of 16/32 in 4 epochs);
              the epochs. Then the exploration: the FC layer at the coarsest level against conv-only, and
              against a conv-only variant of the same parameter count, 3 seeds each, at 2 epochs and at
              the chosen epochs.
  Task 2      batch size and lr at 3 epochs; the epochs; the shift augmentation (pixels).
  Task 3      the decoder's batch size and lr at 4 epochs, then its epochs, on the frozen encoder's codes.
  Tasks 4-5   the plain schedule (lr at 30 epochs, then epochs) and the augmented one (peak lr at 150
              epochs, then epochs), from scratch, 3 seeds per setting. The batch of 10 is not studied.

The rule is written into the study's output: among the settings whose validation score is within the
tolerance of the best, take the cheapest, and among equally cheap ones the best. The cost is a count
fixed by the setting, not a timing: optimizer steps x the network's multiply-adds per image (fewer
epochs, larger batches and narrower networks are cheaper; a batch's images are processed in
parallel). Tolerances: 2 % of the best validation L1 (Tasks 1 and 3); 0.1 points of validation
accuracy for Task 2 (about 1.4 binomial standard errors at 99.5 % on 10,000 images); for the
few-shot schedules one standard error of the best setting's mean.

Brackets: a choice at the smallest or largest value tried is no choice, so the grid grows one step
past it (by its ratio; by 1 pixel for shifts) and the question is asked again, until the choice lies
strictly inside the grid or at a cap of CAPS, which names its reason.

One-cycle: the learning rate schedule depends on the run's length, so the first 4 epochs of an
8-epoch run are not a 4-epoch run. Every epoch count is therefore its own run; runs are reused only
where their settings are equal.

    python tune.py           # about an hour on 2 cores: results/tuning.json, figures/tuning*.png
"""
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

import fewshot
import plots
from analysis import apply_batched
from data import few_shot, load_mnist, random_shift, split_validation
from models import MLP, Decoder, Encoder, count_parameters
from train import (UserError, eval_mode, evaluate, fit, parser, pick_device, prepare_out_dir, run, save_results,
                   seed_everything)

NAME = "tuning"
RULE = ("among the settings whose validation score is within the tolerance of the best, the cheapest (cost: optimizer "
        "steps x multiply-adds per image), and among equally cheap ones the best; questions asked in order, each "
        "with the settings chosen before it")
TOLERANCE = {"val_l1": ("relative", 0.02), "val_accuracy": ("absolute", 0.001), "val_accuracy_mean": ("seed SE", 1)}
SEEDS = 3  # few-shot seeds per setting, and exploration seeds per variant
LR_REFERENCE = 0.01  # the peak lr at batch 128 from which the batch-size questions scale: lr x sqrt(batch / 128)
BUDGET = "CPU time: python reproduce.py should stay near half an hour on a laptop's CPU"
CAPS = {  # question -> (the smallest value, the largest value, the reason); None: no cap at that end
    "task1.epochs": (None, 10, BUDGET),
    "task2.epochs": (None, 12, BUDGET),
    "task3.epochs": (None, 32, BUDGET + " (the task trains two decoders)"),
    "task2.augment_shift": (0, 4, "0 is no augmentation; the flag allows at most 4 pixels"),
    "augmented.epochs": (None, 600, BUDGET + " (Tasks 4 and 5 train this schedule in 9 recipes x 5 seeds)"),
}
EXPLORATION = {"with FC": {}, "conv-only": {"fc": False},
               "conv-only, wide": {"fc": False, "extra_channels": 60}}  # 60: the FC model's parameter count +0.2 %


def multiply_adds(model: nn.Module, example: torch.Tensor) -> int:
    """The multiply-adds of `model` for one input like `example` (convolutions and linear layers)."""
    count = []

    def hook(m, inputs, output):
        if isinstance(m, nn.Linear):
            count.append(m.in_features * m.out_features)
        elif isinstance(m, nn.Conv2d):  # every output value: in_channels x kernel products
            count.append(output[0].numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, nn.ConvTranspose2d):  # every input value: out_channels x kernel products
            count.append(inputs[0][0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1])

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad(), eval_mode(model):
        model(example[:1].cpu())
    for h in handles:
        h.remove()
    return sum(count)


def choose(rows: list[dict], metric: str) -> dict:
    """The rule, on validation metrics only: the cheapest row within the tolerance of the best (its "cost"),
    and among equally cheap rows the best."""
    kind, tol = TOLERANCE[metric]
    lower = metric == "val_l1"  # L1: lower is better; accuracy: higher
    best = min(rows, key=lambda r: r[metric]) if lower else max(rows, key=lambda r: r[metric])
    margin = {"relative": tol * best[metric], "absolute": tol}.get(kind) or tol * best.get("val_accuracy_se", 0.0)
    near = [r for r in rows if (r[metric] <= best[metric] + margin if lower else r[metric] >= best[metric] - margin)]
    return min(near, key=lambda r: (r["cost"], r[metric] if lower else -r[metric]))


def step_past(values: list, top: bool, question: str):
    """The next value past the smallest or largest of the sorted `values`: one more pixel for a shift, the
    grid's ratio of 1 - threshold for a confidence threshold, else the grid's ratio (rounded for integers)."""
    a, b = (values[-2], values[-1]) if top else (values[1], values[0])
    if question.endswith("shift"):
        return b + (1 if top else -1)
    if question.endswith("threshold"):
        return float(f"{1 - (1 - b) ** 2 / (1 - a):.3g}")
    nxt = b * b / a
    return max(1, round(nxt)) if isinstance(b, int) else float(f"{nxt:.2g}")


def bracket(question: str, values: list, score, metric: str, max_steps: int = 4, caps: dict = CAPS) -> dict:
    """Ask `question` ('task.key') over `values` (score(v) -> a row) by the rule; while the choice is the
    smallest or largest value tried, add one more past it, unless that end is a cap of `caps`. The answer:
    {'values', 'rows', 'chosen', 'cap' (the reason if the choice sits at a cap, else None)}."""
    lo, hi, reason = caps.get(question, (None, None, None))
    values = sorted(values)
    for extensions in range(max_steps + 1):
        rows = [score(v) for v in values]
        v = values[rows.index(choose(rows, metric))]
        top = v == values[-1]
        if values[0] < v < values[-1] or v == (hi if top else lo) or extensions == max_steps:
            cap = None if values[0] < v < values[-1] else reason if v == (hi if top else lo) else \
                f"not bracketed after {max_steps} extensions"
            return {"values": values, "rows": rows, "chosen": v, "cap": cap}
        nxt, limit = step_past(values, top, question), hi if top else lo
        if limit is not None:
            nxt = min(nxt, limit) if top else max(nxt, limit)
        values = sorted(set(values) | {nxt})


def paired(a: list[float], b: list[float]) -> dict:
    """Mean of the per-seed differences a - b and its standard error."""
    d = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
    return {"difference": d.mean().item(), "standard_error": (d.std() / len(d) ** 0.5).item()}


def main(argv=None):
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    device, out, started = pick_device(args.device), prepare_out_dir(args), time.perf_counter()
    (x, y) = load_mnist(args.data_dir, train=True)  # the test set is never loaded
    fit_part, val = split_validation(x, y)
    if args.quick:
        fit_part, val = (fit_part[0][:1000], fit_part[1][:1000]), (val[0][:300], val[1][:300])
    caps = dict(CAPS)  # --quick: small caps of its own (the module's stay as they are)
    if args.quick:
        caps.update({"task1.epochs": (None, 2, "--quick"), "task2.epochs": (None, 2, "--quick"),
                     "task3.epochs": (None, 2, "--quick"), "augmented.epochs": (None, 4, "--quick"),
                     "plain.epochs": (None, 4, "--quick")}
                    | {f"task{t}.batch_size": (64, None, "--quick") for t in (1, 2, 3)}
                    | {"task1.width": (8, None, "--quick")})
    short = 1 if args.quick else 4  # Tasks 1 and 3: the budget of the batch-size and lr questions
    rows, asked, models = {}, {}, {}

    def trial(question: str, setting: dict, build, data=None, seed=None, **fit_args) -> dict:
        """Seed, build and train one model on `data` (default: the images before the validation split) with
        AdamW and the one-cycle schedule, as the tasks do; its validation score as a row (asked again: not
        retrained). A diverged run scores the worst possible."""
        seed = args.seed if seed is None else seed
        key = (question, repr(sorted(setting.items())), seed)
        if key in rows:
            return rows[key]
        g = seed_everything(seed)
        model, labels = build(), question == "task2"
        loss_fn, metric = (F.cross_entropy, "val_accuracy") if labels else (F.l1_loss, "val_l1")
        train, held_out = data or ((fit_part if labels else (fit_part[0], fit_part[0])),
                                   (val if labels else (val[0], val[0])))
        madds = multiply_adds(model, train[0])  # before fit() moves the model to the device
        try:
            h = fit(model, train, None, loss_fn=loss_fn, epochs=setting["epochs"], batch_size=setting["batch_size"],
                    lr=setting["lr"], device=device, generator=g, eval_every=setting["epochs"],
                    label=f"{question} ", **fit_args)
            score, seconds = evaluate(model, held_out, loss_fn, device)["accuracy" if labels else "loss"], h[-1]["seconds"]
        except UserError:  # the loss diverged
            score, seconds = 0.0 if labels else math.inf, math.inf
        steps = setting["epochs"] * math.ceil(len(train[0]) / setting["batch_size"])
        row = {"question": question, "setting": setting, metric: score, "seed": seed, "train_seconds": seconds,
               "cost": steps * madds / 1e6}  # the rule's cost, in millions
        rows[key], models[id(row)] = row, model
        print(f"{question} {setting} seed {seed}: {metric} {score:.4f}, {seconds:.0f} s")
        return row

    def ask(question: str, values, score, metric: str):
        asked[question] = bracket(question, list(values), score, metric, caps=caps)
        a = asked[question]
        print(f"chosen {question} = {a['chosen']}" + (f" (at a cap: {a['cap']})" if a["cap"] else ""))
        return a["rows"][a["values"].index(a["chosen"])]

    def sig2(lr: float) -> float:
        return float(f"{lr:.2g}")

    def scaled(lr: float, batch: int, reference: int = 128) -> float:
        """The lr for `batch`, scaled with the square root of the batch size from `lr` at `reference`."""
        return lr if batch == reference else sig2(lr * (batch / reference) ** 0.5)

    # Task 1: the AE (mean L1), scored by the validation L1 of its reconstructions
    def autoencoder(batch_size, lr, epochs, channels=(16, 32), seed=None, **variant):
        setting = {"batch_size": batch_size, "lr": lr, "epochs": epochs, "channels": list(channels)} | variant
        return trial("task1", setting, lambda: nn.Sequential(Encoder(12, channels, **variant),
                                                             Decoder(12, channels, **variant)), seed=seed)

    b1 = ask("task1.batch_size", (128, 256, 512),
             lambda b: autoencoder(b, scaled(LR_REFERENCE, b), short), "val_l1")["setting"]["batch_size"]
    lr0 = scaled(LR_REFERENCE, b1)
    lr1 = ask("task1.lr", (sig2(lr0 / 2), lr0, sig2(lr0 * 2)), lambda lr: autoencoder(b1, lr, short), "val_l1")["setting"]["lr"]

    # The widths c/2c at one compute budget: the multiply-adds of 16/32 in `short` epochs (a wider network gets
    # fewer epochs, at least 1), 3 seeds each, scored by the mean validation L1
    seeds = list(range(args.seed, args.seed + SEEDS))

    def width(c: int) -> dict:
        size = {w: multiply_adds(nn.Sequential(Encoder(12, (w, 2 * w)), Decoder(12, (w, 2 * w))), fit_part[0])
                for w in (16, c)}
        runs = [autoencoder(b1, lr1, max(1, round(short * size[16] / size[c])), (c, 2 * c), s) for s in seeds]
        return {"setting": runs[0]["setting"], "val_l1": sum(r["val_l1"] for r in runs) / SEEDS,
                "val_l1_per_seed": [r["val_l1"] for r in runs], "cost": runs[0]["cost"], "seeds": seeds}

    c = ask("task1.width", (8, 16, 32), width, "val_l1")["setting"]["channels"][0]
    ch = (c, 2 * c)
    e1 = ask("task1.epochs", (4, 6, 8, 10) if not args.quick else (1, 2),
             lambda e: autoencoder(b1, lr1, e, ch), "val_l1")["setting"]["epochs"]

    # Task 1's exploration: the FC layer at the coarsest level against conv-only, 3 seeds, at 2 and e1 epochs
    budgets = (1, 2) if args.quick else (2, e1)
    exploration = {"budgets": list(budgets), "seeds": seeds, "variants": {}, "encoder_arguments": EXPLORATION}
    for name, variant in EXPLORATION.items():
        runs = {e: [autoencoder(b1, lr1, e, ch, s, **variant) for s in seeds] for e in budgets}
        m = models[id(runs[budgets[-1]][0])]
        exploration["variants"][name] = {"parameters": count_parameters(m)} | {
            f"{e} epochs": {"val_l1": [r["val_l1"] for r in runs[e]]} for e in budgets}
        with torch.no_grad(), eval_mode(m):
            exploration["variants"][name]["reconstructions"] = m(val[0][:12].to(device)).cpu()
    for e in budgets:
        l1 = {n: torch.tensor(v[f"{e} epochs"]["val_l1"], dtype=torch.float64) for n, v in exploration["variants"].items()}
        exploration[f"{e} epochs"] = {
            "mean": {n: v.mean().item() for n, v in l1.items()}, "std": {n: v.std().item() for n, v in l1.items()},
            "ranking": sorted(l1, key=lambda n: l1[n].mean().item()),
            "paired vs with FC": {n: paired(l1[n].tolist(), l1["with FC"].tolist()) for n in l1 if n != "with FC"}}
    exploration["ranking_holds"] = len({tuple(exploration[f"{e} epochs"]["ranking"]) for e in budgets}) == 1
    images = {"input": val[0][:12]} | {f"{n}\n(val L1 {exploration[f'{budgets[-1]} epochs']['mean'][n]:.4f})":
                                       v.pop("reconstructions") for n, v in exploration["variants"].items()}
    plots.digit_grid(images, out / "figures" / f"{NAME}_fc_exploration.png", per_row=12,
                     title=f"Task 1's exploration: validation digits, seed {seeds[0]}, {budgets[-1]} epochs "
                           f"(val L1: mean of {SEEDS} seeds)")

    # Task 2: the classifier (same encoder architecture + MLP), scored by validation accuracy
    def classifier(batch_size, lr, epochs, shift=2):
        return trial("task2", {"batch_size": batch_size, "lr": lr, "epochs": epochs, "augment_shift": shift},
                     lambda: nn.Sequential(Encoder(12, ch), MLP(12)),
                     augment=(lambda xb, gen: random_shift(xb, shift, gen)) if shift else None)

    s2 = 1 if args.quick else 3
    b2 = ask("task2.batch_size", (128, 256, 512), lambda b: classifier(b, scaled(LR_REFERENCE, b), s2),
             "val_accuracy")["setting"]["batch_size"]
    lr0 = scaled(LR_REFERENCE, b2)
    lr2 = ask("task2.lr", (sig2(lr0 / 3), lr0, sig2(lr0 * 3)), lambda lr: classifier(b2, lr, s2), "val_accuracy")["setting"]["lr"]
    e2 = ask("task2.epochs", (3, 6, 12) if not args.quick else (1, 2), lambda e: classifier(b2, lr2, e),
             "val_accuracy")["setting"]["epochs"]
    clf = ask("task2.augment_shift", (0, 1, 2, 3), lambda s: classifier(b2, lr2, e2, s), "val_accuracy")

    # Task 3: a fresh decoder on the codes of the chosen classifier's frozen encoder
    encoder = models[id(clf)][0]
    codes = ((apply_batched(encoder, fit_part[0], device), fit_part[0]), (apply_batched(encoder, val[0], device), val[0]))

    def decoder(batch_size, lr, epochs):
        return trial("task3", {"batch_size": batch_size, "lr": lr, "epochs": epochs}, lambda: Decoder(12, ch),
                     data=codes)

    b3 = ask("task3.batch_size", (128, 256, 512), lambda b: decoder(b, scaled(lr1, b, b1), short),
             "val_l1")["setting"]["batch_size"]
    lr0 = scaled(lr1, b3, b1)
    lr3 = ask("task3.lr", (sig2(lr0 / 2), lr0, sig2(lr0 * 2)), lambda lr: decoder(b3, lr, short), "val_l1")["setting"]["lr"]
    ask("task3.epochs", (2, 4, 8) if not args.quick else (1, 2), lambda e: decoder(b3, lr3, e), "val_l1")

    # The few-shot schedules (Task 4's set-up: from scratch, batch 10), 3 seeds each, scored by validation accuracy
    train100 = few_shot(x, y)
    madds = multiply_adds(fewshot.classifier(), train100[0])

    def schedule(name, base, epochs, lr):
        key = (name, (("epochs", epochs), ("lr", lr)), None)
        if key not in rows:
            recipe = fewshot.Recipe(augment=base.augment, epochs=epochs, lr=lr, schedule=base.schedule)
            _, s = fewshot.train_seeds(recipe, (train100, val, None), seeds, device, label=f"{name} ")
            rows[key] = {"question": name, "setting": {"epochs": epochs, "lr": lr},
                         "val_accuracy_mean": s["val_accuracy_mean"], "val_accuracy_se": s["val_accuracy_std"] / SEEDS ** 0.5,
                         "val_accuracy_per_seed": [r["val_accuracy"] for r in s["per_seed"]],
                         "train_seconds": s["train_seconds_mean"] * SEEDS, "seeds": seeds,
                         "cost": epochs * math.ceil(len(train100[0]) / base.batch_size) * madds / 1e6}
            print(f"{name} {rows[key]['setting']}: val accuracy {100 * s['val_accuracy_mean']:.2f}%")
        return rows[key]

    quick_epochs = (2, 4) if args.quick else None
    lr = ask("plain.lr", (3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
             lambda lr: schedule("plain", fewshot.PLAIN, 4 if args.quick else 30, lr), "val_accuracy_mean")["setting"]["lr"]
    ask("plain.epochs", quick_epochs or (15, 30, 60), lambda e: schedule("plain", fewshot.PLAIN, e, lr),
        "val_accuracy_mean")
    lr = ask("augmented.lr", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2), lambda lr: schedule("augmented", fewshot.AUGMENTED,
                                                                     4 if args.quick else 150, lr),
             "val_accuracy_mean")["setting"]["lr"]
    ask("augmented.epochs", quick_epochs or (50, 100, 150), lambda e: schedule("augmented", fewshot.AUGMENTED, e, lr),
        "val_accuracy_mean")

    chosen = {}
    for question, a in asked.items():
        task, key = question.split(".")
        chosen.setdefault(task, {})[key] = a["chosen"]
    plots.study(asked, out / "figures" / f"{NAME}.png")
    save_results(out / "results" / f"{NAME}.json", args, device, started, rule=RULE,
                 tolerance={k: {"kind": v[0], "value": v[1]} for k, v in TOLERANCE.items()},
                 caps={q: {"smallest": c[0], "largest": c[1], "reason": c[2]} for q, c in caps.items()},
                 questions=asked, exploration=exploration, chosen=chosen, fixed={"few-shot batch_size": 10})


if __name__ == "__main__":
    run(main)
