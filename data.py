"""MNIST in memory as float32 tensors in [0, 1], the exercise's splits, batching and the shift augmentation.

torchvision.datasets.MNIST reads the dataset from ``<root>/MNIST/raw/``, where root is --data-dir,
else the MNIST_ROOT environment variable, else data/ in the repository; it downloads the files
there if they are missing.
"""
import os
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent
FEW_SHOT = 100  # Tasks 4 and 5 train on the labelled training images 0..99


class DatasetError(RuntimeError):
    """MNIST could be neither read nor downloaded; the message says where to put it."""


def data_root(data_dir=None) -> Path:
    return Path(data_dir or os.environ.get("MNIST_ROOT") or REPO / "data").expanduser()


def load_mnist(data_dir=None, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels): float32 (N, 1, 28, 28) in [0, 1], converted once, and int64 (N,)."""
    from torchvision.datasets import MNIST  # slow to import: only when data is loaded

    root = data_root(data_dir)
    try:
        ds = MNIST(str(root), train=train, download=True)
    except Exception as exc:  # offline: every mirror failed; or a folder that is a file, an unreadable file
        raise DatasetError(f"MNIST is not in {root / 'MNIST' / 'raw'} and could not be downloaded "
                           f"({type(exc).__name__}); put the four uncompressed MNIST files there, or point "
                           f"--data-dir or MNIST_ROOT at the folder that holds MNIST/raw/") from None
    return ds.data.unsqueeze(1).float().div_(255.0), ds.targets


def load_splits(data_dir=None, quick: bool = False):
    """(train, test), each (images, labels); quick keeps the first 2000 training and 500 test images."""
    train, test = load_mnist(data_dir, train=True), load_mnist(data_dir, train=False)
    if quick:
        train, test = (train[0][:2000], train[1][:2000]), (test[0][:500], test[1][:500])
    print(f"MNIST: {len(train[0])} training, {len(test[0])} test images")
    return train, test


def few_shot(images: torch.Tensor, labels: torch.Tensor, n: int = FEW_SHOT):
    """The exercise's labelled subset: exactly the training examples 0..n-1."""
    return images[:n], labels[:n]


def validation_start(n_train: int) -> int:
    """The validation split is the last sixth of the training set (images 50000..59999 of MNIST),
    disjoint from the few-shot images. It chooses every setting; the test set only reports."""
    start = n_train - n_train // 6
    if start < FEW_SHOT:
        raise DatasetError(f"{n_train} training images are too few for a validation split after images 0..99")
    return start


def split_validation(images: torch.Tensor, labels: torch.Tensor):
    """((images, labels) before the validation split, (images, labels) of the validation split)."""
    s = validation_start(len(images))
    return (images[:s], labels[:s]), (images[s:], labels[s:])


def batches(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None = None):
    """Index tensors covering range(n) once, in batches (in a random order if shuffle)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    return order.split(batch_size)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image by its own random integer shift in [-max_shift, max_shift]^2 with a zero
    (background) fill; identity for max_shift 0. Vectorised: one padded copy and one gather."""
    if max_shift <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b, 1), generator=generator).to(x.device)
    rows = (torch.arange(h, device=x.device) + dy)[:, None, :, None]  # (b, 1, h, 1)
    cols = (torch.arange(w, device=x.device) + dx)[:, None, None, :]  # (b, 1, 1, w)
    bi, ci = torch.arange(b, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows, cols]
