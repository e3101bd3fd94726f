"""Task 5: transfer: Task 1's autoencoder encoder as the initial encoder, a fresh MLP, trained on images 0..99.

The exercise: "Use the pre-trained encoder from #1 (which was trained over the entire training data)
as an initial guess for a classifier encoding stage along with a randomly-initialized classifier
over the 100 examples you used in #4. Plot the losses and accuracies as function of training time
and discuss the results obtained, mainly the test loss/accuracy obtained by this and #4 approaches."

Story: load Task 1's encoder and Task 4's results -> the like-for-like comparison: Task 4's images,
seeds and plain recipe, the encoder started from the AE's weights, a fresh MLP, everything
fine-tuned -> the augmented recipe and its schedule alone, the augmented recipe at other learning
rates (lr/3, lr×3, lr×9, lr×27), and a frozen encoder (plain and augmented) as controls -> the recipe with
the best validation accuracy is the answer (another learning rate only if it leads by more than one standard
error) -> what pre-training adds: each recipe minus Task 4's recipe with equal settings, over the same seeds
-> figure and results/task5_transfer_learning.json.
"""
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import fewshot
import plots
from models import load_pretrained
from train import load_results, number, parser, pick_device, prepare_out_dir, run, save_results

NAME = "task5_transfer_learning"


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0], epochs=fewshot.PLAIN.epochs, batch_size=10, lr=fewshot.PLAIN.lr)
    p.add_argument("--seeds", type=number(int, 1, 100), default=5,
                   help="number of seeds, 1..100: --seed, --seed + 1, ... (default: 5; Task 4's, for the comparison)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds = 2, 2
    return args


LR_FACTORS = (1 / 3, 3, 9, 27)  # the augmented recipe's peak lr, re-tuned for fine-tuning: lr x these, chosen on validation


def recipes(args) -> dict[str, fewshot.Recipe]:
    """Task 4's three recipes with the encoder fine-tuned; the augmented one at other peak learning rates (a
    pre-trained encoder may need another one); Task 4's plain and augmented ones with the encoder frozen."""
    plain, augmented = fewshot.schedules(args)
    return {"fine-tune": plain, "fine-tune, augmented": augmented,
            "fine-tune, schedule only": replace(augmented, augment=False)} | {
            "fine-tune, augmented, " + (f"lr/{round(1 / f)}" if f < 1 else f"lr×{f}"):
                replace(augmented, lr=float(f"{augmented.lr * f:.2g}"))
            for f in LR_FACTORS} | {
            "frozen encoder": replace(plain, freeze_encoder=True),
            "frozen encoder, augmented": replace(augmented, freeze_encoder=True)}


def choose(summaries: dict[str, dict], base: str = "fine-tune, augmented") -> str:
    """The recipe with the best mean validation accuracy, except that a re-tuned learning rate replaces Task 4's (the
    `base` recipe's) only if it scores more than one standard error over seeds higher: a change needs evidence."""
    best = fewshot.select(summaries)
    if best.startswith(base + ", lr"):
        s = summaries[best]
        if s["val_accuracy_mean"] - summaries[base]["val_accuracy_mean"] <= s["val_accuracy_std"] / s["seeds"] ** 0.5:
            return base
    return best


def main(argv=None):
    args = parse_args(argv)
    device, out, started = pick_device(args.device), prepare_out_dir(args), time.perf_counter()
    encoder = load_pretrained(out / "checkpoints" / "task1_autoencoder.pt",
                              "run python tasks/task1_autoencoder.py first (about 5 minutes)")["encoder"]
    task4 = load_results(out / "results" / "task4_few_shot.json", "run python tasks/task4_few_shot.py first (about 3 minutes)")
    data = fewshot.load_data(args)
    seeds = range(args.seed, args.seed + args.seeds)

    histories, summaries, table = {}, {}, recipes(args)
    for name, recipe in table.items():
        every = None if recipe.freeze_encoder else fewshot.curve_every(recipe)
        histories[name], summaries[name] = fewshot.train_seeds(recipe, data, seeds, device, init_encoder=encoder,
                                                               eval_every=every, label=f"transfer, {name}, ")
        s = summaries[name]
        print(f"{name}: test accuracy {100 * s['test_accuracy_mean']:.2f} +- {100 * s['test_accuracy_std']:.2f}%, "
              f"validation {100 * s['val_accuracy_mean']:.2f}%, train {100 * s['train_accuracy_mean']:.1f}%")
    best = choose(summaries)
    print(f"chosen on validation: {best} (test accuracy {100 * summaries[best]['test_accuracy_mean']:.2f}%)")

    # What pre-training adds: each recipe against Task 4's recipe of equal settings (only the start differs)
    gains = {}
    for name, s5 in summaries.items():
        for name4, s4 in task4["final"]["recipes"].items():
            if s4["recipe"] == s5["recipe"]:
                gains[name] = {"task4_recipe": name4} | fewshot.pretraining_gain(s5, s4)
                g = gains[name]
                print(f"pre-training gain, {name} vs {name4}: {100 * g['test_accuracy_difference']:+.2f} "
                      f"+- {100 * g['standard_error']:.2f} points (paired: +- {100 * g['paired_standard_error']:.2f})")
    if not gains:
        print("warning: Task 4 ran with other settings (no recipe matches); rerun it with these flags to compare")

    rows = {r: {"Task 4: random init": task4["history"][r4], "Task 5: AE encoder, same recipe": histories[r5]}
            for r, r4, r5 in (("plain", "plain", "fine-tune"), ("augmented", "augmented", "fine-tune, augmented"))}
    if best not in ("fine-tune", "fine-tune, augmented"):  # the chosen recipe's curves too, in the row of its kind
        rows["augmented" if table[best].augment else "plain"][f"Task 5: {best} (chosen)"] = histories[best]
    plots.mean_band(rows, out / "figures" / f"{NAME}_vs_task4.png")  # described by the report's caption
    save_results(out / "results" / f"{NAME}.json", args, device, started, history=histories,
                 final={"best": best, "best_validation_accuracy": fewshot.select(summaries), "recipes": summaries,
                        "pretraining_gain": gains})


if __name__ == "__main__":
    run(main)
