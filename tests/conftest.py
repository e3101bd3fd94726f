"""Shared fixtures: a tiny synthetic MNIST in torchvision's layout (tests never download), and the
quick chain of every script run once in-process."""
import contextlib
import importlib
import io
import os
import struct
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models on tiny data: one thread is fastest
import matplotlib.font_manager  # noqa: E402,F401  (builds the font cache once, before any test's output)

REPO = Path(__file__).resolve().parents[1]
for folder in ("", "tasks", "extras", "report"):
    sys.path.insert(0, str(REPO / folder))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an IDX file (the MNIST format): magic 0x08 (uint8) + ndim, big-endian sizes, data."""
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images whose class (0..9) is a bright bar at a class-dependent position."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = (rng.random((n, 28, 28)) * 40).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 4 + 2 * c:7 + 2 * c, 6:22] = 255
    return images, labels


def make_mnist(root: Path, n_train: int = 300, n_test: int = 100) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = synthetic_digits(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    return make_mnist(tmp_path_factory.mktemp("mnist"))


FIT_CALLS: dict[str, list[dict]] = {}  # the quick chain's fit() calls, by script


@pytest.fixture(scope="session")
def chain(mnist_root, tmp_path_factory):
    """`reproduce.py --quick --extras` into one scratch folder: every step's main() with the same flags,
    in-process (no interpreter start-ups), each fit() call's model, training data and arguments
    recorded in FIT_CALLS (at the start of the call). Returns (out-dir, printed output)."""
    import fewshot
    import reproduce
    import train

    committed = committed_outputs()
    out = tmp_path_factory.mktemp("out")
    args = reproduce.parse_args(["--quick", "--extras", "--device", "cpu", "--data-dir", str(mnist_root),
                                 "--out-dir", str(out)])
    real_fit, log, step = train.fit, io.StringIO(), [""]

    def spy(model, train_data, test, **kwargs):
        FIT_CALLS.setdefault(step[0], []).append({
            "model": model, "x": train_data[0].clone(), "kwargs": kwargs,
            "state": {k: v.clone() for k, v in model.state_dict().items()},
            "trainable": {n for n, p in model.named_parameters() if p.requires_grad}})
        return real_fit(model, train_data, test, **kwargs)

    with contextlib.redirect_stdout(log), mock.patch.object(fewshot, "fit", spy):
        for script, flags in reproduce.steps(args):
            step[0] = Path(script).stem
            module = importlib.import_module(step[0])
            with mock.patch.object(module, "fit", spy) if hasattr(module, "fit") else contextlib.nullcontext():
                module.main(flags)
    assert committed_outputs() == committed, "the quick chain touched the committed outputs"
    return out, log.getvalue()


def committed_outputs() -> dict:
    """Size and modification time of every committed output (figures, results, checkpoints, ex2.pdf)."""
    files = [p for kind in ("figures", "results", "checkpoints") for p in (REPO / kind).glob("*")] + [REPO / "ex2.pdf"]
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()}
