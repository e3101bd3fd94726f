"""Reproduce everything: Tasks 1-5 in order, then the report ex2.pdf.

    python reproduce.py           # full runs into figures/, results/, checkpoints/ and ex2.pdf (~30 min on 2 cores)
    python reproduce.py --quick   # the whole chain in about a minute, into runs/quick/ (committed outputs untouched)
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent
TASKS = ("task1_autoencoder", "task2_classifier", "task3_classifier_decoding", "task4_few_shot",
         "task5_transfer_learning")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run of the whole chain (default: off)")
    p.add_argument("--out-dir", default=None,
                   help="where figures/, results/, checkpoints/ and ex2.pdf go (default: the repo root; "
                        "runs/quick/ with --quick)")
    p.add_argument("--data-dir", default=None, help="folder holding MNIST/raw/ (default: $MNIST_ROOT, else data/)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="device for every task (default: auto)")
    args = p.parse_args(argv)
    out_dir = Path(args.out_dir).resolve() if args.out_dir else (REPO / "runs" / "quick" if args.quick else REPO)
    flags = ["--out-dir", str(out_dir), "--device", args.device] + (["--quick"] if args.quick else [])
    flags += ["--data-dir", args.data_dir] if args.data_dir else []
    start = time.perf_counter()
    for task in TASKS:
        print(f"== {task} ({time.perf_counter() - start:.0f}s)", flush=True)
        done = subprocess.run([sys.executable, str(REPO / "tasks" / f"{task}.py"), *flags])
        if done.returncode:
            sys.exit(f"error: tasks/{task}.py failed (exit status {done.returncode}); see its message above")
    build = [sys.executable, str(REPO / "report" / "build.py")] + (["--out-dir", str(out_dir)] if args.out_dir or args.quick else [])
    if subprocess.run(build).returncode:
        sys.exit("error: the report did not build; see the message above")
    print(f"== done in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
