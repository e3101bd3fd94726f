"""MNIST through torchvision into tensors, the exercise's splits, batching and augmentation."""
import os

import pytest
import torch

from data import FEW_SHOT, DatasetError, batches, few_shot, load_mnist, random_shift, split_validation, validation_start
from fewshot import random_affine


def test_load_synthetic_layout(mnist_root):
    x, y = load_mnist(mnist_root, train=True)
    assert x.shape == (300, 1, 28, 28) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() == 1.0
    assert y.dtype == torch.int64 and len(y) == 300
    assert load_mnist(mnist_root, train=False)[0].shape == (100, 1, 28, 28)


def test_mnist_root_from_the_environment(mnist_root, monkeypatch):
    monkeypatch.setenv("MNIST_ROOT", str(mnist_root))
    assert len(load_mnist(train=False)[0]) == 100


def test_a_missing_dataset_offline_ends_in_one_line_saying_where(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    def offline(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://..., got: no network")
    monkeypatch.setattr(MNIST, "download", offline)
    with pytest.raises(DatasetError) as info:
        load_mnist(tmp_path / "nothing", train=True)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "nothing" / "MNIST" / "raw") in message
    assert "--data-dir" in message and "MNIST_ROOT" in message and "shared" not in message


def test_a_data_folder_that_is_a_file_ends_in_one_line(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(DatasetError, match="could not be downloaded"):
        load_mnist(f)


def test_few_shot_is_indices_0_to_99(mnist_root):
    x, y = load_mnist(mnist_root, train=True)
    fx, fy = few_shot(x, y)
    assert FEW_SHOT == 100 and len(fx) == 100
    assert torch.equal(fx, x[torch.arange(100)]) and torch.equal(fy, y[torch.arange(100)])


@pytest.mark.skipif(not os.environ.get("MNIST_ROOT"), reason="the real MNIST is not configured (MNIST_ROOT)")
def test_few_shot_labels_of_real_mnist():
    _, fy = few_shot(*load_mnist(None, train=True))
    assert fy[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(fy, minlength=10).tolist() == [13, 14, 6, 11, 11, 5, 11, 10, 8, 11]


def test_validation_split_is_50000_to_59999_and_disjoint_from_the_few_shot_images():
    assert validation_start(60000) == 50000
    x, y = torch.arange(60000).float(), torch.arange(60000)
    (fx, _), (vx, vy) = split_validation(x, y)
    assert len(fx) == 50000 and torch.equal(vy, torch.arange(50000, 60000))
    assert not set(vy.tolist()) & set(range(FEW_SHOT))
    with pytest.raises(DatasetError):
        validation_start(110)  # too small to keep the validation images away from 0..99


def test_batches_cover_every_index_once():
    seen = torch.cat(list(batches(1003, 100, shuffle=True, generator=torch.Generator().manual_seed(0))))
    assert sorted(seen.tolist()) == list(range(1003))
    assert seen.tolist() != list(range(1003))
    assert torch.cat(list(batches(1003, 100, shuffle=False))).tolist() == list(range(1003))


def test_random_shift_moves_content_without_changing_it():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0  # away from the border: a shift keeps every pixel
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and torch.allclose(y.sum((1, 2, 3)), x.sum((1, 2, 3))) and (y != x).any()


def test_random_affine_ranges_are_the_stated_ones():
    """On planted images, measured over 4000 draws: rotation within +-15 degrees (a bar's principal
    axis), scale within 1 +- 10 % (a blob's spread), shift within +-2 px (a blob's centre of mass), each
    range nearly filled. fewshot.Recipe's comment states these ranges."""
    n, g = 4000, torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    blob = torch.exp(-((xx - 13.5) ** 2 + (yy - 13.5) ** 2) / (2 * 3.0 ** 2)).expand(n, 1, 28, 28)
    bar = (((yy - 13.5).abs() < 1) & ((xx - 13.5).abs() < 10)).float().expand(n, 1, 28, 28)

    def moments(img):
        m = img.sum((1, 2, 3))
        cx, cy = (img * xx).sum((1, 2, 3)) / m, (img * yy).sum((1, 2, 3)) / m
        dx, dy = xx - cx[:, None, None, None], yy - cy[:, None, None, None]
        return cx, cy, (img * dx ** 2).sum((1, 2, 3)) / m, (img * dy ** 2).sum((1, 2, 3)) / m, \
            (img * dx * dy).sum((1, 2, 3)) / m

    cx, cy, *_ = moments(random_affine(blob, g, degrees=0, scale=0))
    for c in (cx - 13.5, cy - 13.5):
        assert c.abs().max() <= 2.0 + 1e-3 and c.abs().max() > 1.9
    *_, vxx, vyy, _ = moments(random_affine(blob, g, degrees=0, max_shift=0))
    spread = ((vxx + vyy) / 2).sqrt() / 3.0
    assert 0.89 < spread.min() < 0.92 and 1.08 < spread.max() < 1.11
    *_, vxx, vyy, vxy = moments(random_affine(bar, g, scale=0, max_shift=0))
    angle = torch.rad2deg(0.5 * torch.atan2(2 * vxy, vxx - vyy))
    assert angle.abs().max() < 15.5 and angle.min() < -14 and angle.max() > 14
