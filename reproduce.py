"""Reproduce the exercise: Tasks 1-5 in order, then the report ex2.pdf; --extras adds what goes beyond it.

    python reproduce.py                  # the five tasks and ex2.pdf, into figures/, results/, checkpoints/
    python reproduce.py --extras         # also extras/: the latent-size sweep, Q2 measured, the unlabelled images
    python reproduce.py --quick          # the whole chain in about a minute, into runs/quick/

The validation study (python tune.py) that chose the tasks' settings is not part of it.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent

TASKS = ("tasks/task1_autoencoder.py", "tasks/task2_classifier.py", "tasks/task3_classifier_decoding.py",
         "tasks/task4_few_shot.py", "tasks/task5_transfer_learning.py")
EXTRAS = ("extras/latent_sweep.py", "extras/q2_equivariance.py", "extras/semi_supervised.py")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--extras", action="store_true", help="also run extras/ (default: off)")
    p.add_argument("--quick", action="store_true", help="smoke runs on a small subset, into runs/quick/")
    p.add_argument("--device", default="auto", help="passed on to every script (default: auto)")
    p.add_argument("--data-dir", help="passed on: the folder holding MNIST/raw/ (default: $MNIST_ROOT, else data/)")
    p.add_argument("--out-dir", help="passed on: where the outputs go (default: the repository; runs/quick/ with --quick)")
    return p.parse_args(argv)


def steps(args) -> list[tuple[str, list[str]]]:
    """(script, flags) of every step, in order."""
    flags = ["--device", args.device] + ["--quick"] * args.quick
    flags += ["--data-dir", args.data_dir] * bool(args.data_dir)
    flags += ["--out-dir", args.out_dir] if args.out_dir is not None else []  # an empty one is refused by the scripts
    out = args.out_dir if args.out_dir is not None else str(REPO / "runs" / "quick") if args.quick else None
    report = ["--out-dir", out] if out is not None else []  # the report reads where the tasks wrote
    return [(s, flags) for s in TASKS + EXTRAS * args.extras] + [("report/build.py", report)]


def main(argv=None):
    args, start = parse_args(argv), time.perf_counter()
    for script, flags in steps(args):
        print(f"== {script} ({time.perf_counter() - start:.0f} s)", flush=True)
        if subprocess.run([sys.executable, str(REPO / script), *flags]).returncode:
            sys.exit(f"error: {script} failed; see its message above")
    print(f"== done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
