"""Every task end to end with --quick on the synthetic MNIST (CleanRL style: subprocess, check=True)."""
import json

import torch

from conftest import REPO  # the `chain` fixture lives in conftest.py
from models import Encoder


def _final(out, name):
    return json.loads((out / "results" / f"{name}.json").read_text())["final"]


def test_task1_outputs(chain):
    out, _ = chain
    final = _final(out, "task1_autoencoder")
    assert {"test_l1", "train_l1", "train_seconds", "exploration"} <= final.keys()
    assert [r["latent_dim"] for r in final["exploration"]["latent_sweep"]] == [2, 4, 8, 12, 16, 32]
    assert final["exploration"]["fc_ablation"]["conv_only"]["fc"] is False
    for fig in ("reconstructions", "curves", "fc_ablation"):
        assert (out / "figures" / f"task1_autoencoder_{fig}.png").stat().st_size > 1000
    assert (out / "checkpoints" / "task1_autoencoder.pt").exists()


def test_task2_outputs(chain):
    out, _ = chain
    final = _final(out, "task2_classifier")
    assert {"test_accuracy", "test_loss", "train_accuracy", "train_seconds"} <= final.keys()
    assert (out / "figures" / "task2_classifier_curves.png").exists()


def test_task3_encoder_is_frozen(chain):
    out, _ = chain
    final = _final(out, "task3_classifier_decoding")
    assert final["encoder_unchanged"] is True
    assert len(final["per_class_test_l1"]["classifier_decoder"]) == 10
    assert {"autoencoder", "classifier"} == final["latent"].keys()
    assert final["control_encoder_unchanged"] is True and final["control_ae_encoder_test_l1"] > 0
    measures = {"ink_mass", "stroke_thickness", "slant", "centre_x", "centre_y", "width", "height"}
    assert all(final["style_r2"][k].keys() == measures for k in ("autoencoder", "classifier"))
    res = json.loads((out / "results" / "task3_classifier_decoding.json").read_text())
    assert len(res["control_history"]) == len(res["history"])  # same epochs as Task 3
    for fig in ("digits", "per_class_l1", "latent_pca"):
        assert (out / "figures" / f"task3_classifier_decoding_{fig}.png").exists()


def test_task4_records_seeds_recipes_and_the_validation_choice(chain):
    out, _ = chain
    res = json.loads((out / "results" / "task4_few_shot.json").read_text())
    assert res["config"]["train_indices"] == "0..99"
    assert res["config"]["validation"]["disjoint_from_few_shot"] is True
    final = res["final"]
    assert len(final["per_seed"]) == len(res["histories"]) == 2
    assert {"test_accuracy_mean", "test_accuracy_std", "test_loss_mean", "val_accuracy_mean"} <= final.keys()
    assert set(final["recipes"]) == {"plain", "augmented", "schedule only"}
    long = res["recipe_histories"]["schedule only"][0]  # evaluated several times, not only after the last epoch
    assert len(long) > 1 and long[-1]["epoch"] == final["recipes"]["schedule only"]["recipe"]["epochs"]
    assert final["best"]["selected_on"] == "validation" and final["best"]["recipe"] in final["recipes"]
    assert all("seconds" in r for r in res["histories"][0])


def test_task5_starts_from_the_ae_encoder_and_compares_recipes(chain):
    out, _ = chain
    final = _final(out, "task5_transfer_learning")
    assert final["encoder_started_from_ae"] is True
    assert "test_accuracy_mean" in final["task4"]
    assert set(final["recipes"]) == {"fine-tune", "fine-tune, augmented", "frozen encoder", "frozen encoder, augmented"}
    assert final["best"]["selected_on"] == "validation"
    assert set(final["pretraining_gain"]) == {"plain", "augmented"}
    assert [r["latent_dim"] for r in final["transfer_vs_latent_dim"]] == [2, 4, 8, 12, 16, 32]
    for fig in ("vs_task4", "vs_latent_dim"):
        assert (out / "figures" / f"task5_transfer_learning_{fig}.png").exists()
    # independently: the AE encoder in the checkpoint is not a random one
    ckpt = torch.load(out / "checkpoints" / "task1_autoencoder.pt", weights_only=True)
    fresh = Encoder(**ckpt["config"]).state_dict()
    assert any(not torch.equal(v, fresh[k]) for k, v in ckpt["state_dict"]["encoder"].items())


def test_q2_equivariance_measures_both_encoders(chain):
    out, _ = chain
    final = _final(out, "q2_equivariance")
    for name in ("classifier", "autoencoder"):
        rows = final[name]["per_shift"]
        assert [r["shift"] for r in rows] == [0, 1, 2, 3, 4, 8]
        assert rows[0]["feature_map_relative_error"] == 0 and rows[0]["code_relative_change"] == 0
        assert [r["map_shift_cells"] for r in rows if r["multiple_of_stride_product"]] == [0, 1, 2]


def test_quick_chain_builds_the_report_and_leaves_committed_outputs_alone(chain):
    out, log = chain
    assert (out / "ex2.pdf").read_bytes()[:5] == b"%PDF-"
    assert "runs/quick" not in log and str(REPO / "results") not in log


def test_a_missing_prerequisite_is_produced_by_its_own_script(chain, mnist_root, tmp_path, monkeypatch, capsys):
    """Task 2's outputs missing: Q2 runs tasks/task2_classifier.py with the forwarded flags first
    (its main() in-process here instead of a subprocess, to save the interpreter start-up)."""
    import shutil

    import q2_equivariance
    import runs
    import task2_classifier

    out = tmp_path / "o"
    shutil.copytree(chain[0], out)
    for f in out.glob("*/task2_classifier*"):
        f.unlink()
    ran = []
    monkeypatch.setattr(runs, "run_script", lambda script, flags: ran.append(script) or task2_classifier.main(flags))
    q2_equivariance.main(["--quick", "--device", "cpu", "--data-dir", str(mnist_root), "--out-dir", str(out)])
    assert ran == ["tasks/task2_classifier.py"]
    assert "task2_classifier.pt not found; running tasks/task2_classifier.py first" in capsys.readouterr().out
    res = json.loads((out / "results" / "q2_equivariance.json").read_text())
    assert res["prerequisites"]["task2_classifier"] == json.loads(
        (out / "results" / "task2_classifier.json").read_text())["run_id"]


def test_recipe_selection_reads_validation_metrics_only():
    from fewshot import select

    recipes = {  # test and validation rankings disagree
        "a": {"val_accuracy_mean": 0.80, "test_accuracy_mean": 0.95, "test_accuracy_std": 0.0, "seeds": 5},
        "b": {"val_accuracy_mean": 0.90, "test_accuracy_mean": 0.60, "test_accuracy_std": 0.0, "seeds": 5},
    }
    best = select(recipes)
    assert best["recipe"] == "b" and best["selected_on"] == "validation" and best["test_accuracy_mean"] == 0.60


def test_the_tuning_rule_reads_validation_only_and_prefers_the_faster_of_equals():
    from tune import choose

    rows = [  # test and validation rankings disagree; b and c are within 2 % of the best validation L1
        {"setting": "a", "val_l1": 0.0300, "test_l1": 0.0200, "train_seconds": 10},
        {"setting": "b", "val_l1": 0.0250, "test_l1": 0.0300, "train_seconds": 90},
        {"setting": "c", "val_l1": 0.0254, "test_l1": 0.0310, "train_seconds": 40},
        {"setting": "d", "val_l1": 0.0256, "test_l1": 0.0100, "train_seconds": 20},  # 2.4 %: outside
    ]
    assert choose(rows, "val_l1")["setting"] == "c"
    accuracy = [{"setting": s, "val_accuracy": v, "test_accuracy": 1 - v, "train_seconds": t}
                for s, v, t in (("a", 0.9950, 50), ("b", 0.9942, 20), ("c", 0.9938, 5))]
    assert choose(accuracy, "val_accuracy")["setting"] == "b"  # within 0.1 points of the best, and faster
    seeded = [{"setting": s, "val_accuracy_mean": m, "val_accuracy_se": se, "train_seconds": t}
              for s, m, se, t in (("a", 0.90, 0.01, 100), ("b", 0.893, 0.02, 30), ("c", 0.885, 0.01, 1))]
    assert choose(seeded, "val_accuracy_mean")["setting"] == "b"  # within one standard error of a's mean


def test_the_tasks_defaults_are_the_settings_the_validation_study_chose():
    import pytest

    import fewshot
    import task1_autoencoder
    import task2_classifier
    import task3_classifier_decoding
    import task4_few_shot
    import task5_transfer_learning

    path = REPO / "results" / "tuning.json"
    if not path.exists():
        pytest.skip("the validation study's results are not committed yet")
    chosen = json.loads(path.read_text())["chosen"]
    a1, a2, a3 = task1_autoencoder.parse_args([]), task2_classifier.parse_args([]), task3_classifier_decoding.parse_args([])
    assert (a1.lr, a1.epochs, a1.channels) == (chosen["task1"]["lr"], chosen["task1"]["epochs"], chosen["task1"]["channels"])
    assert (a2.lr, a2.epochs, a2.augment_shift, a2.channels) == (chosen["task2"]["lr"], chosen["task2"]["epochs"],
                                                                 chosen["task2"]["augment_shift"], a1.channels)
    assert (a3.epochs, a3.lr) == (chosen["task3"]["epochs"], chosen["task1"]["lr"])  # the decoder trains as in Task 1
    for task in (task4_few_shot, task5_transfer_learning):
        args = task.parse_args([])
        assert (args.epochs, args.lr) == (chosen["plain"]["epochs"], chosen["plain"]["lr"])
    assert (fewshot.PLAIN["epochs"], fewshot.PLAIN["lr"]) == (chosen["plain"]["epochs"], chosen["plain"]["lr"])
    assert (fewshot.AUGMENTED["epochs"], fewshot.AUGMENTED["lr"]) == (chosen["augmented"]["epochs"],
                                                                      chosen["augmented"]["lr"])
    assert Encoder().channels == tuple(a1.channels)  # models.py's defaults are what the tasks train
    assert {a.settings_from for a in (a1, a2, a3)} == {"validation, results/tuning.json"}
