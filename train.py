"""What every task script shares: seeding, the device, the command line, evaluate(), the training
loop fit(), and writing outputs (each file whole: a temporary name, then os.replace)."""
import argparse
import contextlib
import json
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from data import REPO, DatasetError, batches
from models import CheckpointError, architecture

SEED_MAX = 2**32 - 1


class UserError(RuntimeError):
    """An expected failure (a device, file or prerequisite; a diverged loss); one line says what to do."""


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch (and cuDNN's choices) for a deterministic initialisation; returns the generator
    of the data order and the augmentation."""
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    return torch.Generator().manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit device that is not available is a UserError."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        name = next(kind for kind, ok in available.items() if ok)
    if not available[name]:
        raise UserError(f"device '{name}' is not available here; use --device auto or cpu")
    return torch.device(name)


# ----------------------------------------------------------------------------- the command line
class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line; the usage is in --help
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def number(cast, low, high=math.inf):
    """An argparse type: `cast(text)` in [low, high], else a one-line error naming the range."""
    def parse(text):
        with contextlib.suppress(ValueError):
            if low <= (value := cast(text)) <= high:
                return value
        raise argparse.ArgumentTypeError(f"expected {cast.__name__} in [{low}, {high}], got {text!r}")
    return parse


def parser(description: str, epochs: int | None = None, batch_size: int = 128, lr: float = 1e-3) -> Parser:
    """The flags every task shares (the training flags if `epochs` is given); each help states its default."""
    p = Parser(description=description)
    p.add_argument("--seed", type=number(int, 0, SEED_MAX), default=0, help=f"random seed, 0..{SEED_MAX} (default: 0)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                   help="auto picks cuda, then mps, then cpu (default: auto)")
    p.add_argument("--data-dir", help="folder holding MNIST/raw/ (default: $MNIST_ROOT, else data/)")
    p.add_argument("--out-dir", help="where figures/, checkpoints/ and results/ go (default: the repository; "
                                     "runs/quick/ with --quick)")
    p.add_argument("--quick", action="store_true", help="a smoke run of seconds on 2000 training images")
    if epochs is not None:
        p.add_argument("--epochs", type=number(int, 1), default=epochs, help=f"training epochs, >= 1 (default: {epochs})")
        p.add_argument("--batch-size", type=number(int, 1), default=batch_size,
                       help=f"batch size, >= 1 (default: {batch_size})")
        p.add_argument("--lr", type=number(float, 1e-8, 10.0), default=lr,
                       help=f"peak learning rate, 1e-8..10 (default: {lr})")
    return p


def prepare_out_dir(args) -> Path:
    """--out-dir (else the repository, or runs/quick/ with --quick) with its three folders, made now,
    before any training, so that a path that cannot hold them ends in one line."""
    if args.out_dir is not None and not args.out_dir.strip():
        raise UserError("--out-dir is empty (an unset shell variable?); pass a folder")
    root = Path(args.out_dir or (REPO / "runs" / "quick" if args.quick else REPO)).expanduser().resolve()
    try:
        for kind in ("figures", "checkpoints", "results"):
            (root / kind).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write into --out-dir {root} ({exc.strerror}); pass a folder you can write to") from None
    return root


def run(main) -> None:
    """Run a task's main(); an expected failure ends in one line on stderr and exit status 2."""
    try:
        main()
    except (UserError, DatasetError, CheckpointError) as exc:
        sys.exit(print(f"error: {exc}", file=sys.stderr) or 2)


# ----------------------------------------------------------------------------- evaluation and training
@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Every submodule in eval mode (BatchNorm's running statistics, no dropout), each mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


@torch.inference_mode()
def evaluate(model: nn.Module, data: tuple, loss_fn, device, batch_size: int = 200) -> dict:
    """Mean loss over data = (inputs, targets) in eval mode, and the accuracy if the targets are labels."""
    (x, y), labels = data, not data[1].is_floating_point()
    total, hits = 0.0, 0
    with eval_mode(model):
        for idx in batches(len(x), batch_size, shuffle=False):
            xb, yb = x[idx].to(device), y[idx].to(device)
            out = model(xb)
            total += loss_fn(out, yb).item() * len(idx)
            hits += (out.argmax(1) == yb).sum().item() if labels else 0
    return {"loss": total / len(x)} | ({"accuracy": hits / len(x)} if labels else {})


def fit(model, train, test, *, loss_fn, epochs, batch_size, lr, device, generator, schedule="onecycle",
        augment=None, frozen=(), eval_every=1, label="") -> list[dict]:
    """Train `model` on train = (inputs, targets) to minimise loss_fn(model(inputs), targets) with AdamW
    (weight decay 1e-4) on the parameters that require grad. schedule 'onecycle': the learning rate
    rises to `lr` over the first 20% of the steps, then anneals to ~0 (a run of fewer than 10 steps keeps `lr`);
    'constant': `lr` throughout.
    `augment(x, generator)` transforms each training batch; `frozen` modules stay in eval mode.
    Every `eval_every` epochs and after the last, a history row: the eval-mode loss (and accuracy)
    on the first 10,000 training examples ("train") and on `test` if given, and the training seconds."""
    model.to(device, memory_format=torch.channels_last)  # ~1.5x faster convolutions on a CPU (measured)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(train[0]) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.2) \
        if schedule == "onecycle" and steps >= 10 else None  # a one-cycle of fewer steps is undefined: constant
    x, y = (t.to(device) for t in train)
    splits = {"train": (x[:10_000], y[:10_000])} | ({"test": test} if test is not None else {})
    history, seconds = [], 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        for m in frozen:
            m.eval()
        start = time.perf_counter()
        for step, idx in enumerate(batches(len(x), batch_size, shuffle=True, generator=generator), 1):
            xb, yb = x[idx], y[idx]
            loss = loss_fn(model(augment(xb, generator) if augment else xb), yb)
            if not math.isfinite(loss.item()):
                raise UserError(f"training diverged: the loss is {loss.item()} at epoch {epoch}, step {step}; "
                                f"try a smaller learning rate (the peak is now {lr:g})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler:
                scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        if epoch % eval_every == 0 or epoch == epochs:
            row = {"epoch": epoch, "seconds": seconds}
            for split, data in splits.items():
                row |= {f"{split}_{k}": v for k, v in evaluate(model, data, loss_fn, device).items()}
            history.append(row)
            print(f"{label}epoch {epoch}/{epochs}  " + "  ".join(f"{k} {v:.4f}" for k, v in row.items()
                                                               if k.endswith(("loss", "accuracy"))) + f"  [{seconds:.0f}s]")
    return history


# ----------------------------------------------------------------------------- outputs, each written whole
def write_whole(path: Path, write) -> None:
    """write(temporary path), then move it onto `path`: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.partial")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(path: Path, modules: dict[str, nn.Module]) -> None:
    """A small dict: the sizes that rebuild the modules, and their state_dicts on the CPU."""
    state = {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in modules.items()}
    write_whole(path, lambda tmp: torch.save({"config": architecture(modules), "state_dict": state}, tmp))


def save_results(path: Path, args, device, started: float, **results) -> None:
    """{'config': the flags, **results, 'environment'}; a NaN anywhere is a bug upstream (an error here)."""
    env = {"torch": torch.__version__, "device": str(device), "command": " ".join(["python", *sys.argv]),
           "seconds": time.perf_counter() - started, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    text = json.dumps({"config": vars(args)} | results | {"environment": env}, indent=2, allow_nan=False)
    write_whole(path, lambda tmp: tmp.write_text(text + "\n"))


def load_results(path: Path, fix: str) -> dict:
    """A results file another task wrote; UserError (one line ending in `fix`) if missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is {'missing' if not path.exists() else f'unreadable ({exc})'}; {fix}") from None
