"""Reproduce everything: Tasks 1-5 and the Q2 measurement in order, then the report ex2.pdf.

    python reproduce.py           # full runs into figures/, results/, checkpoints/ and ex2.pdf
    python reproduce.py --quick   # the whole chain in about a minute, into runs/quick/ (committed outputs untouched)
"""
import signal
import sys
import time
from pathlib import Path

from cli import REPO, Parser, folder, run_script

TASKS = ("task1_autoencoder", "task2_classifier", "task3_classifier_decoding", "q2_equivariance", "task4_few_shot",
         "task5_transfer_learning")


def _terminate(signum, frame):
    raise KeyboardInterrupt  # run_script passes it on to the running step


def steps(args) -> list[tuple[str, list[str]]]:
    """(script, flags) of every step, in order: the tasks, then the report."""
    out_dir = Path(args.out_dir).resolve() if args.out_dir else (REPO / "runs" / "quick" if args.quick else REPO)
    flags = ["--out-dir", str(out_dir), "--device", args.device] + (["--quick"] if args.quick else [])
    flags += ["--data-dir", args.data_dir] if args.data_dir else []
    return [(f"tasks/{t}.py", flags) for t in TASKS] + [
        ("report/build.py", ["--out-dir", str(out_dir)] if args.out_dir or args.quick else [])]


def parse_args(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run of the whole chain (default: off)")
    p.add_argument("--out-dir", type=folder, default=None,
                   help="where figures/, results/, checkpoints/ and ex2.pdf go (default: the repo root; "
                        "runs/quick/ with --quick)")
    p.add_argument("--data-dir", type=folder, default=None,
                   help="folder holding MNIST/raw/ (default: $MNIST_ROOT, else data/)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="device for every task (default: auto)")
    return p.parse_args(argv)


def main(argv=None):
    signal.signal(signal.SIGTERM, _terminate)
    start, step = time.perf_counter(), None
    try:
        for step, flags in steps(parse_args(argv)):
            print(f"== {step} ({time.perf_counter() - start:.0f}s)", flush=True)
            if status := run_script(step, flags):
                sys.exit(f"error: {step} failed (exit status {status}); see its message above")
    except KeyboardInterrupt:
        sys.exit(f"interrupted during {step}; the steps before it finished and kept their outputs")
    print(f"== done in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
