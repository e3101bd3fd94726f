"""Reproduce everything: Tasks 1-5 and the Q2 measurement in order, then the report ex2.pdf.

    python reproduce.py           # full runs into figures/, results/, checkpoints/ and ex2.pdf (over an hour on 2 slow cores)
    python reproduce.py --quick   # the whole chain in about a minute, into runs/quick/ (committed outputs untouched)
"""
import signal
import subprocess
import sys
import time
from pathlib import Path

from runs import Parser

REPO = Path(__file__).resolve().parent
TASKS = ("task1_autoencoder", "task2_classifier", "task3_classifier_decoding", "q2_equivariance", "task4_few_shot",
         "task5_transfer_learning")


_CHILD: list[subprocess.Popen] = []  # the running step


def _terminate(signum, frame):
    """SIGTERM: pass it on to the running step (which drops its staged outputs), then stop like Ctrl-C."""
    for child in _CHILD:
        if child.poll() is None:
            child.terminate()
    raise KeyboardInterrupt


def main(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
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
    steps = [(f"tasks/{t}.py", [sys.executable, str(REPO / "tasks" / f"{t}.py"), *flags]) for t in TASKS]
    steps.append(("report/build.py", [sys.executable, str(REPO / "report" / "build.py")]
                  + (["--out-dir", str(out_dir)] if args.out_dir or args.quick else [])))
    signal.signal(signal.SIGTERM, _terminate)
    start, step = time.perf_counter(), None
    try:
        for step, command in steps:
            print(f"== {step} ({time.perf_counter() - start:.0f}s)", flush=True)
            _CHILD[:] = [subprocess.Popen(command)]
            if _CHILD[0].wait():
                sys.exit(f"error: {step} failed (exit status {_CHILD[0].returncode}); see its message above")
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        for child in _CHILD:
            try:  # Ctrl-C typed in the terminal reached the step too: it drops its staged outputs and says so
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:  # a signal sent to this process alone: pass it on
                child.send_signal(signal.SIGINT)
                try:
                    child.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    child.kill()
        sys.exit(f"interrupted during {step}; the steps before it finished and kept their outputs")
    print(f"== done in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
