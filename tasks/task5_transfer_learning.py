"""Task 5: transfer: Task 1's autoencoder encoder as the initial encoder, a fresh MLP, trained on images 0..99.

Story: load Task 1's trained encoder (train it first if its checkpoint is missing) and Task 4's
results (run it first if missing) -> the like-for-like comparison: the same 100 images, seeds and
schedule as Task 4, the encoder started from the AE weights (checked equal), a freshly
initialised MLP, everything fine-tuned -> the other recipes: augmented, a frozen encoder with a
trained MLP, two stages (the MLP first, then everything at a lower encoder learning rate) -> the
recipe with the best validation accuracy is the chosen one -> what pre-training adds under the
same recipe, plain and augmented -> how well the latent sweep's AEs (d = 2..32) transfer with a
frozen encoder -> figures and results/task5_transfer_learning.json.
"""
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import plots
import task1_autoencoder
import task4_few_shot
from runs import CheckpointError, load_checkpoint, load_or_train, open_run, out_dirs, read_json, run_main, upstream_flags
from task4_few_shot import Recipe, run_recipes, run_seeds, selection
from train import pick_device

NAME = "task5_transfer_learning"


def parse_args(argv=None):
    return task4_few_shot.parse_args(argv, doc=__doc__, prerequisites=True)  # Task 4's flags and schedule


def task4_results(args) -> dict:
    """Task 4's results (run first with the same flags if missing), for the comparison."""
    path = out_dirs(args)["results"] / "task4_few_shot.json"
    if not path.is_file():
        print(f"{path} not found; running task4_few_shot.py first")
        task4_few_shot.main(upstream_flags(args) + ["--epochs", str(args.epochs), "--seeds", str(args.seeds),
                                                     "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                                                     "--recipe-epochs-scale", str(args.recipe_epochs_scale)])
    task4 = read_json(path)
    missing = [r for r in task4_few_shot.SAME_RECIPE if r not in task4.get("final", {}).get("recipes", {})]
    if missing or "histories" not in task4 or "run_id" not in task4:
        raise CheckpointError(f"{path} lacks {', '.join(missing) or 'its histories or run_id'} (an older version's "
                              f"results?); rerun tasks/task4_few_shot.py")
    differs = [k for k in ("epochs", "batch_size", "lr", "seed", "seeds", "recipe_epochs_scale")
               if task4["config"].get(k) != getattr(args, k)]
    if differs:
        print(f"warning: Task 4 was run with other {', '.join(differs)}; the comparison is not like for like")
    return task4


def pretraining_gain(task5: dict, task4: dict) -> dict:
    """Task 5 minus Task 4 under the same recipe: difference of the mean test accuracies, its
    (unpaired, Welch) standard error sqrt(s4^2/n4 + s5^2/n5), and the paired one over the per-seed
    differences: a seed fixes the MLP's initialisation, the batch order and the augmentation in
    both tasks, so only the encoder's start differs within a pair."""
    t4 = {r["seed"]: r["test_accuracy"] for r in task4["per_seed"]}
    diffs = [r["test_accuracy"] - t4[r["seed"]] for r in task5["per_seed"] if r["seed"] in t4]
    mean = sum(diffs) / len(diffs)
    paired = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs)) if len(diffs) > 1 else 0.0
    return {"task4_recipe": task4["recipe"]["name"], "task5_recipe": task5["recipe"]["name"],
            "test_accuracy_difference": task5["test_accuracy_mean"] - task4["test_accuracy_mean"],
            "standard_error": math.sqrt(task5["test_accuracy_std"] ** 2 / task5["seeds"]
                                        + task4["test_accuracy_std"] ** 2 / task4["seeds"]),
            "paired_seeds": len(diffs), "paired_standard_error": paired}


def sweep_encoders(args, ae_results: dict) -> dict[int, dict]:
    """The encoders of Task 1's latent sweep (d -> state_dict), checked to come from the run of
    results/task1_autoencoder.json; {} if that run skipped the exploration."""
    if not ae_results["final"].get("exploration"):
        return {}
    encoders = {}
    for d in task1_autoencoder.SWEEP_DIMS:
        path = out_dirs(args)["checkpoints"] / task1_autoencoder.sweep_checkpoint(d)
        ckpt = load_checkpoint(path, {"latent_dim": d})
        if ckpt.get("run_id") != ae_results["run_id"]:
            raise CheckpointError(f"{path} does not come from the run of results/task1_autoencoder.json; rerun "
                                  f"tasks/task1_autoencoder.py")
        encoders[d] = ckpt["state_dict"]["encoder"]
    return encoders


def transfer_vs_latent_dim(args, data, device, encoders: dict[int, dict]) -> list[dict]:
    """Frozen-encoder probe (Task 4's plain schedule, only the MLP trains) on the 100 images for
    each AE of Task 1's latent sweep."""
    rows = []
    for d, encoder in encoders.items():
        recipe = Recipe(f"frozen d={d}", "autoencoder", encoder="frozen", epochs=args.epochs, lr=args.lr,
                        batch_size=args.batch_size)  # Task 4's plain schedule
        _, summary = run_seeds(recipe, args, data, device, init_encoder=encoder,
                               latent_dim=d, label="transfer vs d: ")
        rows.append({"latent_dim": d} | {k: summary[k] for k in ("test_accuracy_mean", "test_accuracy_std",
                                                                "val_accuracy_mean", "val_accuracy_std", "seeds")})
        print(f"d={d}: frozen-encoder test accuracy {100 * rows[-1]['test_accuracy_mean']:.2f} "
              f"+- {100 * rows[-1]['test_accuracy_std']:.2f}%")
    return rows


def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    with open_run(NAME, args) as run:
        ae_ckpt, ae_results = load_or_train(task1_autoencoder, args)
        by_d_encoders = sweep_encoders(args, ae_results)  # checked before any training
        task4 = task4_results(args)
        train, val, test, validation = task4_few_shot.load_data(args)
        data = (train, val, test)

        histories, recipes = run_recipes("autoencoder", args, data, device,
                                         init_encoder=ae_ckpt["state_dict"]["encoder"], label="transfer: ")
        started_from_ae = all(r["encoder_started_from_ae"] for s in recipes.values() for r in s["per_seed"])
        best, small = selection(recipes)
        gains = {setup: pretraining_gain(recipes[t5], task4["final"]["recipes"][t4])
                 for setup, (t4, t5) in zip(("plain", "augmented"), task4_few_shot.SAME_RECIPE.items())}
        by_d = transfer_vs_latent_dim(args, data, device, by_d_encoders)

        print(f"encoder started from Task 1's AE weights: {started_from_ae}")
        print(f"chosen on validation: {best['recipe']} (test accuracy {100 * best['test_accuracy_mean']:.2f}%); "
              f"with only 100 / 500 validation images: {small['100']} / {small['500']}")
        for setup, g in gains.items():
            print(f"pre-training gain, {setup}: {100 * g['test_accuracy_difference']:+.2f} "
                  f"+- {100 * g['standard_error']:.2f} points (paired: +- {100 * g['paired_standard_error']:.2f})")

        for suffix, x_key in (("", "epoch"), ("_seconds", "seconds")):
            plots.mean_band({"Task 4: random init": task4["histories"], "Task 5: AE encoder": histories["fine-tune"]},
                            run.path("figures", f"{NAME}_vs_task4{suffix}.png"),
                            f"100 labelled images, plain set-up, {args.seeds} seeds (mean, min-max band)", x_key=x_key)
        both = task4["final"]["recipes"] | recipes  # Task 4's recipes first, then Task 5's
        plots.bars({split: [100 * r[f"{key}_accuracy_mean"] for r in both.values()]
                    for split, key in (("test", "test"), ("validation", "val"))},
                   [n.replace(", ", ",\n").replace("frozen encoder", "frozen\nencoder") for n in both],
                   run.path("figures", f"{NAME}_recipes.png"), "accuracy % (mean over seeds)", fmt="{:.1f}",
                   errors={split: [100 * r[f"{key}_accuracy_std"] for r in both.values()]
                           for split, key in (("test", "test"), ("validation", "val"))})
        if by_d:
            plots.xy_curve([r["latent_dim"] for r in by_d],
                           {"test": [100 * r["test_accuracy_mean"] for r in by_d]},
                           run.path("figures", f"{NAME}_vs_latent_dim.png"), "latent size d of the AE",
                           "test accuracy %", "Frozen AE encoder + MLP on 100 images",
                           logx=True, errors={"test": [100 * r["test_accuracy_std"] for r in by_d]}, fmt="{:.1f}")
        final = recipes["fine-tune"] | {
            "encoder_started_from_ae": started_from_ae, "recipes": recipes, "best": best,
            "selection_by_validation_size": small, "pretraining_gain": gains, "transfer_vs_latent_dim": by_d,
            "task4": {k: task4["final"][k] for k in ("test_accuracy_mean", "test_accuracy_std", "test_loss_mean")}}
        run.write_results(f"{NAME}.json", {
            "prerequisites": {"task1_autoencoder": ae_results["run_id"], "task4_few_shot": task4["run_id"]},
            "config": vars(args) | {"train_indices": f"0..{task4_few_shot.FEW_SHOT_SIZE - 1}",
                                    "init_encoder": "checkpoints/task1_autoencoder.pt",
                                    "validation": validation | {"used_for": "choosing the recipe (final.best)"}},
            "histories": histories["fine-tune"], "recipe_histories": histories, "final": final}, device)
        if not started_from_ae:
            raise RuntimeError("the encoder did not start from Task 1's weights")  # a bug, not a user error


if __name__ == "__main__":
    run_main(main)
