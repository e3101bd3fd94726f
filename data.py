"""MNIST, loaded once into memory as float32 tensors in [0, 1]; batching, augmentation and the splits.

The dataset folder is the ``--data-dir`` flag, else the ``MNIST_ROOT`` environment variable, else
``data/`` in the repository: the ``root`` of ``torchvision.datasets.MNIST``, so the four
uncompressed files (``RAW_FILES``) live in ``<root>/MNIST/raw/``. Missing files are downloaded
there by torchvision unless ``MNIST_DOWNLOAD`` is off; with ``MNIST_VERIFY`` on (the default) each
file must be the official one (MD5). Both switches take 0/false/no/off (any case) as "off".
Every problem raises ``DatasetError``: one line that names the file and says what to do.
"""
import hashlib
import math
import os
import struct
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
OFFICIAL_MD5 = {  # of the uncompressed official files (torchvision checks the .gz archives it downloads)
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
FEW_SHOT_SIZE = 100
WHERE = "point --data-dir or MNIST_ROOT at the folder holding MNIST/raw/"


class DatasetError(RuntimeError):
    """The dataset could not be found, downloaded or read; the message says what to do."""


def resolve_data_dir(data_dir=None) -> Path:
    """--data-dir, else $MNIST_ROOT, else <repo>/data."""
    return Path(data_dir or os.environ.get("MNIST_ROOT") or REPO / "data").expanduser().resolve()


def env_flag(name: str) -> bool:
    """True unless the environment variable is 0/false/no/off (any case, surrounding spaces ignored)."""
    return os.environ.get(name, "").strip().lower() not in {"0", "false", "no", "off"}


def _download(root: Path, train: bool) -> None:
    from torchvision.datasets import MNIST  # imported here: torchvision is slow to import

    MNIST(str(root), train=train, download=True)


def _ensure_files(root: Path, raw: Path, train: bool) -> None:
    """All four raw files present, downloaded first if MNIST_DOWNLOAD allows; else DatasetError."""
    if root.exists() and not root.is_dir():
        raise DatasetError(f"the MNIST folder {root} is a file, not a folder; {WHERE}.")
    missing = lambda: [raw / name for name in RAW_FILES if not (raw / name).is_file()]  # noqa: E731
    if not missing():
        return
    if not env_flag("MNIST_DOWNLOAD"):
        why = f" (MNIST_DOWNLOAD={os.environ['MNIST_DOWNLOAD'].strip()} forbids downloading)"
    else:
        why = " even after a download"
        try:
            _download(root, train)
        except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError, ...
            why = f", and downloading failed ({type(exc).__name__})"
    if lost := missing():
        more = f", as are {len(lost) - 1} more" if len(lost) > 1 else ""
        raise DatasetError(f"MNIST file {lost[0]} is missing{more}{why}; put the four uncompressed files "
                           f"{', '.join(RAW_FILES)} there or {WHERE}.")


def verify_official(path: Path, buf: bytes | None = None) -> None:
    """DatasetError unless the file's MD5 is that of the official MNIST file of its name."""
    got, expected = hashlib.md5(Path(path).read_bytes() if buf is None else buf).hexdigest(), OFFICIAL_MD5[path.name]
    if got != expected:
        raise DatasetError(f"MNIST file {path} is not the official MNIST file (MD5 {got}, expected {expected}); replace "
                           f"it with the official file, or set MNIST_VERIFY=0 to use custom data in the MNIST format.")


def _read_idx(path: Path, ndim: int) -> tuple[torch.Tensor, bytearray]:
    """The uint8 tensor of an IDX file (MNIST's format) and its bytes; DatasetError if malformed."""
    def bad(reason: str) -> DatasetError:
        return DatasetError(f"MNIST file {path} is unreadable ({reason}); replace it with the official "
                            f"uncompressed file or {WHERE}.")
    try:
        buf = bytearray(path.read_bytes())
    except OSError as exc:
        raise bad(f"{type(exc).__name__}: {exc.strerror}") from None
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise bad(f"truncated: {len(buf)} bytes, shorter than the {header}-byte header")
    if tuple(buf[:4]) != (0, 0, 0x08, ndim):
        gzip = ", is it still gzip-compressed?" if buf[:2] == b"\x1f\x8b" else ""
        raise bad(f"not an IDX file of {ndim}-d uint8 data{gzip}")
    dims = struct.unpack_from(f">{ndim}I", buf, 4)
    count, size = math.prod(dims), len(buf) - header
    if size != count or count == 0:
        what = "empty" if count == 0 else "truncated" if size < count else "trailing bytes"
        raise bad(f"{what}: the header announces {'x'.join(map(str, dims))} = {count} values but {size} bytes follow")
    return torch.frombuffer(buf, dtype=torch.uint8, offset=header, count=count).view(dims), buf


def load_mnist(data_dir=None, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels): float32 (N, 1, 28, 28) in [0, 1] and int64 (N,). DatasetError (one line,
    naming the file) for a missing file that cannot be downloaded, a malformed one, images that are
    not 28x28, as many labels as images, labels outside 0..9, or (MNIST_VERIFY) an unofficial file."""
    root = resolve_data_dir(data_dir)
    raw = root / "MNIST" / "raw"
    _ensure_files(root, raw, train)
    prefix = "train" if train else "t10k"
    images_path, labels_path = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
    (images, images_buf), (labels, labels_buf) = _read_idx(images_path, 3), _read_idx(labels_path, 1)
    fix = f"replace it with the official file or {WHERE}."
    if tuple(images.shape[1:]) != (28, 28):
        h, w = images.shape[1:]
        raise DatasetError(f"MNIST file {images_path} holds {h}x{w} images, not 28x28; {fix}")
    if len(labels) != len(images):
        raise DatasetError(f"{labels_path.name} holds {len(labels)} labels but {images_path.name} holds "
                           f"{len(images)} images (in {raw}); replace them with matching files or {WHERE}.")
    if (labels > 9).any():
        raise DatasetError(f"labels outside 0..9 in {labels_path} (found {labels.max().item()}); {fix}")
    if env_flag("MNIST_VERIFY"):  # last, so that a damaged file gets the more specific message above
        verify_official(images_path, images_buf)
        verify_official(labels_path, labels_buf)
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


def subset(images: torch.Tensor, labels: torch.Tensor, n: int):
    """The first n examples; used by --quick runs."""
    return images[:n], labels[:n]


def validation_indices(n_train: int) -> range:
    """The held-out validation split: the last sixth of the training set (50000..59999 for MNIST),
    disjoint from the few-shot images 0..99. It decides settings; the test set only reports."""
    start = n_train - n_train // 6
    if start < FEW_SHOT_SIZE:
        raise DatasetError(f"a training set of {n_train} images is too small for a validation split "
                           f"disjoint from the images 0..{FEW_SHOT_SIZE - 1}")
    return range(start, n_train)


def split_validation(images: torch.Tensor, labels: torch.Tensor):
    """((train images, labels), (validation images, labels)) with validation_indices()."""
    val = validation_indices(len(images))
    return (images[:val.start], labels[:val.start]), (images[val.start:], labels[val.start:])


def describe_validation(n_train: int) -> dict:
    """What results files record as config.validation."""
    val = validation_indices(n_train)
    return {"indices": f"{val.start}..{val.stop - 1}", "size": len(val), "source": "training set, labelled",
            "disjoint_from_few_shot": val.start >= FEW_SHOT_SIZE}


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
    padded = F.pad(x, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b, 1), generator=generator, device="cpu").to(x.device)
    rows = (torch.arange(h, device=x.device) + dy)[:, None, :, None]  # (b, 1, h, 1)
    cols = (torch.arange(w, device=x.device) + dx)[:, None, None, :]  # (b, 1, 1, w)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows, cols]


def random_affine(x: torch.Tensor, generator: torch.Generator | None = None, degrees: float = 15.0,
                  scale: float = 0.1, max_shift: float = 2.0) -> torch.Tensor:
    """Each image rotated by U(-degrees, degrees), scaled by U(1 - scale, 1 + scale) and shifted by
    U(-max_shift, max_shift) pixels in x and y, resampled bilinearly with a black (zero) fill;
    fresh parameters per image and per call. Vectorised: one affine_grid + grid_sample per batch."""
    b, _, h, w = x.shape
    u = torch.rand(4, b, generator=generator) * 2 - 1  # on the CPU, so the stream is device-independent
    angle, s = u[0] * degrees * torch.pi / 180, 1 + u[1] * scale
    tx, ty = u[2] * max_shift * 2 / w, u[3] * max_shift * 2 / h  # pixels -> normalised coordinates
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s  # the grid maps output to input: inverse scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
