"""A run and its outputs, with three guarantees:
(a) one unit: outputs are staged in <out-dir>/.staging/<run_id>/ and moved into place at the end (results
    last, Ctrl-C and SIGTERM held off meanwhile); a failed run leaves the previous set; readers check run_id;
(b) one run per out-dir: <out-dir>/.lock is held for the whole run, a second run refuses;
(c) one line: a bad flag, file or prerequisite ends in one line that names it and says what to do (exit 2).
"""
import contextlib
import errno
import fcntl
import json
import os
import platform
import re
import secrets
import shutil
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from cli import out_root, passed_on, run_script
from data import DatasetError
from models import CheckpointError, Encoder, architecture, load_checkpoint

KINDS = ("figures", "checkpoints", "results")  # moved into place in this order: results last
COMMITTED: list[str] = []  # the runs this process has written completely (for the interruption message)


class UserError(RuntimeError):
    """An expected failure (bad flag, file, device or prerequisite); the message says what to do."""


def read_json(path: Path, fix: str = "rerun the task that writes it") -> dict:
    """A results file whose dicts turn a missing key into a UserError naming the file and ending in `fix`;
    UserError too if the file is missing or malformed."""
    def missing(self, key):
        raise UserError(f"{path} has no '{key}' (an older version's or a damaged file?); {fix}")
    hook = type("Record", (dict,), {"__missing__": missing})
    try:
        obj = json.loads(Path(path).read_text(), object_hook=hook)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; {fix}") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); {fix}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} does not hold a JSON object; {fix}")
    return obj


def write_json(path: Path, obj: dict) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")  # NaN is a bug upstream


@contextlib.contextmanager
def locked(root: Path):
    """Hold <root>/.lock (guarantee b); the kernel releases it when the process dies: no stale lock."""
    if file := next((f for f in (root, *(root / kind for kind in KINDS)) if f.exists() and not f.is_dir()), None):
        raise UserError(f"{file} is a file, not a folder; move it away or pass another --out-dir")
    try:
        root.mkdir(parents=True, exist_ok=True)
        f = open(root / ".lock", "a+")
    except OSError as exc:
        raise UserError(f"cannot write into {root} ({exc.strerror}); pass an --out-dir you can write to") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise UserError(f"another run is writing into {root} (pid {f.read().strip() or '?'}); wait for it "
                            f"to finish or pass another --out-dir") from None
        f.truncate(0)
        print(os.getpid(), file=f, flush=True)
        shutil.rmtree(root / ".staging", ignore_errors=True)  # what killed runs left; no other run owns it now
        yield


class Run:
    """One run of a task: its outputs are staged, then moved into place together by commit()."""

    def __init__(self, name: str, root: Path):
        self.name, self.root, self.started = name, root, time.perf_counter()
        self.run_id = f"{name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
        self.stage = root / ".staging" / self.run_id

    def path(self, kind: str, filename: str) -> Path:
        """The staged path of an output, e.g. run.path('figures', 'task1_autoencoder_curves.png')."""
        (self.stage / kind).mkdir(parents=True, exist_ok=True)
        return self.stage / kind / filename

    def write_results(self, filename: str, obj: dict, device: torch.device) -> None:
        """obj + run_id + environment: what ran where, and the script's wall-clock seconds."""
        env = {"wall_seconds": time.perf_counter() - self.started, "device": str(device), "torch": torch.__version__,
               "python": platform.python_version(), "platform": platform.platform(),
               "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}
        write_json(self.path("results", filename), obj | {"run_id": self.run_id, "environment": env})

    def commit(self) -> None:
        """Move the staged files into place, results last; remove (and name) this task's earlier outputs
        that this run did not write. A signal meanwhile waits for the end."""
        pending = []
        held = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            removed = []
            for kind in KINDS:
                src, dst = self.stage / kind, self.root / kind
                staged = sorted(f.name for f in src.iterdir()) if src.is_dir() else []
                dst.mkdir(exist_ok=True)
                for old in sorted(dst.iterdir()):  # this task's outputs: <name>.<ext>, <name>_<more>.<ext>
                    if re.fullmatch(rf"{self.name}(_[^.]*)?\.(png|pt|json)", old.name) and old.name not in staged:
                        old.unlink()
                        removed.append(old.name)
                for name in staged:
                    os.replace(src / name, dst / name)
            shutil.rmtree(self.stage, ignore_errors=True)
            COMMITTED.append(self.name)
            if removed:
                print(f"{self.name}: removed {len(removed)} outputs of its earlier run that this run does not write "
                      f"({', '.join(removed)})")
        finally:
            for s, handler in held.items():
                signal.signal(s, handler)
        if pending:
            raise KeyboardInterrupt


@contextlib.contextmanager
def open_run(name: str, args):
    """Lock the out-dir, stage the run's outputs, and commit them only if the block succeeds."""
    root = out_root(args)
    with locked(root):
        run = Run(name, root)
        try:
            yield run
        except BaseException as exc:
            shutil.rmtree(run.stage, ignore_errors=True)
            if getattr(exc, "errno", None) == errno.ENOSPC or "unexpected pos" in str(exc):  # torch.save's words
                raise UserError(f"the disk holding {root} is full; nothing of {name} was written; free some space "
                                f"or pass another --out-dir") from None
            raise
        run.commit()
    print(f"{name}: outputs written to {root} (run {run.run_id})")


def prerequisite(name: str, args, extra: tuple[str, ...] = (), checkpoint: bool = True):
    """A prerequisite task's (modules, results): trained first by its own script if missing (before
    this run takes its lock), refused in one line naming the command that retrains it if it is of
    another architecture, malformed, or its checkpoint and results come from different runs."""
    root, flags = out_root(args), passed_on(args) + list(extra)
    ckpt_path, results_path = root / "checkpoints" / f"{name}.pt", root / "results" / f"{name}.json"
    if not (ckpt_path if checkpoint else results_path).exists():
        print(f"{ckpt_path if checkpoint else results_path} not found; running tasks/{name}.py first")
        if status := run_script(f"tasks/{name}.py", flags):
            sys.exit(status)  # its own one-line message above says what went wrong
    fix = f"retrain it with `python tasks/{name}.py {' '.join(flags)}`"
    results = read_json(results_path, fix)
    if not checkpoint:
        return None, results
    modules, ckpt = load_checkpoint(ckpt_path, architecture({"encoder": Encoder()}), fix)
    if not ckpt.get("run_id") or ckpt["run_id"] != results.get("run_id"):
        raise UserError(f"{ckpt_path} and {results_path} come from different runs; {fix}")
    return modules, results


def run_main(main, name: str) -> None:
    """Run a task's main(); expected failures end in one line on stderr and exit status 2, an
    interruption (Ctrl-C, SIGTERM) in one true line and exit status 130."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM acts as Ctrl-C
    COMMITTED.clear()
    try:
        main()
    except (UserError, DatasetError, CheckpointError) as exc:
        sys.exit(print(f"error: {exc}", file=sys.stderr) or 2)
    except KeyboardInterrupt:
        done = (f"the outputs of {name} were written completely before it stopped" if name in COMMITTED else
                f"nothing of {name} was written (the previous outputs are unchanged)")
        sys.exit(print(f"interrupted: {done}", file=sys.stderr) or 130)
