"""Beyond the exercise: the latent size d, and how well each autoencoder's encoder transfers to 100 labels.

The exercise fixes d ~ 12; this asks what d buys. For each d in 2, 4, 8, 12, 16, 32: an
autoencoder of Task 1's architecture (FC to d) trained on images 0..49999 at Task 1's learning
rate for a short, equal budget and scored on the validation images 50000..59999 -> its encoder,
frozen, + a fresh MLP trained on images 0..99 with Task 4's plain recipe over 5 seeds (test and
validation accuracy) -> figures/latent_sweep.png and results/latent_sweep.json.
"""
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python extras/...` from anywhere

import matplotlib.pyplot as plt
import torch.nn.functional as F
from torch import nn

import fewshot
import plots
from data import few_shot, load_splits, validation_start
from models import Decoder, Encoder
from train import evaluate, fit, number, parser, pick_device, prepare_out_dir, run, save_results, seed_everything

NAME = "latent_sweep"
DIMS = (2, 4, 8, 12, 16, 32)


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0], epochs=2, batch_size=128, lr=0.02)  # Task 1's batch and lr, a short budget
    p.add_argument("--seeds", type=number(int, 1, 100), default=5, help="few-shot seeds per d, 1..100 (default: 5)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds = 1, 2
    return args


def main(argv=None):
    args = parse_args(argv)
    device, out, started = pick_device(args.device), prepare_out_dir(args), time.perf_counter()
    (x, y), test = load_splits(args.data_dir, args.quick)
    s = validation_start(len(x))
    data = (few_shot(x, y), (x[s:], y[s:]), test)  # the 100 labelled images, validation, test
    recipe = replace(fewshot.PLAIN, freeze_encoder=True, epochs=2 if args.quick else fewshot.PLAIN.epochs)

    rows = []
    for d in DIMS:
        generator = seed_everything(args.seed)
        ae = nn.Sequential(Encoder(d), Decoder(d))
        # AdamW; one-cycle schedule peaking at --lr; mean L1; images 0..s-1 only
        fit(ae, (x[:s], x[:s]), None, loss_fn=F.l1_loss, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            device=device, generator=generator, eval_every=args.epochs, label=f"AE d={d} ")
        val_l1 = evaluate(ae, (x[s:], x[s:]), F.l1_loss, device)["loss"]
        _, summary = fewshot.train_seeds(recipe, data, range(args.seed, args.seed + args.seeds), device,
                                         init_encoder=ae[0], label=f"frozen d={d}, ")
        rows.append({"latent_dim": d, "val_l1": val_l1} | {k: summary[k] for k in (
            "test_accuracy_mean", "test_accuracy_std", "val_accuracy_mean", "val_accuracy_std", "seeds")})
        print(f"d={d}: validation L1 {val_l1:.4f}, frozen-encoder test accuracy "
              f"{100 * summary['test_accuracy_mean']:.2f} +- {100 * summary['test_accuracy_std']:.2f}%")

    fig, axes = plt.subplots(1, 2, figsize=(plots.TEXT_WIDTH, 2.6))
    axes[0].plot(DIMS, [r["val_l1"] for r in rows], "o-", ms=4)
    axes[0].set(ylabel="validation L1", title=f"Autoencoder, {args.epochs} epochs on 0..{s - 1}")
    axes[1].errorbar(DIMS, [100 * r["test_accuracy_mean"] for r in rows],
                     yerr=[100 * r["test_accuracy_std"] for r in rows], fmt="o-", ms=4, capsize=3)
    axes[1].set(ylabel="test accuracy %", title=f"Frozen encoder + MLP, 100 labels, {args.seeds} seeds")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(DIMS, [str(d) for d in DIMS])
        ax.minorticks_off()
        ax.set_xlabel("latent size d")
        ax.grid(alpha=0.3)
    plots._save(fig, out / "figures" / f"{NAME}.png")
    save_results(out / "results" / f"{NAME}.json", args, device, started,
                 final={"per_dim": rows, "few_shot_recipe": asdict(recipe)})


if __name__ == "__main__":
    run(main)
