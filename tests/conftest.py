"""Shared fixtures: a tiny synthetic MNIST written in torchvision's layout (tests never download)."""
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# The synthetic data is not the official MNIST: skip the MD5 check (tests that need it set MNIST_VERIFY=1).
os.environ.setdefault("MNIST_VERIFY", "0")
# Tiny models on tiny data: one thread each, so parallel subprocesses don't oversubscribe the 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Build matplotlib's font cache here, once: its first-run notice on stderr would otherwise land in the
# one-line error output of the first subprocess test on a fresh machine.
import matplotlib.font_manager  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tasks"))


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


@pytest.fixture(scope="session")
def chain(mnist_root, tmp_path_factory):
    """The quick reproduce chain (Tasks 1-5 in order, then the report) into one scratch folder;
    shared by test_tasks.py and test_notebook.py (session scope: one run)."""
    if os.environ.get("EX2_CHAIN_DIR"):  # reuse a finished quick chain while iterating on the tests
        return Path(os.environ["EX2_CHAIN_DIR"]), ""
    committed = committed_outputs()
    out = tmp_path_factory.mktemp("out")
    done = subprocess.run([sys.executable, str(REPO / "reproduce.py"), "--quick", "--device", "cpu",
                           "--data-dir", str(mnist_root), "--out-dir", str(out)],
                          cwd=REPO, env=os.environ | {"MNIST_DOWNLOAD": "0"}, capture_output=True, text=True,
                          check=True, timeout=900)
    assert committed_outputs() == committed, "the quick chain touched the committed outputs"
    return out, done.stdout


def committed_outputs() -> dict:
    """Size and modification time of every committed output (figures, results, checkpoints, ex2.pdf)."""
    files = [p for kind in ("figures", "results", "checkpoints") for p in (REPO / kind).glob("*")] + [REPO / "ex2.pdf"]
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()}


def run_task(script: str, *args, check: bool = True, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run tasks/<script> as a user would, from the repo root, with downloads forbidden."""
    env = os.environ | {"MNIST_DOWNLOAD": "0", "PYTHONUNBUFFERED": "1"} | (env_extra or {})
    return subprocess.run([sys.executable, str(REPO / "tasks" / script), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, check=check, timeout=600)
