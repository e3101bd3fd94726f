"""runs.py's three guarantees (one unit, one run per out-dir, one-line errors) and the faults a
hostile but realistic user tried. One subprocess test per guarantee; the rest in-process."""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import runs
from conftest import REPO, run_task
from models import CheckpointError, Encoder, load_checkpoint, save_checkpoint
from runs import UserError, open_run, prerequisite, read_json, run_main


class Args:
    def __init__(self, out_dir, **kw):
        self.out_dir, self.quick, self.seed, self.device, self.data_dir = str(out_dir), False, 0, "cpu", None
        self.__dict__.update(kw)


def _snapshot(out):
    return {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def _exit(main, capsys, name="demo") -> tuple[int, str]:
    """run_main(main) in-process: (exit status, its one stderr line)."""
    with pytest.raises(SystemExit) as info:
        run_main(main, name)
    return info.value.code, _one_line(capsys.readouterr().err)


@pytest.fixture(scope="module")
def task1_done(mnist_root, tmp_path_factory):
    """A complete quick Task 1 run (no exploration) into its own out-dir, in-process."""
    import task1_autoencoder

    out = tmp_path_factory.mktemp("t1")
    task1_autoencoder.main(["--quick", "--explore-epochs", "0", "--device", "cpu", "--data-dir", str(mnist_root),
                            "--out-dir", str(out)])
    return out


def _demo_run(tmp_path, content: str, signal_during_moves: bool = False):
    def main():
        with open_run("demo", Args(tmp_path)) as run:
            for kind, name in (("figures", "demo_curves.png"), ("checkpoints", "demo.pt"), ("results", "demo.json")):
                run.path(kind, name).write_text(content)
            if signal_during_moves:
                real = os.replace

                def replace_then_signal(src, dst):
                    os.kill(os.getpid(), signal.SIGTERM)  # arrives while the commit moves the files
                    real(src, dst)
                runs.os.replace = replace_then_signal
    return main


# ----------------------------------------------------------------------------- (a) one unit
def test_sigterm_keeps_the_previous_complete_set(mnist_root, task1_done):
    before = _snapshot(task1_done)
    proc = subprocess.Popen([sys.executable, str(REPO / "tasks" / "task1_autoencoder.py"), "--quick", "--device", "cpu",
                             "--explore-epochs", "0", "--data-dir", str(mnist_root), "--out-dir", str(task1_done)],
                            cwd=REPO, env=os.environ | {"MNIST_DOWNLOAD": "0"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((task1_done / ".staging").glob("*/checkpoints/*.pt")):
        time.sleep(0.05)
    assert list((task1_done / ".staging").glob("*/checkpoints/*.pt")), "the run never staged its checkpoint"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted: nothing of task1_autoencoder was written" in _one_line(err)
    assert _snapshot(task1_done) == before  # the previous run's checkpoint, figures and results, unchanged


def test_a_signal_during_the_moves_waits_for_the_commit_and_is_reported_truly(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runs.os, "replace", os.replace)  # restored after the test
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    run_main(_demo_run(tmp_path, "old"), "demo")
    status, line = _exit(_demo_run(tmp_path, "new", signal_during_moves=True), capsys)
    assert status == 130 and line == "interrupted: the outputs of demo were written completely before it stopped"
    for kind, name in (("figures", "demo_curves.png"), ("checkpoints", "demo.pt"), ("results", "demo.json")):
        assert (tmp_path / kind / name).read_text() == "new", kind  # the whole new set, never a mix
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_a_commit_that_removes_earlier_outputs_says_so(tmp_path, capsys):
    (tmp_path / "figures").mkdir()
    stale, mine = tmp_path / "figures" / "demo_old_extra.png", tmp_path / "figures" / "notes.txt"
    stale.write_text("x")
    mine.write_text("mine")
    run_main(_demo_run(tmp_path, "new"), "demo")
    assert not stale.exists() and mine.read_text() == "mine"
    assert "demo: removed 1 outputs of its earlier run that this run does not write (demo_old_extra.png)" \
        in capsys.readouterr().out


def test_a_full_disk_ends_in_one_line_and_keeps_the_previous_set(tmp_path, capsys, monkeypatch):
    run_main(_demo_run(tmp_path, "old"), "demo")
    before = _snapshot(tmp_path)

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4096 vs 4032")

    monkeypatch.setattr(torch, "save", full)

    def main():
        with open_run("demo", Args(tmp_path)) as run:
            save_checkpoint(run.path("checkpoints", "demo.pt"), {"encoder": Encoder()})

    status, line = _exit(main, capsys)
    assert status == 2 and f"the disk holding {tmp_path} is full; nothing of demo was written" in line
    assert _snapshot(tmp_path) == before


def test_results_and_checkpoint_carry_the_same_run_id(task1_done):
    res = read_json(task1_done / "results" / "task1_autoencoder.json")
    _, ckpt = load_checkpoint(task1_done / "checkpoints" / "task1_autoencoder.pt")
    assert res["run_id"] and res["run_id"] == ckpt["run_id"]
    assert not list((task1_done / ".staging").glob("*"))


# ----------------------------------------------------------------------------- (b) one run per out-dir
def test_second_run_into_a_locked_out_dir_refuses(mnist_root, tmp_path):
    with open(tmp_path / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write("4242")
        f.flush()
        out = run_task("task2_classifier.py", "--quick", "--data-dir", mnist_root, "--out-dir", tmp_path, check=False)
        assert out.returncode == 2 and "another run is writing into" in _one_line(out.stderr) and "4242" in out.stderr
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------------------- (c) one line, before training
def test_a_bad_flag_ends_in_one_line_in_a_real_process(tmp_path):
    out = run_task("task2_classifier.py", "--seed", "-5", "--data-dir", tmp_path / "no-data", check=False)
    assert out.returncode == 2 and "expected a seed in 0..4294967295, got '-5'" in _one_line(out.stderr)


@pytest.mark.parametrize("task, flags, message", [
    ("task2_classifier", ["--epochs", "0"], "expected a positive integer"),
    ("task2_classifier", ["--batch-size", "-4"], "expected a positive integer"),
    ("task2_classifier", ["--lr", "abc"], "expected a positive number"),
    ("task2_classifier", ["--device", "tpu"], "invalid choice"),
    ("task2_classifier", ["--out-dir", ""], "an empty path (an unset shell variable?)"),
    ("task4_few_shot", ["--seed", "4294967295"], "runs past the largest seed"),
    ("task5_transfer_learning", ["--seeds", "0"], "argument --seeds: expected a positive integer"),
    ("q2_equivariance", ["--epochs", "3"], "unrecognized arguments: --epochs"),  # nothing trains in Q2
])
def test_bad_flags_end_in_one_line(task, flags, message, capsys):
    module = __import__(task)
    with pytest.raises(SystemExit) as info:
        module.parse_args(flags)
    assert info.value.code == 2 and message in _one_line(capsys.readouterr().err)


def test_out_dirs_that_cannot_hold_a_run_are_refused(tmp_path, capsys):
    import task2_classifier

    f = tmp_path / "file"
    f.write_text("mine")
    for out_dir, message in ((f, "is a file, not a folder"), ("/dev/null/x", "/dev/null")):
        status, line = _exit(lambda: task2_classifier.main(["--quick", "--out-dir", str(out_dir), "--data-dir",
                                                            str(tmp_path / "no-data")]), capsys, "task2_classifier")
        assert status == 2 and message in line
    assert f.read_text() == "mine"


def test_divergence_stops_in_one_line_and_writes_nothing(mnist_root, tmp_path, capsys):
    import task2_classifier

    status, line = _exit(lambda: task2_classifier.main(["--quick", "--lr", "1e30", "--device", "cpu", "--data-dir",
                                                        str(mnist_root), "--out-dir", str(tmp_path)]), capsys)
    assert status == 2 and "diverged" in line and "epoch 1, step" in line
    assert not (tmp_path / "results" / "task2_classifier.json").exists()


def test_malformed_results_files_are_named(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"final": {"test_l1": 0.02')
    with pytest.raises(UserError, match="r.json is not valid JSON"):
        read_json(path)
    path.write_text('{"final": {}}')
    with pytest.raises(UserError, match="r.json has no 'test_l1'"):
        read_json(path)["final"]["test_l1"]


# ----------------------------------------------------------------------------- prerequisites: never destroy, never mix
def test_a_missing_prerequisite_is_trained_by_its_own_script_with_its_defaults(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runs, "run_script", lambda script, flags: calls.append((script, flags)) or 1)
    with pytest.raises(SystemExit) as info:  # with the script's status; its own one-line message says why
        prerequisite("task1_autoencoder", Args(tmp_path, quick=True, seed=3))
    assert info.value.code == 1
    (script, flags), = calls
    assert script == "tasks/task1_autoencoder.py" and "--explore-epochs" not in flags  # its default exploration
    assert flags == ["--out-dir", str(tmp_path), "--seed", "3", "--device", "cpu", "--quick"]


def test_a_prerequisite_of_another_architecture_is_refused_and_kept(task1_done, tmp_path):
    out = tmp_path / "o"
    shutil.copytree(task1_done, out)
    run_id = read_json(out / "results" / "task1_autoencoder.json")["run_id"]
    save_checkpoint(out / "checkpoints" / "task1_autoencoder.pt", {"encoder": Encoder(8)}, run_id)
    mine = (out / "checkpoints" / "task1_autoencoder.pt").read_bytes()
    with pytest.raises(CheckpointError, match=r"latent_dim=8, expected 12; retrain it with `python "
                                              r"tasks/task1_autoencoder.py --out-dir .*`\.$"):
        prerequisite("task1_autoencoder", Args(out))
    assert (out / "checkpoints" / "task1_autoencoder.pt").read_bytes() == mine  # untouched


def test_a_prerequisite_from_mixed_runs_is_refused(task1_done, tmp_path):
    out = tmp_path / "o"
    shutil.copytree(task1_done, out)
    results = out / "results" / "task1_autoencoder.json"
    results.write_text(json.dumps(json.loads(results.read_text()) | {"run_id": "another-run"}))
    with pytest.raises(UserError, match="come from different runs; retrain it with"):
        prerequisite("task1_autoencoder", Args(out))


def test_task5_says_in_one_line_that_the_latent_sweep_is_missing(task1_done, capsys):
    import task5_transfer_learning

    ae_results = read_json(task1_done / "results" / "task1_autoencoder.json")  # run with --explore-epochs 0
    assert task5_transfer_learning.sweep_encoders(Args(task1_done), ae_results) == {}
    assert "has no latent sweep" in _one_line(capsys.readouterr().out)


def test_run_script_passes_a_signal_on_to_its_child(tmp_path):
    """A Ctrl-C that reached only us: the running step gets it too (it then drops its staged outputs)."""
    from cli import run_script

    child = tmp_path / "child.py"
    got = tmp_path / "got"
    child.write_text("import pathlib, signal, sys, time\n"
                     f"signal.signal(signal.SIGINT, lambda *a: (pathlib.Path({str(got)!r}).write_text('SIGINT'), "
                     "sys.exit(130)))\ntime.sleep(30)\n")
    handler = signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_script(str(child), [], grace=0.2)
    finally:
        signal.signal(signal.SIGALRM, handler)
    assert got.read_text() == "SIGINT"
