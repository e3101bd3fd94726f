import os
import time

import pytest
import torch

from conftest import make_mnist, run_task
from data import DatasetError, batches, few_shot, load_mnist, random_shift


def test_load_synthetic_layout(mnist_root):
    x, y = load_mnist(mnist_root, train=True)
    assert x.shape == (300, 1, 28, 28) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() == 1.0
    assert y.dtype == torch.int64 and len(y) == 300


def test_few_shot_is_indices_0_to_99(mnist_root):
    x, y = load_mnist(mnist_root, train=True)
    fx, fy = few_shot(x, y)
    assert len(fx) == 100
    assert torch.equal(fx, x[torch.arange(100)]) and torch.equal(fy, y[:100])
    assert not torch.equal(fx, x[1:101])


@pytest.mark.skipif(not os.environ.get("MNIST_ROOT"), reason="the real MNIST is not configured (MNIST_ROOT)")
def test_few_shot_labels_of_real_mnist():
    _, fy = few_shot(*load_mnist(None, train=True))
    assert fy[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_batches_cover_every_index_once():
    seen = torch.cat(list(batches(1003, 100, shuffle=True, generator=torch.Generator().manual_seed(0))))
    assert sorted(seen.tolist()) == list(range(1003))
    assert seen.tolist() != list(range(1003))


def test_random_shift_moves_content_without_changing_it():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0  # away from the border: a shift keeps every pixel
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert torch.allclose(y.sum((1, 2, 3)), x.sum((1, 2, 3)))
    assert (y != x).any()
    assert torch.equal(random_shift(x, 0), x)


def test_batching_is_under_10_percent_of_training():
    """Indexing + shift augmentation of 100 batches costs < 10% of 100 training steps on them."""
    from torch import nn

    from models import MLP, Encoder
    from train import objective_loss

    x, y = torch.rand(20000, 1, 28, 28), torch.randint(0, 10, (20000,))
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    prepared = [(random_shift(x[idx], 2, gen), y[idx]) for idx in batches(len(x), 128, True, gen)][:100]
    batching = (time.perf_counter() - t0) * 100 / len(range(0, len(x), 128))
    model = nn.Sequential(Encoder(12, (16, 32)), MLP(12)).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters())
    t0 = time.perf_counter()
    for xb, yb in prepared:
        loss = objective_loss("ce", model(xb), xb, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    training = time.perf_counter() - t0
    assert batching < 0.1 * training, (batching, training)


def test_missing_dataset_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DOWNLOAD", "0")
    with pytest.raises(DatasetError, match="MNIST could not be loaded"):
        load_mnist(tmp_path, train=True)
    out = run_task("task1_autoencoder.py", "--quick", "--data-dir", tmp_path, "--out-dir", tmp_path / "o", check=False)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "train-images-idx3-ubyte" in lines[0] and str(tmp_path) in lines[0]
    assert not (tmp_path / "o" / "results" / "task1_autoencoder.json").exists()


def test_truncated_file_is_reported(tmp_path):
    root = make_mnist(tmp_path / "m")
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    out = run_task("task2_classifier.py", "--quick", "--data-dir", root, "--out-dir", tmp_path / "o", check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "unreadable" in out.stderr
