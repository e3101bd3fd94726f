"""Task 5: transfer: Task 1's autoencoder encoder as the initial encoder, a fresh MLP, trained on images 0..99.

The exercise: "Use the pre-trained encoder from #1 (which was trained over the entire training data)
as an initial guess for a classifier encoding stage along with a randomly-initialized classifier
over the 100 examples you used in #4. Plot the losses and accuracies as function of training time
and discuss the results obtained, mainly the test loss/accuracy obtained by this and #4 approaches."

Story: load Task 1's encoder and Task 4's results (each produced first if missing) -> the
like-for-like comparison: Task 4's images, seeds and schedule, the encoder started from the AE
weights (checked equal), a freshly initialised MLP, everything fine-tuned -> the other recipes:
augmented, and a frozen encoder (plain and augmented) -> the recipe with the best validation
accuracy is the chosen one -> what pre-training adds under the same recipe -> how well the AEs of
Task 1's latent sweep (d = 2..32) transfer with a frozen encoder -> figures and
results/task5_transfer_learning.json.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import fewshot
import plots
from cli import base_parser, out_root
from data import FEW_SHOT_SIZE
from models import load_checkpoint
from runs import UserError, open_run, prerequisite, run_main
from train import pick_device

NAME = "task5_transfer_learning"


def parse_args(argv=None):
    p = base_parser(__doc__.splitlines()[0], epochs=fewshot.PLAIN["epochs"], batch_size=10, lr=fewshot.PLAIN["lr"])
    return fewshot.parse_args(p, argv)


def sweep_encoders(args, ae_results: dict) -> dict[int, dict]:
    """The encoders (d -> state_dict) of Task 1's latent sweep, checked to come from the run of its
    results file; {} with a one-line note if that run skipped the exploration."""
    sweep = (ae_results["final"].get("exploration") or {}).get("latent_sweep")
    if not sweep:
        print("note: results/task1_autoencoder.json has no latent sweep (Task 1 ran with --explore-epochs 0), so "
              "transfer vs d is skipped; rerun tasks/task1_autoencoder.py with its defaults to include it")
        return {}
    encoders = {}
    for d in (row["latent_dim"] for row in sweep):
        path = out_root(args) / "checkpoints" / f"task1_autoencoder_sweep_d{d}.pt"  # written by Task 1
        modules, ckpt = load_checkpoint(path, {"latent_dim": d}, "rerun tasks/task1_autoencoder.py with its defaults")
        if ckpt.get("run_id") != ae_results["run_id"]:
            raise UserError(f"{path} does not come from the run of results/task1_autoencoder.json; rerun "
                            f"tasks/task1_autoencoder.py with its defaults")
        encoders[d] = modules["encoder"].state_dict()
    return encoders


def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    ae, ae_results = prerequisite("task1_autoencoder", args)
    _, task4 = prerequisite("task4_few_shot", args, checkpoint=False, extra=(
        "--epochs", str(args.epochs), "--seeds", str(args.seeds), "--batch-size", str(args.batch_size),
        "--lr", str(args.lr)))
    if any(r not in task4.get("final", {}).get("recipes", {}) for r in fewshot.SAME_RECIPE) or "histories" not in task4:
        raise UserError("results/task4_few_shot.json lacks the plain or augmented recipe (an older version's "
                        "results?); rerun tasks/task4_few_shot.py")
    differs = [k for k in ("epochs", "batch_size", "lr", "seed", "seeds", "quick")
               if task4["config"].get(k) != getattr(args, k)]
    if differs:
        print(f"warning: Task 4 was run with other {', '.join(differs)}; the comparison is not like for like")
    by_d_encoders = sweep_encoders(args, ae_results)  # checked before any training
    with open_run(NAME, args) as run:
        data = fewshot.load_data(args)
        validation, data = data[3], data[:3]

        # Every recipe from the AE encoder; the choice on validation; the gain over Task 4 under the same recipe
        histories, recipes = fewshot.run_recipes("autoencoder", args, data, device,
                                                 init_encoder=ae["encoder"].state_dict(), label="transfer: ")
        if not all(r["encoder_started_from_ae"] for s in recipes.values() for r in s["per_seed"]):
            raise RuntimeError("the encoder did not start from Task 1's weights")  # a bug, not a user error
        best = fewshot.select(recipes)
        gains = {setup: fewshot.pretraining_gain(recipes[t5], task4["final"]["recipes"][t4])
                 for setup, (t4, t5) in zip(("plain", "augmented"), fewshot.SAME_RECIPE.items())}
        print(f"chosen on validation: {best['recipe']} (test accuracy {100 * best['test_accuracy_mean']:.2f}%)")
        for setup, g in gains.items():
            print(f"pre-training gain, {setup}: {100 * g['test_accuracy_difference']:+.2f} "
                  f"+- {100 * g['standard_error']:.2f} points (paired: +- {100 * g['paired_standard_error']:.2f})")

        # Transfer vs d: a frozen encoder of each AE of the sweep, Task 4's plain schedule (only the MLP trains)
        by_d = []
        for d, encoder in by_d_encoders.items():
            recipe = fewshot.Recipe(f"frozen d={d}", "autoencoder", encoder="frozen", epochs=args.epochs, lr=args.lr,
                                    batch_size=args.batch_size)
            _, summary = fewshot.run_seeds(recipe, args, data, device, init_encoder=encoder, latent_dim=d,
                                           label="transfer vs d: ")
            by_d.append({"latent_dim": d} | {k: summary[k] for k in ("test_accuracy_mean", "test_accuracy_std",
                                                                    "val_accuracy_mean", "val_accuracy_std", "seeds")})
            print(f"d={d}: frozen-encoder test accuracy {100 * summary['test_accuracy_mean']:.2f} "
                  f"+- {100 * summary['test_accuracy_std']:.2f}%")

        plots.mean_band({"Task 4: random init": task4["histories"], "Task 5: AE encoder": histories["fine-tune"]},
                        run.path("figures", f"{NAME}_vs_task4.png"),
                        f"100 labelled images, plain recipe, {args.seeds} seeds (mean, min-max band)")
        if by_d:
            plots.xy_curve([r["latent_dim"] for r in by_d], {"test": [100 * r["test_accuracy_mean"] for r in by_d]},
                           {"test": [100 * r["test_accuracy_std"] for r in by_d]},
                           run.path("figures", f"{NAME}_vs_latent_dim.png"), "latent size d of the AE",
                           "test accuracy %", "Frozen AE encoder + MLP on 100 images")
        final = recipes["fine-tune"] | {
            "encoder_started_from_ae": True, "recipes": recipes, "best": best,  # checked above
            "pretraining_gain": gains, "transfer_vs_latent_dim": by_d,
            "task4": {k: task4["final"][k] for k in ("test_accuracy_mean", "test_accuracy_std", "test_loss_mean")}}
        run.write_results(f"{NAME}.json", {
            "prerequisites": {"task1_autoencoder": ae_results["run_id"], "task4_few_shot": task4["run_id"]},
            "config": vars(args) | {"train_indices": f"0..{FEW_SHOT_SIZE - 1}",
                                    "init_encoder": "checkpoints/task1_autoencoder.pt",
                                    "validation": validation | {"used_for": "choosing the recipe (final.best)"}},
            "histories": histories["fine-tune"], "recipe_histories": histories, "final": final}, device)


if __name__ == "__main__":
    run_main(main, NAME)
