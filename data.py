"""MNIST, loaded once into memory as float32 tensors in [0, 1], and fast in-memory batching.

The dataset folder is, in order: the ``--data-dir`` flag, the ``MNIST_ROOT`` environment
variable, or ``data/`` in the repository. It is the ``root`` of ``torchvision.datasets.MNIST``,
so the four uncompressed files (``RAW_FILES``) live in ``<root>/MNIST/raw/``.

Environment switches (each accepts ``0``, ``false``, ``no`` or ``off``, in any case, as "off";
unset, empty or any other value means "on"):

* ``MNIST_DOWNLOAD`` (default on): if files are missing, let torchvision download them into
  ``<root>/MNIST/raw/``. Off means never download: missing files end in a ``DatasetError``.
* ``MNIST_VERIFY`` (default on): check each raw file against the MD5 of the official MNIST file
  (``OFFICIAL_MD5``). Turn it off to use custom data in the MNIST (IDX) format; the tests do.

Every file is also checked structurally: IDX header, length, 28x28 images, as many labels as
images, labels in 0..9. Any problem raises ``DatasetError`` with a one-line message that names
the file (full path) and says what to do.
"""
import hashlib
import os
import struct
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

# MD5 of the four official, uncompressed MNIST files (not of the .gz archives torchvision lists).
# Computed from /work/shared/mnist/MNIST/raw/, whose SHA-256 sums match the SHA256SUMS file there:
#   train-images ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
#   train-labels 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
#   t10k-images  0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
#   t10k-labels  ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
# Cost: hashing all four files (55 MB) takes about 0.1 s on the 2-core dev machine (measured:
# 0.10-0.12 s, plus ~0.05 s to read them, which loading needs anyway); each file is hashed at
# most once per process (cached by path, size and mtime), so load_splits pays it once.
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
_OFF = {"0", "false", "no", "off"}
_WHERE = ("point --data-dir / MNIST_ROOT at the folder holding MNIST/raw/ "
          "(offline here: MNIST_ROOT=../shared/mnist)")
_md5_cache: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> hex digest


class DatasetError(RuntimeError):
    """The dataset could not be found, downloaded or read; the message says what to do."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $MNIST_ROOT, else <repo>/data."""
    if data_dir:
        return Path(data_dir).expanduser().resolve()
    if os.environ.get("MNIST_ROOT"):
        return Path(os.environ["MNIST_ROOT"]).expanduser().resolve()
    return REPO / "data"


def env_flag(name: str) -> bool:
    """True unless the environment variable is 0/false/no/off (any case, surrounding spaces ignored)."""
    return os.environ.get(name, "").strip().lower() not in _OFF


def _split_files(raw: Path, train: bool) -> tuple[Path, Path]:
    prefix = "train" if train else "t10k"
    return raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"


def _missing_message(path: Path, reason: str) -> str:
    return (f"MNIST file {path} is missing{reason}; put the four uncompressed files "
            f"{', '.join(RAW_FILES)} there or {_WHERE}.")


def _read_file(path: Path) -> tuple[bytearray, tuple[str, int, int]]:
    """The whole file, read once, and its (path, size, mtime_ns) key for the MD5 cache."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            buf = bytearray(st.st_size)
            if f.readinto(buf) != st.st_size:
                raise OSError("file changed while it was read")
    except OSError as exc:
        raise DatasetError(f"MNIST file {path} is unreadable ({type(exc).__name__}: {exc.strerror or exc}); "
                           f"check its permissions or {_WHERE}.") from None
    return buf, (str(path), st.st_size, st.st_mtime_ns)


def file_md5(path: Path, data: bytes | bytearray | None = None, key=None) -> str:
    """MD5 hex digest of a file, computed at most once per process for a given (path, size, mtime)."""
    if key is None:
        st = os.stat(path)
        key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _md5_cache:
        if data is None:
            data, key = _read_file(Path(path))
        _md5_cache[key] = hashlib.md5(data).hexdigest()
    return _md5_cache[key]


def verify_official(path: Path, data: bytes | bytearray | None = None, key=None) -> None:
    """Raise DatasetError unless the file's MD5 is that of the official MNIST file of its name."""
    path = Path(path)
    expected = OFFICIAL_MD5[path.name]
    got = file_md5(path, data, key)
    if got != expected:
        raise DatasetError(f"MNIST file {path} is not the official MNIST file (MD5 {got}, expected {expected}); "
                           f"replace it with the official file, or set MNIST_VERIFY=0 to use custom data "
                           f"in the MNIST format.")


def _parse_idx(path: Path, buf: bytearray, ndim: int) -> torch.Tensor:
    """The uint8 tensor stored in an IDX file (MNIST's format); DatasetError naming the file if malformed."""
    def bad(reason: str) -> DatasetError:
        return DatasetError(f"MNIST file {path} is unreadable ({reason}); replace it with the official "
                            f"uncompressed file or {_WHERE}.")

    header = 4 + 4 * ndim
    if len(buf) < header:
        raise bad(f"truncated: {len(buf)} bytes, shorter than the {header}-byte header")
    zero, dtype, nd = struct.unpack_from(">HBB", buf)
    if zero != 0 or dtype != 0x08 or nd != ndim:
        hint = ", is it still gzip-compressed?" if buf[:2] == b"\x1f\x8b" else ""
        raise bad(f"not an IDX file of {ndim}-d uint8 data{hint}")
    dims = struct.unpack_from(f">{ndim}I", buf, 4)
    count = 1
    for d in dims:
        count *= d
    if len(buf) - header != count:
        what = "truncated" if len(buf) - header < count else "trailing bytes"
        raise bad(f"{what}: the header announces {'x'.join(map(str, dims))} = {count} values "
                   f"but {len(buf) - header} bytes follow")
    if count == 0:
        raise bad(f"empty: the header announces {'x'.join(map(str, dims))} values")
    return torch.frombuffer(buf, dtype=torch.uint8, offset=header, count=count).view(dims)


def _download(root: Path, train: bool) -> None:
    """Let torchvision fetch the missing files into <root>/MNIST/raw/ (it checks the archives' MD5s)."""
    from torchvision.datasets import MNIST  # imported here: torchvision is slow to import

    MNIST(str(root), train=train, download=True)


def _ensure_files(root: Path, raw: Path, train: bool) -> None:
    """All four raw files present, downloading them if MNIST_DOWNLOAD allows; else DatasetError."""
    missing = [raw / name for name in RAW_FILES if not (raw / name).is_file()]
    if not missing:
        return
    others = f", as are {len(missing) - 1} more" if len(missing) > 1 else ""
    if not env_flag("MNIST_DOWNLOAD"):
        value = os.environ["MNIST_DOWNLOAD"].strip()
        raise DatasetError(_missing_message(missing[0], f"{others} (MNIST_DOWNLOAD={value} forbids downloading)"))
    try:
        _download(root, train)
    except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError, ...
        failed = f"{others}{',' if others else ''} and downloading failed ({type(exc).__name__})"
        raise DatasetError(_missing_message(missing[0], failed)) from None
    missing = [raw / name for name in RAW_FILES if not (raw / name).is_file()]
    if missing:
        raise DatasetError(_missing_message(missing[0], " even after a download"))


def load_mnist(data_dir=None, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images, labels): float32 (N, 1, 28, 28) in [0, 1] and int64 (N,).

    Raises DatasetError with a one-line explanation naming the file if a file is missing and
    cannot be downloaded, is unreadable (e.g. truncated), holds images that are not 28x28, a
    label count that differs from the image count, labels outside 0..9, or (MNIST_VERIFY on)
    is not the official MNIST file.
    """
    root = resolve_data_dir(data_dir)
    raw = root / "MNIST" / "raw"
    _ensure_files(root, raw, train)
    images_path, labels_path = _split_files(raw, train)
    images_buf, images_key = _read_file(images_path)
    labels_buf, labels_key = _read_file(labels_path)
    images = _parse_idx(images_path, images_buf, 3)
    labels = _parse_idx(labels_path, labels_buf, 1)
    if tuple(images.shape[1:]) != (28, 28):
        raise DatasetError(f"MNIST file {images_path} holds {images.shape[1]}x{images.shape[2]} images, not 28x28; "
                           f"replace it with the official file or {_WHERE}.")
    if len(labels) != len(images):
        raise DatasetError(f"{labels_path.name} holds {len(labels)} labels but {images_path.name} holds "
                           f"{len(images)} images (in {raw}); replace them with matching files or {_WHERE}.")
    out_of_range = sorted(set(labels[labels > 9].tolist()))
    if out_of_range:
        found = ", ".join(map(str, out_of_range[:5])) + (", ..." if len(out_of_range) > 5 else "")
        raise DatasetError(f"labels outside 0..9 in {labels_path} (found {found}); replace it with the official "
                           f"file or {_WHERE}.")
    # Checked last, so that a damaged file gets the more specific message above.
    if env_flag("MNIST_VERIFY"):
        verify_official(images_path, images_buf, images_key)
        verify_official(labels_path, labels_buf, labels_key)
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


def validation_indices(n_train: int) -> range:
    """The held-out validation split: the last sixth of the training set (50000..59999 for MNIST).
    It decides every setting (epochs, recipes, augmentation); it is disjoint from the few-shot
    images 0..99, and the test set is only ever used to report."""
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


def random_affine(x: torch.Tensor, generator: torch.Generator | None = None, degrees: float = 15.0,
                  scale: float = 0.1, max_shift: float = 2.0) -> torch.Tensor:
    """Each image rotated by U(-degrees, degrees), scaled by U(1 - scale, 1 + scale) and shifted by
    U(-max_shift, max_shift) pixels in x and y, resampled bilinearly with a black (zero) fill;
    fresh parameters per image and per call. Vectorised: one affine_grid + grid_sample per batch."""
    import torch.nn.functional as F

    b, _, h, w = x.shape
    u = torch.rand(4, b, generator=generator) * 2 - 1  # on the CPU, so the stream is device-independent
    angle, s = u[0] * degrees * torch.pi / 180, 1 + u[1] * scale
    tx, ty = u[2] * max_shift * 2 / w, u[3] * max_shift * 2 / h  # pixels -> normalised coordinates
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s  # the grid maps output to input: inverse scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
