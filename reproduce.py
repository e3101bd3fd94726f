"""Reproduce everything: Tasks 1-5 and the Q2 measurement in order, then the report ex2.pdf.

    python reproduce.py           # full runs into figures/, results/, checkpoints/ and ex2.pdf
    python reproduce.py --quick   # the whole chain in about 1.5 minutes, into runs/quick/ (committed outputs untouched)
"""
import signal
import sys
import time

from cli import base_parser, out_root, passed_on, run_script

TASKS = ("task1_autoencoder", "task2_classifier", "task3_classifier_decoding", "q2_equivariance", "task4_few_shot",
         "task5_transfer_learning")


def parse_args(argv=None):
    return base_parser(__doc__.splitlines()[0]).parse_args(argv)


def steps(args) -> list[tuple[str, list[str]]]:
    """(script, flags) of every step, in order: the tasks, then the report."""
    return [(f"tasks/{t}.py", passed_on(args)) for t in TASKS] + [
        ("report/build.py", ["--out-dir", str(out_root(args))] if args.out_dir or args.quick else [])]


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # run_script passes it on to the running step
    start, step = time.perf_counter(), None
    try:
        for step, flags in steps(args):
            print(f"== {step} ({time.perf_counter() - start:.0f}s)", flush=True)
            if status := run_script(step, flags):
                sys.exit(f"error: {step} failed (exit status {status}); see its message above")
    except KeyboardInterrupt:
        sys.exit(f"interrupted during {step}; the steps before it finished and kept their outputs")
    print(f"== done in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
