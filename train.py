"""Shared mechanics of every task: seeding, device choice, the one training loop, checkpoints,
results JSON and the command-line conventions. The task scripts under tasks/ tell the story."""
import argparse
import contextlib
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data import DatasetError, batches, random_shift

REPO = Path(__file__).resolve().parent


class UserError(RuntimeError):
    """An expected failure (bad device, missing file); the message says what to do."""


class CheckpointError(UserError):
    """A checkpoint is missing or does not match; the message says what to do."""


# ----------------------------------------------------------------------------- set-up helpers
def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; make CPU (and cuDNN) runs deterministic.

    Returns a torch.Generator (seeded with `seed`) for the data order and augmentation."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit name that is not available is an error."""
    mps = getattr(torch.backends, "mps", None)
    available = {"cuda": torch.cuda.is_available(), "mps": bool(mps and mps.is_available()), "cpu": True}
    if name == "auto":
        name = next(kind for kind, ok in available.items() if ok)
    if not available[name]:
        raise UserError(f"device '{name}' is not available here; use --device auto or cpu")
    return torch.device(name)


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


# ----------------------------------------------------------------------------- atomic files
@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; run the task that writes it first")
    return json.loads(path.read_text())


def save_checkpoint(path: Path, modules: dict[str, nn.Module], config: dict) -> None:
    """Save {'config': ..., 'state_dict': {name: module.state_dict()}} atomically."""
    state = {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in modules.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: same bytes for the same weights
        torch.save({"config": config, "state_dict": state}, f)


def load_checkpoint(path: Path, expect_config: dict | None = None) -> dict:
    """Load a checkpoint; CheckpointError if missing, unreadable or built with another config
    (only the keys of `expect_config` are compared, e.g. the architecture)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__})") from None
    for key, value in (expect_config or {}).items():
        got = ckpt.get("config", {}).get(key)
        if got != value:
            raise CheckpointError(f"checkpoint {path} was built with {key}={got}, expected {value}")
    return ckpt


# ----------------------------------------------------------------------------- prerequisites of a task
def upstream_flags(args) -> list[str]:
    """The flags a prerequisite task is run with when its checkpoint is missing."""
    flags = ["--seed", str(args.seed), "--device", args.device, "--out-dir", str(out_dirs(args)["results"].parent)]
    if args.data_dir:
        flags += ["--data-dir", args.data_dir]
    return flags + (["--quick"] if args.quick else [])


def load_or_train(path: Path, task_module, flags: list[str], expect: dict | None = None) -> dict:
    """Load a prerequisite checkpoint; if it is missing or of another architecture, say so in
    one line and train it with that task's own code first."""
    try:
        return load_checkpoint(path, expect)
    except CheckpointError as exc:
        print(f"{exc}; training it with {Path(task_module.__file__).name} first")
        task_module.main(flags)
        return load_checkpoint(path, expect)


def expected_architecture(task_module) -> dict:
    """The architecture a task builds with its default flags (checkpoints are compared to it)."""
    args = task_module.parse_args([])
    arch = {"latent_dim": args.latent_dim, "channels": list(args.channels), "fc": True}
    return arch | ({"hidden": args.hidden} if hasattr(args, "hidden") else {})


# ----------------------------------------------------------------------------- the training loop
def objective_loss(objective: str, output: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """'l1': mean absolute error against the input image; 'ce': cross-entropy against the label."""
    if objective == "l1":
        return F.l1_loss(output, x)
    if objective == "ce":
        return F.cross_entropy(output, y)
    raise ValueError(f"unknown objective {objective!r}")


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, objective: str,
             device: torch.device, batch_size: int = 500) -> dict:
    """Mean loss (and accuracy for 'ce') over (x, y) in eval mode."""
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    for idx in batches(len(x), batch_size, shuffle=False):
        xb, yb = x[idx].to(device), y[idx].to(device)
        out = model(xb)
        total += objective_loss(objective, out, xb, yb).item() * len(idx)
        if objective == "ce":
            correct += (out.argmax(1) == yb).sum().item()
    model.train(was_training)
    result = {"loss": total / len(x)}
    if objective == "ce":
        result["accuracy"] = correct / len(x)
    return result


def fit(model: nn.Module, train: tuple, test: tuple, *, objective: str, epochs: int, batch_size: int,
        lr: float, device: torch.device, generator: torch.Generator, weight_decay: float = 1e-4,
        params=None, frozen: tuple[nn.Module, ...] = (), augment_shift: int = 0,
        eval_train: bool = False, schedule: str = "onecycle", log=print, label: str = "") -> list[dict]:
    """Train `model` on `train` = (x, y) and evaluate on `test` after every epoch.

    AdamW on `params` (default: all parameters that require grad). `frozen` modules are kept in
    eval mode (BatchNorm statistics frozen too). schedule 'onecycle' warms the learning rate up
    and anneals it to ~0 by the last step; 'constant' keeps it at `lr`. If eval_train, the train
    metrics are a clean eval-mode pass over the train set, else the running mean of the epoch.

    Returns the history: one dict per epoch with train/test loss (and accuracy) and the
    cumulative training wall-clock seconds (evaluation excluded).
    """
    if device.type != "cpu":  # keep the whole (small) dataset on the accelerator
        train, test = tuple(t.to(device) for t in train), tuple(t.to(device) for t in test)
    x_train, y_train = train
    # channels_last makes the CPU convolutions ~1.5x faster here (measured); harmless elsewhere
    model.to(device, memory_format=torch.channels_last)
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    scheduler = None
    if schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs,
                                                        steps_per_epoch=steps_per_epoch, pct_start=0.2)
    history, train_seconds, start = [], 0.0, time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        for m in frozen:
            m.eval()
        t0 = time.perf_counter()
        total, correct, data_seconds = 0.0, 0, 0.0
        for idx in batches(len(x_train), batch_size, shuffle=True, generator=generator):
            t_data = time.perf_counter()
            xb, yb = x_train[idx].to(device, non_blocking=True), y_train[idx].to(device, non_blocking=True)
            if augment_shift:
                xb = random_shift(xb, augment_shift, generator)
            data_seconds += time.perf_counter() - t_data  # batching cost, reported beside the epoch time
            out = model(xb)
            loss = objective_loss(objective, out, xb, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += loss.item() * len(idx)
            if objective == "ce":
                correct += (out.argmax(1) == yb).sum().item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_seconds = time.perf_counter() - t0
        train_seconds += epoch_seconds

        if eval_train:
            tr = evaluate(model, x_train, y_train, objective, device)
        else:
            tr = {"loss": total / len(x_train)}
            if objective == "ce":
                tr["accuracy"] = correct / len(x_train)
        te = evaluate(model, *test, objective, device)
        row = {"epoch": epoch, "train_loss": tr["loss"], "test_loss": te["loss"], "seconds": train_seconds,
               "epoch_seconds": epoch_seconds, "batching_seconds": data_seconds}
        if objective == "ce":
            row.update(train_accuracy=tr["accuracy"], test_accuracy=te["accuracy"])
        history.append(row)
        log(_progress_line(label, row, epochs, time.perf_counter() - start))
    return history


def _progress_line(label: str, row: dict, epochs: int, elapsed: float) -> str:
    e = row["epoch"]
    eta = elapsed / e * (epochs - e)
    msg = f"{label}epoch {e:3d}/{epochs}  train loss {row['train_loss']:.4f}  test loss {row['test_loss']:.4f}"
    if "test_accuracy" in row:
        msg += f"  train acc {100 * row['train_accuracy']:6.2f}%  test acc {100 * row['test_accuracy']:6.2f}%"
    return msg + f"  [{elapsed:6.1f}s elapsed, ETA {eta:5.0f}s]"


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


def base_parser(description: str, *, epochs: int, batch_size: int, lr: float) -> argparse.ArgumentParser:
    """The flags every task script shares; each help text states its default."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=positive_int, default=epochs, help=f"training epochs (default: {epochs})")
    p.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help=f"mini-batch size (default: {batch_size})")
    p.add_argument("--lr", type=positive_float, default=lr, help=f"peak learning rate of AdamW (default: {lr})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
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


def out_dirs(args) -> dict[str, Path]:
    """figures/, results/ and checkpoints/ under --out-dir (repo root, or runs/quick for --quick)."""
    root = Path(args.out_dir).resolve() if args.out_dir else (REPO / "runs" / "quick" if args.quick else REPO)
    return {name: root / name for name in ("figures", "results", "checkpoints")}  # created on first write


def run_main(main) -> None:
    """Run a task's main(); expected failures end in one line on stderr and exit status 2."""
    try:
        main()
    except (DatasetError, UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was left behind", file=sys.stderr)
        sys.exit(130)
