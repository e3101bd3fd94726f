"""The training loop and what it needs: seeding, device choice, the loss, evaluation and fit().
A run's files (checkpoints, results, staging) and the command line live in runs.py; the task
scripts under tasks/ tell the story."""
import math
import random
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data import batches
from runs import UserError


class DivergedError(UserError):
    """The loss became NaN or infinite; the message names the epoch and step."""


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


# ----------------------------------------------------------------------------- the training loop
def objective_loss(objective: str, output: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """'l1': mean absolute error against the input image; 'ce': cross-entropy against the label."""
    if objective == "l1":
        return F.l1_loss(output, x)
    if objective == "ce":
        return F.cross_entropy(output, y)
    raise ValueError(f"unknown objective {objective!r}")


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, objective: str,
             device: torch.device, batch_size: int = 200) -> dict:
    """Mean loss (and accuracy for 'ce') over (x, y) in eval mode."""
    was_training = model.training
    model.eval()
    total, hits = 0.0, []
    for idx in batches(len(x), batch_size, shuffle=False):
        xb, yb = x[idx].to(device), y[idx].to(device)
        out = model(xb)
        total += objective_loss(objective, out, xb, yb).item() * len(idx)
        if objective == "ce":
            hits.append((out.argmax(1) == yb).cpu())
    model.train(was_training)
    result = {"loss": total / len(x)}
    if objective == "ce":
        hits = torch.cat(hits).float()
        result["accuracy"] = hits.mean().item()
    return result


def make_optimizer(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over those of `params` that require grad."""
    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, weight_decay=weight_decay)


def fit(model: nn.Module, train: tuple, test: tuple, *, objective: str, epochs: int, batch_size: int,
        lr: float, device: torch.device, generator: torch.Generator, weight_decay: float = 1e-4,
        frozen: tuple[nn.Module, ...] = (), augment: Callable | None = None,
        val: tuple | None = None, eval_every: int = 1,
        eval_train: bool = False, schedule: str = "onecycle", log=print, label: str = "") -> list[dict]:
    """Train `model` on `train` = (x, y); evaluate on `test` every `eval_every` epochs and after the
    last, and on `val` after the last.

    AdamW on the parameters that require grad (a caller freezes a module with requires_grad_(False));
    `frozen` modules are kept in eval mode too (BatchNorm statistics frozen).
    `augment(x, generator)` transforms each training batch. schedule 'onecycle' warms the
    learning rate up and anneals it to ~0 by the last step; 'constant' keeps it. If eval_train,
    the train metrics are a clean eval-mode pass over the train set, else the running mean of
    the epoch. A NaN or infinite loss stops training with DivergedError (epoch and step named).

    Returns the history: one dict per evaluated epoch with train/test (/val) loss (and accuracy)
    and the cumulative training wall-clock seconds (evaluation excluded).
    """
    if device.type != "cpu":  # keep the whole (small) dataset on the accelerator
        train, test = tuple(t.to(device) for t in train), tuple(t.to(device) for t in test)
        val = tuple(t.to(device) for t in val) if val is not None else None
    x_train, y_train = train
    # channels_last makes the CPU convolutions ~1.5x faster here (measured); harmless elsewhere
    model.to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), lr, weight_decay)
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
        total, correct = 0.0, 0
        for step, idx in enumerate(batches(len(x_train), batch_size, shuffle=True, generator=generator), 1):
            xb, yb = x_train[idx].to(device, non_blocking=True), y_train[idx].to(device, non_blocking=True)
            if augment is not None:
                xb = augment(xb, generator)
            out = model(xb)
            loss = objective_loss(objective, out, xb, yb)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise DivergedError(f"training diverged: the loss is {loss_value} at epoch {epoch}, step {step}; "
                                    f"nothing was written; try a smaller --lr (peak lr now {lr:g})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += loss_value * len(idx)
            if objective == "ce":
                correct += (out.argmax(1) == yb).sum().item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - t0
        if epoch % eval_every and epoch != epochs:
            continue

        if eval_train:
            tr = evaluate(model, x_train, y_train, objective, device)
        else:
            tr = {"loss": total / len(x_train)}
            if objective == "ce":
                tr["accuracy"] = correct / len(x_train)
        te = evaluate(model, *test, objective, device)
        row = {"epoch": epoch, "train_loss": tr["loss"], "test_loss": te["loss"], "seconds": train_seconds}
        if objective == "ce":
            row.update(train_accuracy=tr["accuracy"], test_accuracy=te["accuracy"])
        if val is not None and epoch == epochs:  # validation decides on the trained model: after the last epoch
            va = evaluate(model, *val, objective, device)
            row.update({f"val_{k}": v for k, v in va.items()})
        bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:  # e.g. BatchNorm statistics that overflowed: the training loss alone does not show it
            raise DivergedError(f"training diverged: {bad[0]} is {row[bad[0]]} after epoch {epoch}; nothing was "
                                f"written; try a smaller --lr (peak lr now {lr:g})")
        history.append(row)
        elapsed = time.perf_counter() - start
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.endswith(("loss", "accuracy")))
        log(f"{label}epoch {epoch:3d}/{epochs}  {metrics}  [{elapsed:.0f}s, ETA {elapsed / epoch * (epochs - epoch):.0f}s]")
    return history
