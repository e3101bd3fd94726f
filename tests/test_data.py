import os
import re
import time

import numpy as np

import pytest
import torch

import data
from conftest import make_mnist, synthetic_digits, write_idx
from data import RAW_FILES, DatasetError, batches, env_flag, few_shot, load_mnist, random_shift, verify_official


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
    """Indexing + shift augmentation of 25 batches costs < 10% of 25 training steps on them."""
    from torch import nn

    from models import MLP, Encoder
    from train import objective_loss

    x, y = torch.rand(3200, 1, 28, 28), torch.randint(0, 10, (3200,))
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    prepared = [(random_shift(x[idx], 2, gen), y[idx]) for idx in batches(len(x), 128, True, gen)]
    batching = time.perf_counter() - t0
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


def _task_error(main, capsys) -> str:
    """main() through run_main in-process: exit status 2 and one stderr line, which is returned."""
    from runs import run_main

    with pytest.raises(SystemExit) as info:
        run_main(main, "task")
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def test_missing_dataset_is_one_clear_line(tmp_path, monkeypatch, capsys):
    import task1_autoencoder

    monkeypatch.setenv("MNIST_DOWNLOAD", "0")
    line = _task_error(lambda: task1_autoencoder.main(["--quick", "--data-dir", str(tmp_path), "--out-dir",
                                                       str(tmp_path / "o")]), capsys)
    assert "train-images-idx3-ubyte" in line and str(tmp_path) in line
    assert not (tmp_path / "o" / "results" / "task1_autoencoder.json").exists()


def test_truncated_file_is_reported(tmp_path, capsys):
    import task2_classifier

    root = make_mnist(tmp_path / "m")
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    line = _task_error(lambda: task2_classifier.main(["--quick", "--data-dir", str(root), "--out-dir",
                                                      str(tmp_path / "o")]), capsys)
    assert "unreadable" in line and str(images) in line


def test_a_data_folder_that_is_a_file_is_named(tmp_path, monkeypatch):
    f = tmp_path / "mnist"
    f.write_text("")
    monkeypatch.setenv("MNIST_ROOT", str(f))
    message = one_line_error(None)
    assert message.startswith(f"the MNIST folder {f} is a file, not a folder")


def test_random_affine_ranges_are_the_stated_ones():
    """On planted images, measured over 4000 draws: rotation within +-15 degrees (a bar's principal
    axis), scale within 1 +- 10 % (a blob's spread), shift within +-2 px (a blob's centre of mass), each
    range nearly filled. The recipes' docstring states these ranges."""
    from data import random_affine

    n, g = 4000, torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    blob = torch.exp(-((xx - 13.5) ** 2 + (yy - 13.5) ** 2) / (2 * 3.0 ** 2)).expand(n, 1, 28, 28)
    bar = ((yy - 13.5).abs() < 1) & ((xx - 13.5).abs() < 10)
    bar = bar.float().expand(n, 1, 28, 28)

    def moments(img):
        m = img.sum((1, 2, 3))
        cx, cy = (img * xx).sum((1, 2, 3)) / m, (img * yy).sum((1, 2, 3)) / m
        vxx = (img * (xx - cx[:, None, None, None]) ** 2).sum((1, 2, 3)) / m
        vyy = (img * (yy - cy[:, None, None, None]) ** 2).sum((1, 2, 3)) / m
        vxy = (img * (xx - cx[:, None, None, None]) * (yy - cy[:, None, None, None])).sum((1, 2, 3)) / m
        return cx, cy, vxx, vyy, vxy

    cx, cy, *_ = moments(random_affine(blob, g, degrees=0, scale=0))
    for c in (cx - 13.5, cy - 13.5):
        assert c.abs().max() <= 2.0 + 1e-3 and c.abs().max() > 1.9
    *_, vxx, vyy, _ = moments(random_affine(blob, g, degrees=0, max_shift=0))
    spread = ((vxx + vyy) / 2).sqrt() / 3.0
    assert 0.89 < spread.min() < 0.92 and 1.08 < spread.max() < 1.11
    *_, vxx, vyy, vxy = moments(random_affine(bar, g, scale=0, max_shift=0))
    angle = torch.rad2deg(0.5 * torch.atan2(2 * vxy, vxx - vyy))
    assert angle.abs().max() < 15.5 and angle.min() < -14 and angle.max() > 14


# --- file checks: missing files, downloads, counts, label range, official MD5s -------------------------

OFF_VALUES = ["0", "false", "no", "off", "FALSE", "No", " Off "]


def one_line_error(root, train=True) -> str:
    """load_mnist's DatasetError message, checked to be a single line."""
    with pytest.raises(DatasetError) as info:
        load_mnist(root, train=train)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message, message
    return message


def write_split(root, prefix: str, images, labels):
    """Tiny raw files for one split (plus placeholders for the other split, so all four exist)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    write_idx(raw / f"{prefix}-images-idx3-ubyte", np.asarray(images))
    write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.asarray(labels))
    other = "t10k" if prefix == "train" else "train"
    x, y = synthetic_digits(5, 0)
    write_idx(raw / f"{other}-images-idx3-ubyte", x)
    write_idx(raw / f"{other}-labels-idx1-ubyte", y)
    return raw


@pytest.mark.parametrize("value", OFF_VALUES)
def test_env_flag_off_values(monkeypatch, value):
    monkeypatch.setenv("MNIST_VERIFY", value)
    assert not env_flag("MNIST_VERIFY")


@pytest.mark.parametrize("value", [None, "", "1", "true", "yes", "on"])
def test_env_flag_on_values(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("MNIST_VERIFY", raising=False)
    else:
        monkeypatch.setenv("MNIST_VERIFY", value)
    assert env_flag("MNIST_VERIFY")


@pytest.mark.parametrize("train", [True, False])
def test_verification_rejects_synthetic_data(mnist_root, monkeypatch, train):
    """(a) The synthetic set is not MNIST: with MNIST_VERIFY on, one line names the file and the switch."""
    monkeypatch.setenv("MNIST_VERIFY", "1")
    name = "train-images-idx3-ubyte" if train else "t10k-images-idx3-ubyte"
    message = one_line_error(mnist_root, train=train)
    assert message.startswith(f"MNIST file {mnist_root / 'MNIST' / 'raw' / name} is not the official MNIST file")
    assert "MNIST_VERIFY=0" in message
    monkeypatch.setenv("MNIST_VERIFY", "off")
    assert len(load_mnist(mnist_root, train=train)[0]) == (300 if train else 100)


def test_verification_rejects_noise_labels(tmp_path, monkeypatch):
    """(a) A well-formed but random labels file is named too (checked via verify_official directly)."""
    monkeypatch.setenv("MNIST_VERIFY", "1")
    raw = write_split(tmp_path, "train", np.zeros((60, 28, 28)), np.random.default_rng(0).integers(0, 10, 60))
    path = raw / "train-labels-idx1-ubyte"
    with pytest.raises(DatasetError, match=f"^MNIST file {re.escape(str(path))} is not the official MNIST file"):
        verify_official(path)


@pytest.mark.skipif(not os.environ.get("MNIST_ROOT"), reason="the real MNIST is not configured (MNIST_ROOT)")
def test_real_mnist_passes_verification_quickly(monkeypatch):
    """(b) The official files pass, and hashing all four costs < 1 s."""
    monkeypatch.setenv("MNIST_VERIFY", "1")
    raw = data.resolve_data_dir() / "MNIST" / "raw"
    t0 = time.perf_counter()
    for name in RAW_FILES:
        verify_official(raw / name)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"MD5 check of the four files took {elapsed:.2f} s"
    (x, y), (xt, yt) = load_mnist(None, train=True), load_mnist(None, train=False)
    assert len(x) == len(y) == 60000 and len(xt) == len(yt) == 10000


@pytest.mark.parametrize("verify", ["0", "1"])
def test_count_mismatch_names_both_files(tmp_path, monkeypatch, verify):
    """(c) 59 labels for 60 images: the counts are reported (before, and instead of, the MD5 check)."""
    monkeypatch.setenv("MNIST_VERIFY", verify)
    images, labels = synthetic_digits(60, 0)
    write_split(tmp_path, "train", images, labels[:59])
    message = one_line_error(tmp_path)
    assert "train-labels-idx1-ubyte holds 59 labels but train-images-idx3-ubyte holds 60 images" in message
    assert str(tmp_path / "MNIST" / "raw") in message


def test_image_size_is_checked(tmp_path, monkeypatch):
    write_split(tmp_path, "t10k", np.zeros((10, 28, 27)), np.zeros(10))
    message = one_line_error(tmp_path, train=False)
    assert message.startswith(f"MNIST file {tmp_path / 'MNIST' / 'raw' / 't10k-images-idx3-ubyte'} holds 28x27 images")
    assert "not 28x28" in message


def test_labels_out_of_range(tmp_path):
    """(d) A label of 12 is reported here, not as an IndexError somewhere in training."""
    images, labels = synthetic_digits(20, 0)
    labels[7] = 12
    raw = write_split(tmp_path, "train", images, labels)
    message = one_line_error(tmp_path)
    assert f"labels outside 0..9 in {raw / 'train-labels-idx1-ubyte'} (found 12)" in message


def test_truncated_file_is_named(tmp_path):
    root = make_mnist(tmp_path / "m")
    labels = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:50])
    message = one_line_error(root, train=False)
    assert message.startswith(f"MNIST file {labels} is unreadable (truncated")


@pytest.mark.parametrize("value", OFF_VALUES)
def test_download_switch_off_never_downloads(tmp_path, monkeypatch, value):
    """(e) MNIST_DOWNLOAD=false/no/off/0: no download attempt, one line naming the missing file."""
    calls = []
    monkeypatch.setattr(data, "_download", lambda *args: calls.append(args))
    monkeypatch.setenv("MNIST_DOWNLOAD", value)
    message = one_line_error(tmp_path)
    assert calls == []
    assert message.startswith(f"MNIST file {tmp_path / 'MNIST' / 'raw' / 'train-images-idx3-ubyte'} is missing")
    assert f"MNIST_DOWNLOAD={value.strip()} forbids downloading" in message


@pytest.mark.parametrize("value", [None, "1", "yes"])
def test_download_switch_on_tries_to_download(tmp_path, monkeypatch, value):
    def failing_download(root, train):
        calls.append(root)
        raise OSError("offline")

    calls = []
    monkeypatch.setattr(data, "_download", failing_download)
    if value is None:
        monkeypatch.delenv("MNIST_DOWNLOAD", raising=False)
    else:
        monkeypatch.setenv("MNIST_DOWNLOAD", value)
    message = one_line_error(tmp_path)
    assert calls == [tmp_path.resolve()]
    assert "is missing, as are 3 more, and downloading failed (OSError)" in message


def test_missing_file_is_named(tmp_path, monkeypatch):
    """(f) Only one file missing: the message names exactly that file, with its full path."""
    monkeypatch.setenv("MNIST_DOWNLOAD", "0")
    root = make_mnist(tmp_path / "m")
    missing = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    missing.unlink()
    message = one_line_error(root, train=False)  # all four files are required, whichever split is asked for
    assert message.startswith(f"MNIST file {missing} is missing (MNIST_DOWNLOAD=0 forbids downloading); ")
    assert "MNIST_ROOT" in message and "--data-dir" in message and "shared" not in message


def test_validation_split_is_disjoint_from_the_few_shot_images():
    from data import FEW_SHOT_SIZE, describe_validation, split_validation, validation_indices

    val = validation_indices(60000)
    assert (val.start, val.stop) == (50000, 60000)
    assert not set(val) & set(range(FEW_SHOT_SIZE))
    x, y = torch.arange(60000).float(), torch.arange(60000)
    (fx, _), (vx, vy) = split_validation(x, y)
    assert len(fx) == 50000 and torch.equal(vy, torch.arange(50000, 60000))
    assert describe_validation(60000)["indices"] == "50000..59999"
    with pytest.raises(DatasetError):
        validation_indices(110)  # too small to keep the validation images away from 0..99
