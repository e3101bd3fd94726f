"""Every script end to end (the quick chain of conftest.py): what it writes, and the errors a user meets."""
import json
import subprocess
import sys

import pytest

from conftest import REPO


def _results(out, name):
    return json.loads((out / "results" / f"{name}.json").read_text())


def test_every_results_file_holds_config_data_and_environment(chain):
    out, _ = chain
    for name in ("task1_autoencoder", "task2_classifier", "task3_classifier_decoding", "task4_few_shot",
                 "task5_transfer_learning", "latent_sweep", "q2_equivariance", "semi_supervised"):
        res = _results(out, name)
        assert {"config", "final", "environment"} <= res.keys() and res["config"]["quick"] is True
        assert {"torch", "device", "command", "seconds"} <= res["environment"].keys()
    assert not list(out.rglob(".*.partial"))  # every file was written whole


def test_task1_outputs(chain):
    out, _ = chain
    final = _results(out, "task1_autoencoder")["final"]
    assert {"test_l1", "train_l1", "train_seconds"} <= final.keys()
    for fig in ("reconstructions", "curves"):
        assert (out / "figures" / f"task1_autoencoder_{fig}.png").stat().st_size > 1000
    assert (out / "checkpoints" / "task1_autoencoder.pt").exists()


def test_task2_outputs(chain):
    out, _ = chain
    final = _results(out, "task2_classifier")["final"]
    assert {"test_accuracy", "test_loss", "train_accuracy", "train_seconds"} <= final.keys()
    assert (out / "figures" / "task2_classifier_curves.png").exists()


def test_task3_outputs(chain):
    out, _ = chain
    res = _results(out, "task3_classifier_decoding")
    final = res["final"]
    assert len(final["per_class_test_l1"]["classifier_decoder"]) == 10
    assert {"autoencoder", "classifier", "objective_control"} == final["latent"].keys()
    assert final["control_ae_encoder_test_l1"] > 0 and len(res["control_history"]) == len(res["history"])
    measures = {"ink_mass", "stroke_thickness", "slant", "centre_x", "centre_y", "width", "height"}
    assert all(final["style_r2"][k].keys() == measures for k in ("autoencoder", "classifier"))
    t1 = _results(out, "task1_autoencoder")["final"]["test_l1"]
    assert final["task1_ae_test_l1"] == pytest.approx(t1, rel=1e-6)  # Task 1's number, recomputed from its checkpoint
    for fig in ("digits", "per_class_l1", "class_mean_distances"):
        assert (out / "figures" / f"task3_classifier_decoding_{fig}.png").exists()


def test_task4_records_seeds_recipes_and_the_validation_choice(chain):
    out, _ = chain
    res = _results(out, "task4_few_shot")
    final = res["final"]
    assert set(final["recipes"]) == set(res["history"]) == {"plain", "augmented", "schedule only"}
    assert all(len(h) == 2 for h in res["history"].values())  # 2 seeds with --quick
    long = res["history"]["schedule only"][0]  # evaluated several times, not only after the last epoch
    assert len(long) > 1 and long[-1]["epoch"] == final["recipes"]["schedule only"]["recipe"]["epochs"]
    assert final["best"] in final["recipes"] and sum(final["label_counts"]) == 100


def test_task5_compares_recipes_and_pairs_the_gains(chain):
    out, _ = chain
    final = _results(out, "task5_transfer_learning")["final"]
    assert set(final["recipes"]) == {"fine-tune", "fine-tune, augmented", "fine-tune, schedule only", "frozen encoder",
                                   "frozen encoder, augmented", "fine-tune, augmented, lr/3", "fine-tune, augmented, lr×3",
                                   "fine-tune, augmented, lr×9", "fine-tune, augmented, lr×27"}
    lrs = [final["recipes"][f"fine-tune, augmented{k}"]["recipe"]["lr"] for k in (", lr×27", ", lr×9", ", lr×3", "", ", lr/3")]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] == pytest.approx(27 * lrs[3], rel=0.05)
    assert final["best"] in final["recipes"]
    assert {k: g["task4_recipe"] for k, g in final["pretraining_gain"].items()} == {
        "fine-tune": "plain", "fine-tune, augmented": "augmented", "fine-tune, schedule only": "schedule only"}
    assert (out / "figures" / "task5_transfer_learning_vs_task4.png").exists()


def test_the_extras(chain):
    out, _ = chain
    sweep = _results(out, "latent_sweep")["final"]["per_dim"]
    assert [r["latent_dim"] for r in sweep] == [2, 4, 8, 12, 16, 32]
    assert (out / "figures" / "latent_sweep.png").exists()
    semi = _results(out, "semi_supervised")["final"]
    assert {"chosen", "autoencoder", "random", "gain_over_task5_best"} <= semi.keys()
    assert semi["chosen"]["threshold"] in (0.9, 0.95, 0.99) and (out / "figures" / "semi_supervised.png").exists()
    q2 = _results(out, "q2_equivariance")["final"]
    for name in ("classifier", "autoencoder"):
        rows = q2[name]["per_shift"]
        assert [r["shift"] for r in rows] == [0, 1, 2, 3, 4, 8]
        assert rows[0]["feature_map_relative_error"] == 0 and rows[0]["code_relative_change"] == 0
        assert [r["map_shift_cells"] for r in rows if r["multiple_of_stride_product"]] == [0, 1, 2]


def test_quick_chain_builds_the_report_and_leaves_committed_outputs_alone(chain):
    out, _ = chain
    assert (out / "ex2.pdf").read_bytes()[:5] == b"%PDF-"


@pytest.mark.parametrize("script, missing", [("task3_classifier_decoding", "task2_classifier.pt"),
                                             ("task5_transfer_learning", "task1_autoencoder.pt")])
def test_a_missing_prerequisite_ends_in_one_line_naming_the_script_to_run(script, missing, mnist_root, tmp_path, capsys):
    import importlib

    from train import run

    with pytest.raises(SystemExit) as info:
        run(lambda: importlib.import_module(script).main(["--quick", "--device", "cpu", "--data-dir", str(mnist_root),
                                                          "--out-dir", str(tmp_path)]))
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert missing in err and f"run python tasks/{missing.removesuffix('.pt')}.py first" in err


def test_a_bad_flag_ends_in_one_line_in_a_real_process(tmp_path):
    """The process is the point: what a user sees on the terminal, and the exit status."""
    r = subprocess.run([sys.executable, str(REPO / "tasks" / "task1_autoencoder.py"), "--epochs", "0"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--epochs" in r.stderr


def test_the_tasks_defaults_are_the_settings_the_validation_study_chose():
    import fewshot
    import task1_autoencoder
    import task2_classifier
    import task3_classifier_decoding
    import task4_few_shot
    import task5_transfer_learning
    from models import Encoder

    chosen = json.loads((REPO / "results" / "tuning.json").read_text())["chosen"]
    a1, a2, a3 = task1_autoencoder.parse_args([]), task2_classifier.parse_args([]), task3_classifier_decoding.parse_args([])
    c1, c2, c3 = chosen["task1"], chosen["task2"], chosen["task3"]
    assert (a1.batch_size, a1.lr, a1.epochs, Encoder().channels) == (c1["batch_size"], c1["lr"], c1["epochs"],
                                                                     (c1["width"], 2 * c1["width"]))
    assert (a2.batch_size, a2.lr, a2.epochs, a2.augment_shift) == (c2["batch_size"], c2["lr"], c2["epochs"],
                                                                   c2["augment_shift"])
    assert (a3.batch_size, a3.lr, a3.epochs) == (c3["batch_size"], c3["lr"], c3["epochs"])
    for task in (task4_few_shot, task5_transfer_learning):
        args = task.parse_args([])
        assert (args.epochs, args.lr) == (chosen["plain"]["epochs"], chosen["plain"]["lr"])
    assert (fewshot.PLAIN.epochs, fewshot.PLAIN.lr) == (chosen["plain"]["epochs"], chosen["plain"]["lr"])
    assert (fewshot.AUGMENTED.epochs, fewshot.AUGMENTED.lr) == (chosen["augmented"]["epochs"], chosen["augmented"]["lr"])


def test_the_tuning_rule_reads_validation_only_and_prefers_the_cheaper_of_equals():
    from tune import choose

    rows = [  # test and validation rankings disagree; b and c are within 2 % of the best validation L1
        {"setting": "a", "val_l1": 0.0300, "test_l1": 0.0200, "cost": 10},
        {"setting": "b", "val_l1": 0.0250, "test_l1": 0.0300, "cost": 90},
        {"setting": "c", "val_l1": 0.0254, "test_l1": 0.0310, "cost": 40},
        {"setting": "d", "val_l1": 0.0256, "test_l1": 0.0100, "cost": 20},  # 2.4 %: outside
    ]
    assert choose(rows, "val_l1")["setting"] == "c"
    assert choose([r | {"cost": 1} for r in rows], "val_l1")["setting"] == "b"  # equally cheap: the best
    accuracy = [{"setting": s, "val_accuracy": v, "test_accuracy": 1 - v, "cost": t}
                for s, v, t in (("a", 0.9950, 50), ("b", 0.9942, 20), ("c", 0.9938, 5))]
    assert choose(accuracy, "val_accuracy")["setting"] == "b"  # within 0.1 points of the best, and cheaper
    seeded = [{"setting": s, "val_accuracy_mean": m, "val_accuracy_se": se, "cost": t}
              for s, m, se, t in (("a", 0.90, 0.01, 100), ("b", 0.893, 0.02, 30), ("c", 0.885, 0.01, 1))]
    assert choose(seeded, "val_accuracy_mean")["setting"] == "b"  # within one standard error of a's mean


def test_the_tuning_cost_counts_multiply_adds():
    """Known answers: a linear layer's weights; a 3x3 convolution's output values x 9 x its input channels."""
    import torch
    from torch import nn

    from tune import multiply_adds

    assert multiply_adds(nn.Linear(12, 5), torch.zeros(3, 12)) == 60
    conv = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    assert multiply_adds(conv, torch.zeros(1, 2, 8, 8)) == 4 * 8 * 8 * 2 * 9 + 256 * 10
    assert multiply_adds(nn.ConvTranspose2d(3, 2, 4, stride=2), torch.zeros(1, 3, 5, 5)) == 3 * 5 * 5 * 2 * 16


def test_reproduce_passes_an_empty_out_dir_on_so_that_every_script_refuses_it():
    """An unset shell variable must not turn into "write over the committed outputs"."""
    import reproduce

    for _, flags in reproduce.steps(reproduce.parse_args(["--out-dir", ""])):
        assert flags[flags.index("--out-dir") + 1] == ""
