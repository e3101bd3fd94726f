"""Shared fixtures: a tiny synthetic MNIST written in torchvision's layout (tests never download)."""
import contextlib
import importlib
import io
import os
import struct
import subprocess
import sys
from pathlib import Path
from unittest import mock

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
sys.path.insert(0, str(REPO / "report"))


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


FIT_CALLS: dict[str, list[dict]] = {}  # the quick chain's fit() calls, by task: what test_spec.py checks


def _watch_fit(module, step: str, record):
    """Wrap module.fit so that every call of the running step is recorded (then passed on unchanged)."""
    real = module.fit

    def spy(model, train, test, **kwargs):
        FIT_CALLS.setdefault(step[0], []).append(record(model, train, kwargs))
        return real(model, train, test, **kwargs)
    return mock.patch.object(module, "fit", spy)


def _decoder_call(model, train, kwargs) -> dict:
    encoder, decoder = model
    return {"params": {id(p) for p in model.parameters() if p.requires_grad},  # what the optimiser will hold
            "decoder": {id(p) for p in decoder.parameters()}, "frozen": kwargs["frozen"], "encoder": encoder}


def _few_shot_call(model, train, kwargs) -> dict:
    """The train images, the encoder and MLP states and the trainable parameters at the start of a call."""
    enc, mlp = model
    params = list(model.parameters())
    return {"x": train[0].clone(), "latent_dim": enc.latent_dim, "label": kwargs.get("label", ""),
            "encoder": {k: v.clone() for k, v in enc.state_dict().items()},
            "mlp": {k: v.clone() for k, v in mlp.state_dict().items()},
            "trainable": {id(p) for p in params if p.requires_grad}, "encoder_params": {id(p) for p in enc.parameters()}}


@pytest.fixture(scope="session")
def chain(mnist_root, tmp_path_factory):
    """The quick chain: every step of `reproduce.py --quick` (Tasks 1-5 and Q2 in order, then the
    report) into one scratch folder, with the same scripts and flags, each step's main() run
    in-process (no interpreter start-ups), with Task 3's and the few-shot fit() watched (FIT_CALLS).
    Shared by test_tasks.py, test_spec.py and test_notebook.py."""
    import fewshot
    import reproduce
    import task3_classifier_decoding

    committed = committed_outputs()
    out = tmp_path_factory.mktemp("out")
    args = reproduce.parse_args(["--quick", "--device", "cpu", "--data-dir", str(mnist_root), "--out-dir", str(out)])
    log, step = io.StringIO(), [""]
    with mock.patch.dict(os.environ, {"MNIST_DOWNLOAD": "0"}), contextlib.redirect_stdout(log), \
            _watch_fit(task3_classifier_decoding, step, _decoder_call), _watch_fit(fewshot, step, _few_shot_call):
        for script, flags in reproduce.steps(args):
            step[0] = Path(script).stem
            importlib.import_module(step[0]).main(flags)
    assert committed_outputs() == committed, "the quick chain touched the committed outputs"
    return out, log.getvalue()


def committed_outputs() -> dict:
    """Size and modification time of every committed output (figures, results, checkpoints, ex2.pdf)."""
    files = [p for kind in ("figures", "results", "checkpoints") for p in (REPO / kind).glob("*")] + [REPO / "ex2.pdf"]
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()}


def run_task(script: str, *args, check: bool = True, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run tasks/<script> as a user would, from the repo root, with downloads forbidden."""
    env = os.environ | {"MNIST_DOWNLOAD": "0", "PYTHONUNBUFFERED": "1"} | (env_extra or {})
    return subprocess.run([sys.executable, str(REPO / "tasks" / script), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, check=check, timeout=600)
