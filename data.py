"""MNIST, loaded once into memory as float32 tensors in [0, 1], and fast in-memory batching.

The dataset folder is, in order: the ``--data-dir`` flag, the ``MNIST_ROOT`` environment
variable, or ``data/`` in the repository. It is the ``root`` of ``torchvision.datasets.MNIST``,
so the files live in ``<root>/MNIST/raw/``. Set ``MNIST_DOWNLOAD=0`` to forbid downloading.
"""
import os
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FEW_SHOT_SIZE = 100


class DatasetError(RuntimeError):
    """The dataset could not be found, downloaded or read; the message says what to do."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $MNIST_ROOT, else <repo>/data."""
    if data_dir:
        return Path(data_dir).expanduser().resolve()
    if os.environ.get("MNIST_ROOT"):
        return Path(os.environ["MNIST_ROOT"]).expanduser().resolve()
    return REPO / "data"


def _missing_message(root: Path, reason: str) -> str:
    raw = root / "MNIST" / "raw"
    return (
        f"MNIST could not be loaded from {raw} ({reason}). Put the four uncompressed files "
        f"{', '.join(RAW_FILES)} there, or point --data-dir or MNIST_ROOT at the folder that "
        f"holds MNIST/raw/ (offline here: MNIST_ROOT=../shared/mnist)."
    )


def load_mnist(data_dir=None, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images, labels): float32 (N, 1, 28, 28) in [0, 1] and int64 (N,).

    Raises DatasetError with a one-sentence explanation if the files are missing, cannot be
    downloaded, or are unreadable (e.g. truncated).
    """
    from torchvision.datasets import MNIST  # imported here: torchvision is slow to import

    root = resolve_data_dir(data_dir)
    raw = root / "MNIST" / "raw"
    have_files = all((raw / name).is_file() for name in RAW_FILES)
    download = not have_files and os.environ.get("MNIST_DOWNLOAD", "1") != "0"
    if not have_files and not download:
        raise DatasetError(_missing_message(root, "files missing and MNIST_DOWNLOAD=0"))
    try:
        ds = MNIST(str(root), train=train, download=download)
        images, labels = ds.data, ds.targets
    except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError, ...
        reason = "download failed" if download else f"unreadable files: {type(exc).__name__}"
        raise DatasetError(_missing_message(root, reason)) from None
    if images.ndim != 3 or tuple(images.shape[1:]) != (28, 28) or len(images) != len(labels):
        raise DatasetError(_missing_message(root, f"unexpected shapes {tuple(images.shape)}"))
    # uint8 -> float32 once, here; no mean/std normalisation (the L1 loss is defined on [0, 1]).
    return images.unsqueeze(1).float().div_(255.0), labels.long()


def load_splits(data_dir=None, quick: bool = False):
    """(train, test), each (images, labels); quick keeps the first 2000 train and 500 test images."""
    train, test = load_mnist(data_dir, train=True), load_mnist(data_dir, train=False)
    if quick:
        train, test = subset(*train, 2000), subset(*test, 500)
    print(f"MNIST: {len(train[0])} train, {len(test[0])} test images")
    return train, test


def few_shot(images: torch.Tensor, labels: torch.Tensor, n: int = FEW_SHOT_SIZE):
    """The exercise's labelled subset: exactly the training examples torch.arange(n) = 0..n-1."""
    idx = torch.arange(n)
    return images[idx], labels[idx]


def subset(images: torch.Tensor, labels: torch.Tensor, n: int | None):
    """The first n examples (all if n is None); used by --quick runs."""
    return (images, labels) if n is None else (images[:n], labels[:n])


def batches(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None = None):
    """Yield index tensors covering range(n) in batches (random order if shuffle)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image by an independent random integer shift in [-max_shift, max_shift]^2,
    filling with zeros (the background). Vectorised: one padded copy and one gather per batch."""
    if max_shift <= 0:
        return x
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b, 1), generator=generator, device="cpu").to(x.device)
    rows = (torch.arange(h, device=x.device) + dy)[:, None, :, None]  # (b, 1, h, 1)
    cols = (torch.arange(w, device=x.device) + dx)[:, None, None, :]  # (b, 1, 1, w)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows, cols]
