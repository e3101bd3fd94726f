"""A run's outputs are one unit: staging, the out-dir lock, early checks, one-line errors, signals,
malformed files and prerequisites (runs.py). Subprocesses as a user would run them, on the synthetic data."""
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, run_task
from models import Encoder
from runs import CheckpointError, atomic_path, load_checkpoint, load_modules, open_run, read_json

FAST_T1 = ("--quick", "--explore-epochs", "0", "--device", "cpu")


def _one_line(out) -> str:
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


@pytest.fixture(scope="module")
def task1_done(mnist_root, tmp_path_factory):
    """A complete quick Task 1 run (no exploration) into its own out-dir."""
    out = tmp_path_factory.mktemp("t1")
    old = os.umask(0o022)  # inherited by the run: mkstemp's 0600 would show as a mismatch
    try:
        run_task("task1_autoencoder.py", *FAST_T1, "--data-dir", mnist_root, "--out-dir", out)
    finally:
        os.umask(old)
    return out


def _snapshot(out):
    return {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}


def test_outputs_get_ordinary_permissions(task1_done):
    for p in (task1_done / "results" / "task1_autoencoder.json", task1_done / "checkpoints" / "task1_autoencoder.pt",
              task1_done / "figures" / "task1_autoencoder_curves.png"):
        assert p.stat().st_mode & 0o777 == 0o644, p


def test_results_and_checkpoint_carry_the_same_run_id(task1_done):
    res = read_json(task1_done / "results" / "task1_autoencoder.json")
    ckpt = load_checkpoint(task1_done / "checkpoints" / "task1_autoencoder.pt")
    assert res["run_id"] and res["run_id"] == ckpt["run_id"]
    assert not (task1_done / ".staging").exists() or not list((task1_done / ".staging").iterdir())


def test_divergence_stops_in_one_line_and_writes_nothing(mnist_root, task1_done, tmp_path):
    before = _snapshot(task1_done)
    out = run_task("task2_classifier.py", "--quick", "--lr", "1e30", "--device", "cpu", "--data-dir", mnist_root,
                   "--out-dir", task1_done, check=False)
    line = _one_line(out)
    assert out.returncode == 2 and "diverged" in line and "epoch 1, step" in line
    assert _snapshot(task1_done) == before  # no Task 2 file, Task 1's untouched


def test_sigterm_keeps_the_previous_complete_set(mnist_root, task1_done):
    before = _snapshot(task1_done)
    env = os.environ | {"MNIST_DOWNLOAD": "0"}
    proc = subprocess.Popen([sys.executable, str(REPO / "tasks" / "task1_autoencoder.py"), "--quick", "--device", "cpu",
                             "--data-dir", str(mnist_root), "--out-dir", str(task1_done)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    staged = task1_done / ".staging"
    deadline = time.time() + 120
    while time.time() < deadline and not list(staged.glob("*/checkpoints/*.pt")):  # the new checkpoint is staged
        time.sleep(0.05)
    assert list(staged.glob("*/checkpoints/*.pt")), "the run never staged its checkpoint"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err and "Traceback" not in err
    assert _snapshot(task1_done) == before  # the previous run's checkpoint, figures and results, unchanged


def test_second_run_into_a_locked_out_dir_refuses(mnist_root, tmp_path):
    with open(tmp_path / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write("4242")
        f.flush()
        t0 = time.perf_counter()
        out = run_task("task2_classifier.py", "--quick", "--data-dir", mnist_root, "--out-dir", tmp_path, check=False)
        assert out.returncode == 2 and "another run is writing into" in _one_line(out)
        assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "results").exists()


def test_leftovers_of_killed_runs_are_removed(tmp_path):
    (tmp_path / ".staging" / "task1-old").mkdir(parents=True)
    (tmp_path / "results").mkdir()
    stale = tmp_path / "results" / ".task1_autoencoder.json.a1b2c3d4.json"
    stale.write_text("")
    keep = tmp_path / "results" / "notes.json"
    keep.write_text("{}")
    stale_output = tmp_path / "results" / "demo_old_extra.json"  # an earlier run's output this run does not write
    stale_output.write_text("{}")
    kept_aside = tmp_path / "results" / "demo.replaced-20260101T000000Z.json"
    kept_aside.write_text("{}")

    class Args:
        out_dir, quick = str(tmp_path), False

    with open_run("demo", Args) as run:
        (run.path("results", "demo.json")).parent.mkdir(parents=True)
        run.path("results", "demo.json").write_text("{}")
    assert not stale.exists() and not (tmp_path / ".staging" / "task1-old").exists() and keep.exists()
    assert not stale_output.exists() and kept_aside.exists()
    assert (tmp_path / "results" / "demo.json").exists()


@pytest.mark.parametrize("script, flags, message", [
    ("task2_classifier.py", ["--seed", "-5"], "a seed must be in 0..4294967295"),
    ("task4_few_shot.py", ["--seed", "4294967295"], "runs past the largest seed"),
    ("task2_classifier.py", ["--out-dir", "/dev/null/x"], "--out-dir"),
])
def test_bad_flags_and_out_dirs_fail_in_one_line_before_training(script, flags, message, tmp_path):
    t0 = time.perf_counter()
    out = run_task(script, *flags, "--data-dir", tmp_path / "no-data", check=False)  # data is never reached
    assert out.returncode == 2 and message in _one_line(out)
    assert time.perf_counter() - t0 < 30


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("mine")
    out = run_task("task2_classifier.py", "--quick", "--out-dir", f, "--data-dir", tmp_path / "no-data", check=False)
    assert out.returncode == 2 and "is a file, not a folder" in _one_line(out)
    assert f.read_text() == "mine"


def test_atomic_path_respects_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "x.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o640


# ----------------------------------------------------------------------------- malformed files: one line naming the file
def _checkpoint(tmp_path, payload) -> "os.PathLike":
    path = tmp_path / "c.pt"
    torch.save(payload, path)
    return path


def test_malformed_checkpoints_are_named(tmp_path):
    enc = Encoder()
    good = {"config": {"latent_dim": 12, "channels": [16, 32], "fc": True}, "state_dict": {"encoder": enc.state_dict()}}
    with pytest.raises(CheckpointError, match="c.pt is malformed"):
        load_checkpoint(_checkpoint(tmp_path, {"config": good["config"]}))  # no state_dict
    nan = {k: v.clone() for k, v in enc.state_dict().items()}
    nan["head.1.weight"][0, 0] = float("nan")
    with pytest.raises(CheckpointError, match=r"c.pt: encoder.head.1.weight is not a finite tensor"):
        load_checkpoint(_checkpoint(tmp_path, good | {"state_dict": {"encoder": nan}}))
    missing = {k: v for k, v in enc.state_dict().items() if k != "head.1.bias"}
    ckpt = load_checkpoint(_checkpoint(tmp_path, good | {"state_dict": {"encoder": missing}}))
    with pytest.raises(CheckpointError, match="c.pt: 'encoder' does not fit the model"):
        load_modules(ckpt, tmp_path / "c.pt", {"encoder": Encoder()})
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt is unreadable"):
        load_checkpoint(tmp_path / "junk.pt")


def test_truncated_results_json_is_named(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"final": {"test_l1": 0.02')
    with pytest.raises(CheckpointError, match="r.json is not valid JSON"):
        read_json(path)


def test_task3_with_a_truncated_prerequisite_result_ends_in_one_line(mnist_root, task1_done, tmp_path):
    import shutil

    out_dir = tmp_path / "o"
    shutil.copytree(task1_done, out_dir)
    results = out_dir / "results" / "task1_autoencoder.json"
    results.write_text(results.read_text()[:100])
    run_task("task2_classifier.py", "--quick", "--device", "cpu", "--data-dir", mnist_root, "--out-dir", out_dir)
    out = run_task("task3_classifier_decoding.py", "--quick", "--device", "cpu", "--data-dir", mnist_root,
                   "--out-dir", out_dir, check=False)
    line = _one_line(out)
    assert out.returncode == 2 and "task1_autoencoder.json is not valid JSON" in line and "--retrain-prerequisites" in line


# ----------------------------------------------------------------------------- never destroy a user's work
def test_prerequisite_of_another_architecture_is_kept(mnist_root, tmp_path):
    run_task("task1_autoencoder.py", *FAST_T1, "--latent-dim", "8", "--data-dir", mnist_root, "--out-dir", tmp_path)
    run_task("task2_classifier.py", "--quick", "--device", "cpu", "--data-dir", mnist_root, "--out-dir", tmp_path)
    mine = (tmp_path / "checkpoints" / "task1_autoencoder.pt").read_bytes()
    out = run_task("task3_classifier_decoding.py", "--quick", "--device", "cpu", "--data-dir", mnist_root,
                   "--out-dir", tmp_path, check=False)
    line = _one_line(out)
    assert out.returncode == 2 and "latent_dim=8" in line and "--retrain-prerequisites" in line
    assert (tmp_path / "checkpoints" / "task1_autoencoder.pt").read_bytes() == mine  # untouched
    out = run_task("task3_classifier_decoding.py", "--quick", "--device", "cpu", "--data-dir", mnist_root,
                   "--out-dir", tmp_path, "--retrain-prerequisites")
    kept = list((tmp_path / "checkpoints").glob("task1_autoencoder.replaced-*.pt"))
    assert len(kept) == 1 and kept[0].read_bytes() == mine
    assert list((tmp_path / "results").glob("task1_autoencoder.replaced-*.json"))
    assert load_checkpoint(tmp_path / "checkpoints" / "task1_autoencoder.pt")["config"]["latent_dim"] == 12


def test_ctrl_c_in_reproduce_ends_in_one_line(mnist_root, tmp_path):
    env = os.environ | {"MNIST_DOWNLOAD": "0"}
    proc = subprocess.Popen([sys.executable, str(REPO / "reproduce.py"), "--quick", "--device", "cpu", "--data-dir",
                             str(mnist_root), "--out-dir", str(tmp_path)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / ".staging").glob("*/checkpoints/*.pt")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted during tasks/task1_autoencoder.py")
    assert not (tmp_path / "results").exists()


def test_checkpoint_and_results_of_different_runs_are_refused(task1_done, tmp_path):
    import shutil

    import task1_autoencoder
    from runs import UserError, load_or_train

    out_dir = tmp_path / "o"
    shutil.copytree(task1_done, out_dir)
    results = out_dir / "results" / "task1_autoencoder.json"
    res = json.loads(results.read_text())
    results.write_text(json.dumps(res | {"run_id": "task1_autoencoder-another-run"}))

    class Args:
        out_dir, quick, seed, device, data_dir, retrain_prerequisites = str(tmp_path / "o"), True, 0, "cpu", None, False

    with pytest.raises(UserError, match="come from different runs.*--retrain-prerequisites"):
        load_or_train(task1_autoencoder, Args)
