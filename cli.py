"""The command line every task shares: argparse with one-line errors, checked values, the common
flags (each help text states its default), and running a task's script as a user would. Imports
no torch, so reproduce.py starts at once."""
import argparse
import contextlib
import math
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent
SEED_MAX = 2**32 - 1  # numpy's limit


def _type(kind: str, cast, ok):
    def parse(text: str):
        with contextlib.suppress(ValueError):
            if ok(value := cast(text)):
                return value
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
    return parse


positive_int = _type("a positive integer", int, lambda v: v > 0)
positive_float = _type("a positive number", float, lambda v: 0 < v < math.inf)
seed_value = _type(f"a seed in 0..{SEED_MAX}", int, lambda v: 0 <= v <= SEED_MAX)
folder = _type("a folder, not an empty path (an unset shell variable?)", str, lambda v: bool(v.strip()))


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the usage block is left to --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def settings_from(p: argparse.ArgumentParser, args, tuned: tuple[str, ...]) -> str:
    """Where a run's training settings come from: the validation study (results/tuning.json, whose
    choices are the defaults) unless a tuned flag was changed on the command line."""
    changed = [f"--{k.replace('_', '-')}" for k in tuned if getattr(args, k) != p.get_default(k)]
    changed += ["--quick"] if getattr(args, "quick", False) else []  # a smoke run shortens the schedules
    return f"the command line ({', '.join(changed)})" if changed else "validation, results/tuning.json"


def base_parser(description: str, *, epochs: int | None = None, batch_size: int = 128, lr: float = 1e-3):
    """The flags every task shares (training flags only if `epochs`); each help states its default."""
    p = Parser(description=description)
    if epochs is not None:
        p.add_argument("--epochs", type=positive_int, default=epochs, help=f"training epochs (default: {epochs})")
        p.add_argument("--batch-size", type=positive_int, default=batch_size,
                       help=f"mini-batch size (default: {batch_size})")
        p.add_argument("--lr", type=positive_float, default=lr, help=f"peak learning rate of AdamW (default: {lr})")
    p.add_argument("--seed", type=seed_value, default=0, help=f"random seed, 0..{SEED_MAX} (default: 0)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                   help="device; auto picks cuda, then mps, then cpu (default: auto)")
    p.add_argument("--data-dir", type=folder, default=None,
                   help="folder holding MNIST/raw/ (default: $MNIST_ROOT, else data/ in the repo)")
    p.add_argument("--out-dir", type=folder, default=None,
                   help="where figures/, results/ and checkpoints/ go (default: the repo root; runs/quick/ with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run of seconds on a small subset; writes to runs/quick/ unless --out-dir is given")
    return p


def out_root(args) -> Path:
    """--out-dir, else the repo root (runs/quick/ with --quick)."""
    return Path(args.out_dir).expanduser().resolve() if args.out_dir else REPO / "runs" / "quick" if args.quick else REPO


def passed_on(args) -> list[str]:
    """The flags a run gives the scripts it starts: the same out-dir, seed, device and data (and --quick)."""
    return (["--out-dir", str(out_root(args)), "--seed", str(args.seed), "--device", args.device]
            + (["--data-dir", args.data_dir] if args.data_dir else []) + (["--quick"] if args.quick else []))


def run_script(script: str, flags: list[str], grace: float = 5.0) -> int:
    """Run `python <script> <flags>` from the repo; a signal to us is passed on to it (it then drops
    its staged outputs) unless it stops by itself within `grace` seconds. Returns its exit status."""
    child = subprocess.Popen([sys.executable, str(REPO / script), *flags], cwd=REPO)
    try:
        return child.wait()
    except BaseException:
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        try:  # a Ctrl-C typed in the terminal reached the child too; a signal sent to us alone is passed on
            child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGINT)
            child.wait()
        finally:
            signal.signal(signal.SIGINT, handler)
        raise
