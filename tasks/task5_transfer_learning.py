"""Task 5: transfer: Task 1's autoencoder encoder as the initial encoder, a fresh MLP, fine-tuned on images 0..99.

Story: load Task 1's trained encoder (train it first if its checkpoint is missing) -> for the
same 100 images, seeds and schedule as Task 4, start the encoder from the AE weights (checked
equal), a freshly initialised MLP, and fine-tune both -> compare test loss and accuracy with
Task 4 against training time -> results/task5_transfer_learning.json.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import plots
import task1_autoencoder
import task4_few_shot
from train import (environment, expected_architecture, load_or_train, out_dirs, pick_device, read_json, run_main,
                   upstream_flags, write_json)

NAME = "task5_transfer_learning"


def main(argv=None):
    started = time.perf_counter()
    args = task4_few_shot.parse_args(argv, doc=__doc__)  # same flags and schedule as Task 4
    dirs = out_dirs(args)
    device = pick_device(args.device)
    train, test = task4_few_shot.load_data(args)

    # Task 1's encoder, and Task 4's runs to compare with (each trained first if missing)
    ae_ckpt = load_or_train(dirs["checkpoints"] / "task1_autoencoder.pt", task1_autoencoder,
                            upstream_flags(args) + ["--explore-epochs", "0"], expected_architecture(task1_autoencoder))
    name = task4_few_shot.run_name(NAME, args)
    task4_path = dirs["results"] / f"{task4_few_shot.run_name('task4_few_shot', args)}.json"
    if not task4_path.is_file():
        print(f"{task4_path} not found; running task4_few_shot.py first")
        task4_few_shot.main(upstream_flags(args) + ["--epochs", str(args.epochs), "--seeds", str(args.seeds),
                                                     "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                                                     "--augment-shift", str(args.augment_shift)])
    task4 = read_json(task4_path)
    same_schedule = ("epochs", "batch_size", "lr", "seed", "seeds", "augment_shift")
    differs = [k for k in same_schedule if task4["config"].get(k) != getattr(args, k)]
    if differs:
        print(f"warning: Task 4 was run with other {', '.join(differs)}; the comparison is not like for like")

    histories, final = task4_few_shot.run_seeds(args, train, test, device,
                                                init_encoder=ae_ckpt["state_dict"]["encoder"], label="transfer ")
    final["encoder_started_from_ae"] = all(r["encoder_started_from_ae"] for r in final["per_seed"])
    final["task4"] = {k: task4["final"][k] for k in ("test_accuracy_mean", "test_accuracy_std", "test_loss_mean")}
    task4_few_shot.report("Task 5 (AE encoder, fine-tuned)", final, args.epochs)
    task4_few_shot.report("Task 4 (from scratch)        ", task4["final"], task4["config"]["epochs"])
    print(f"encoder started from Task 1's AE weights: {final['encoder_started_from_ae']}")

    plots.mean_band({"Task 4: random init": task4["histories"], "Task 5: AE encoder": histories},
                    dirs["figures"] / f"{name}_vs_task4.png",
                    f"100 labelled images{', shifted' if args.augment_shift else ''}, {args.seeds} seeds "
                    f"(mean, min-max band)")
    write_json(dirs["results"] / f"{name}.json", {
        "config": vars(args) | {"train_indices": f"0..{task4_few_shot.FEW_SHOT_SIZE - 1}", "init_encoder": "checkpoints/task1_autoencoder.pt"},
        "histories": histories, "final": final, "environment": environment(device, started),
    })
    print(f"wrote {dirs['results'] / f'{name}.json'}")
    if not final["encoder_started_from_ae"]:
        raise SystemExit("error: the encoder did not start from Task 1's weights")


if __name__ == "__main__":
    run_main(main)
