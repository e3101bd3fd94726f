"""A run and its outputs: out-dirs, staging, the lock, checkpoints and results files, prerequisites,
and the command-line conventions (flags, one-line errors).

A task writes nothing in place while it runs. `open_run` takes the out-dir's lock (a second run
into the same out-dir refuses), checks that the out-dir is a writable folder, removes what killed
runs left behind, and gives the task a staging folder ``<out-dir>/.staging/<run>/``. Only when the
task finishes are its figures, checkpoints and results moved into place (results last), so a
reader never finds the checkpoint of one run beside the results of another: an interrupted or
failed run leaves the previous complete set. Every results file and checkpoint also carries the
run's ``run_id``, and readers of a prerequisite check that its checkpoint and results match.
"""
import argparse
import contextlib
import fcntl
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from data import DatasetError

REPO = Path(__file__).resolve().parent
KINDS = ("figures", "checkpoints", "results")  # moved into place in this order: results last
SEED_MAX = 2**32 - 1  # numpy's limit


class UserError(RuntimeError):
    """An expected failure (bad flag, file or device); the message says what to do."""


class CheckpointError(UserError):
    """A checkpoint or results file is missing, malformed or does not match; the message says what to do."""


# ----------------------------------------------------------------------------- files
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.
    The file gets ordinary permissions (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _is_temp_of_atomic_path(name: str, targets: tuple[str, ...] | None = None) -> bool:
    """'.results.json.a1b2c3d4.json': the temporary file of atomic_path for 'results.json' (for one
    of `targets` only, if given)."""
    m = re.fullmatch(r"\.(.+)\.[A-Za-z0-9_]{8}(\.[A-Za-z0-9]+)?", name)
    return m is not None and (targets is None or m.group(1) in targets or m.group(1).endswith(".zip"))


def write_json(path: Path, obj: dict) -> None:
    """Strict JSON (a NaN or infinity is a bug upstream, never written)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def read_json(path: Path) -> dict:
    """A results file; CheckpointError (one line, naming the file) if missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; run the task that writes it first")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); rerun the task that writes it") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a JSON object; rerun the task that writes it")
    return obj


def save_checkpoint(path: Path, modules: dict[str, nn.Module], config: dict, run_id: str | None = None) -> None:
    """Save {'config': ..., 'state_dict': {name: module.state_dict()}, 'run_id': ...} atomically."""
    state = {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in modules.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: same bytes for the same weights
        torch.save({"config": config, "state_dict": state, "run_id": run_id}, f)


def load_checkpoint(path: Path, expect_config: dict | None = None) -> dict:
    """Load and check a checkpoint: CheckpointError if missing, unreadable, malformed, non-finite,
    or built with another config (only the keys of `expect_config` are compared)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}); rerun the task "
                              f"that writes it") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict) \
            or not isinstance(ckpt.get("state_dict"), dict) or not ckpt["state_dict"] \
            or not all(isinstance(sd, dict) for sd in ckpt["state_dict"].values()):
        raise CheckpointError(f"checkpoint {path} is malformed (expected a dict with 'config' and 'state_dict' "
                              f"of named modules); rerun the task that writes it")
    for name, sd in ckpt["state_dict"].items():
        bad = [k for k, v in sd.items() if not torch.is_tensor(v) or (v.is_floating_point() and not v.isfinite().all())]
        if bad:
            raise CheckpointError(f"checkpoint {path}: {name}.{bad[0]} is not a finite tensor; rerun the task "
                                  f"that writes it")
    for key, value in (expect_config or {}).items():
        got = ckpt["config"].get(key)
        if got != value:
            raise CheckpointError(f"checkpoint {path} was built with {key}={got}, expected {value}")
    return ckpt


def load_modules(ckpt: dict, path: Path, modules: dict[str, nn.Module]) -> None:
    """Load ckpt['state_dict'][name] into each module; CheckpointError (one line) if one does not fit."""
    for name, module in modules.items():
        if name not in ckpt["state_dict"]:
            raise CheckpointError(f"checkpoint {path} has no '{name}' (it has {', '.join(ckpt['state_dict'])})")
        try:
            module.load_state_dict(ckpt["state_dict"][name])
        except RuntimeError as exc:
            detail = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2])  # torch's first two lines
            raise CheckpointError(f"checkpoint {path}: '{name}' does not fit the model ({detail}); "
                                  f"rerun the task that writes it") from None


# ----------------------------------------------------------------------------- a run's outputs as one unit
def out_root(args) -> Path:
    """--out-dir, else the repo root (runs/quick/ for --quick)."""
    return Path(args.out_dir).expanduser().resolve() if args.out_dir else (
        REPO / "runs" / "quick" if args.quick else REPO)


def out_dirs(args) -> dict[str, Path]:
    """Where the committed outputs of a run live: figures/, results/ and checkpoints/ under out_root."""
    return {kind: out_root(args) / kind for kind in KINDS}


_LOCKS: dict[Path, list] = {}   # out-dir -> [file object, depth]: re-entrant within one process
_KEPT: list[str] = []           # names of the runs committed by this process (reported on interruption)


def check_out_dir(root: Path) -> None:
    """The out-dir must be a folder (created if missing) that we can write into."""
    if root.exists() and not root.is_dir():
        raise UserError(f"--out-dir {root} is a file, not a folder; pass a folder")
    for kind in KINDS:
        if (root / kind).exists() and not (root / kind).is_dir():
            raise UserError(f"{root / kind} is a file, not a folder; move it away or pass another --out-dir")
    try:
        root.mkdir(parents=True, exist_ok=True)
        for folder in (root, *(root / kind for kind in KINDS if (root / kind).is_dir())):
            probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test.")
            probe.close()
    except OSError as exc:
        raise UserError(f"cannot write into --out-dir {root} ({exc.strerror or type(exc).__name__}); "
                        f"pass a folder you can write to") from None


@contextlib.contextmanager
def out_dir_lock(root: Path):
    """Hold <root>/.lock for the whole run: a second process writing into the same out-dir refuses
    in one line. The lock dies with its process, so a killed run never leaves a stale lock."""
    root = Path(root)
    if root in _LOCKS:  # a prerequisite task run in-process by the task that holds the lock
        _LOCKS[root][1] += 1
        try:
            yield
        finally:
            _LOCKS[root][1] -= 1
        return
    f = open(root / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        owner = f.read().strip() or "?"
        f.close()
        raise UserError(f"another run is writing into {root} (pid {owner}); wait for it to finish or pass "
                        f"another --out-dir") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    _LOCKS[root] = [f, 1]
    try:
        remove_leftovers(root)
        yield
    finally:
        del _LOCKS[root]
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def remove_leftovers(root: Path) -> None:
    """Remove what killed runs left: staging folders and atomic_path's temporary files. Called with
    the out-dir's lock held, so no other run can own them."""
    shutil.rmtree(root / ".staging", ignore_errors=True)
    leftovers = [f for f in root.iterdir() if _is_temp_of_atomic_path(f.name, ("README.md", "ex2.pdf"))]
    for folder in (root / kind for kind in KINDS):  # these folders hold only the runs' own outputs
        leftovers += [f for f in folder.iterdir() if _is_temp_of_atomic_path(f.name)] if folder.is_dir() else []
    for f in leftovers:
        if f.is_file():
            f.unlink(missing_ok=True)


class Run:
    """One run of a task: its outputs are staged and moved into place together by commit()."""

    def __init__(self, name: str, root: Path):
        self.name, self.root, self.started = name, root, time.perf_counter()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.run_id = f"{name}-{stamp}-{secrets.token_hex(4)}"
        self.stage = root / ".staging" / self.run_id

    def path(self, kind: str, filename: str) -> Path:
        """The staged path of an output, e.g. run.path('figures', 'task1_curves.png')."""
        assert kind in KINDS, kind
        return self.stage / kind / filename

    def write_results(self, filename: str, obj: dict, device: torch.device) -> None:
        """The results file: obj + run_id + environment (with the run's wall-clock seconds)."""
        write_json(self.path("results", filename), obj | {"run_id": self.run_id,
                                                          "environment": environment(device, self.started)})

    def commit(self) -> list[Path]:
        """Move every staged file into place (figures, checkpoints, then results) and remove the
        outputs of an earlier run of this task that this run did not write (e.g. the exploration
        figures of a run with exploration, after one without), so the set stays one run's.
        Ctrl-C and SIGTERM wait until the commit is done."""
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            moved = []
            for kind in KINDS:
                src, dst = self.stage / kind, self.root / kind
                staged = {f.name for f in src.iterdir()} if src.is_dir() else set()
                for old in task_outputs(dst, self.name):
                    if old.name not in staged:
                        old.unlink()
                if staged:
                    dst.mkdir(parents=True, exist_ok=True)
                    for name in sorted(staged):
                        os.replace(src / name, dst / name)
                        moved.append(dst / name)
            shutil.rmtree(self.stage, ignore_errors=True)
            return moved
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def task_outputs(folder: Path, name: str) -> list[Path]:
    """The files a run of task `name` writes into folder: '<name>.<ext>' and '<name>_<anything>.<ext>'
    (never the '<name>.replaced-<date>.<ext>' files kept by --retrain-prerequisites)."""
    if not folder.is_dir():
        return []
    pattern = re.compile(rf"{re.escape(name)}(_[^.]+)?\.[A-Za-z0-9]+")
    return sorted(f for f in folder.iterdir() if f.is_file() and pattern.fullmatch(f.name))


@contextlib.contextmanager
def open_run(name: str, args):
    """Lock the out-dir, stage the run's outputs, and commit them only if the block succeeds."""
    root = out_root(args)
    check_out_dir(root)
    with out_dir_lock(root):
        run = Run(name, root)
        run.stage.mkdir(parents=True)
        try:
            yield run
        except BaseException:
            shutil.rmtree(run.stage, ignore_errors=True)
            raise
        run.commit()
        _KEPT.append(name)
        print(f"{name}: outputs written to {root} (run {run.run_id})")


def environment(device: torch.device, started: float | None = None) -> dict:
    """What ran where; `started` (a time.perf_counter() value) adds the script's wall-clock seconds."""
    return ({"wall_seconds": time.perf_counter() - started} if started is not None else {}) | {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
    }


# ----------------------------------------------------------------------------- prerequisites of a task
def upstream_flags(args) -> list[str]:
    """The flags a prerequisite task is run with when its checkpoint is missing."""
    flags = ["--seed", str(args.seed), "--device", args.device, "--out-dir", str(out_root(args))]
    if args.data_dir:
        flags += ["--data-dir", args.data_dir]
    return flags + (["--quick"] if args.quick else [])


def expected_architecture(task_module) -> dict:
    """The architecture a task builds with its default flags (checkpoints are compared to it)."""
    args = task_module.parse_args([])
    arch = {"latent_dim": args.latent_dim, "channels": list(args.channels), "fc": True}
    return arch | ({"hidden": args.hidden} if hasattr(args, "hidden") else {})


def load_or_train(task_module, args, extra_flags: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """A prerequisite task's (checkpoint, results), checked to come from one run of the expected
    architecture. Missing: trained first with the task's own code. Of another architecture, or
    malformed: the run refuses and names the flag --retrain-prerequisites, which moves the old
    files aside (never deleting them) and retrains."""
    name = task_module.NAME
    dirs = out_dirs(args)
    ckpt_path, results_path = dirs["checkpoints"] / f"{name}.pt", dirs["results"] / f"{name}.json"
    expect = expected_architecture(task_module)
    if not ckpt_path.exists():
        print(f"{ckpt_path} not found; training it with {name}.py first")
        task_module.main(upstream_flags(args) + list(extra_flags))
    try:
        ckpt = load_checkpoint(ckpt_path, expect)
        results = read_json(results_path)
        if not ckpt.get("run_id") or results.get("run_id") != ckpt.get("run_id"):
            raise CheckpointError(f"{ckpt_path} and {results_path} come from different runs")
    except CheckpointError as exc:
        if not getattr(args, "retrain_prerequisites", False):
            reason = str(exc).removesuffix("; rerun the task that writes it")
            raise UserError(f"{reason}; rerun tasks/{name}.py with its defaults, or pass --retrain-prerequisites "
                            f"to keep these files under a new name and retrain") from None
        tag = "replaced-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        print(f"{exc}; keeping that run's files under new names ('.{tag}') and retraining")
        for kind in KINDS:  # every output of that run: checkpoints, results and figures
            for path in task_outputs(dirs[kind], name):
                os.replace(path, path.with_name(f"{path.stem}.{tag}{path.suffix}"))
        task_module.main(upstream_flags(args) + list(extra_flags))
        ckpt, results = load_checkpoint(ckpt_path, expect), read_json(results_path)
    return ckpt, results


# ----------------------------------------------------------------------------- command line
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def seed_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"a seed must be in 0..{SEED_MAX}, got {value}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the usage block is left to --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def base_parser(description: str, *, epochs: int, batch_size: int, lr: float) -> argparse.ArgumentParser:
    """The flags every task script shares; each help text states its default."""
    p = Parser(description=description)
    p.add_argument("--epochs", type=positive_int, default=epochs, help=f"training epochs (default: {epochs})")
    p.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help=f"mini-batch size (default: {batch_size})")
    p.add_argument("--lr", type=positive_float, default=lr, help=f"peak learning rate of AdamW (default: {lr})")
    p.add_argument("--seed", type=seed_value, default=0, help=f"random seed, 0..{SEED_MAX} (default: 0)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                   help="device; auto picks cuda, then mps, then cpu (default: auto)")
    p.add_argument("--data-dir", default=None,
                   help="folder holding MNIST/raw/ (default: $MNIST_ROOT, else data/ in the repo)")
    p.add_argument("--out-dir", default=None,
                   help="where figures/, results/ and checkpoints/ go (default: the repo root; "
                        "runs/quick/ with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run of seconds: 1 epoch on a small subset; writes to runs/quick/ unless "
                        "--out-dir is given (default: off)")
    return p


def add_prerequisite_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retrain-prerequisites", action="store_true",
                   help="if a prerequisite checkpoint is of another architecture or malformed, keep it under a "
                        "new name and retrain it (default: off, the run refuses)")


def _terminate(signum, frame):
    raise KeyboardInterrupt


def run_main(main) -> None:
    """Run a task's main(); expected failures end in one line on stderr and exit status 2.
    SIGTERM is handled like Ctrl-C: the staged outputs are dropped, the previous ones stay."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
    except (UserError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        kept = f"kept the complete outputs of {', '.join(_KEPT)}; " if _KEPT else ""
        print(f"interrupted: {kept}nothing of the interrupted run was written (the previous outputs are "
              f"unchanged)", file=sys.stderr)
        sys.exit(130)
