"""Every task end to end with --quick on the synthetic MNIST (CleanRL style: subprocess, check=True)."""
import json

import torch

from conftest import REPO, run_task  # the `chain` fixture lives in conftest.py
from models import Encoder


def _final(out, name):
    return json.loads((out / "results" / f"{name}.json").read_text())["final"]


def test_task1_outputs(chain):
    out, _ = chain
    final = _final(out, "task1_autoencoder")
    assert {"test_l1", "train_l1", "train_seconds", "exploration"} <= final.keys()
    assert [r["latent_dim"] for r in final["exploration"]["latent_sweep"]] == [2, 4, 8, 12, 16, 32]
    assert final["exploration"]["fc_ablation"]["conv_only"]["fc"] is False
    for fig in ("reconstructions", "curves", "fc_ablation", "latent_sweep"):
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
    for fig in ("digits", "per_class_l1", "latent_pca", "curves", "style_r2"):
        assert (out / "figures" / f"task3_classifier_decoding_{fig}.png").exists()


def test_task4_records_seeds_recipes_and_the_validation_choice(chain):
    out, _ = chain
    res = json.loads((out / "results" / "task4_few_shot.json").read_text())
    assert res["config"]["train_indices"] == "0..99"
    assert res["config"]["validation"]["disjoint_from_few_shot"] is True
    final = res["final"]
    assert len(final["per_seed"]) == len(res["histories"]) == 2
    assert {"test_accuracy_mean", "test_accuracy_std", "test_loss_mean", "val_accuracy_mean"} <= final.keys()
    assert set(final["recipes"]) == {"plain", "augmented"}
    assert final["best"]["selected_on"] == "validation" and final["best"]["recipe"] in final["recipes"]
    assert set(final["selection_by_validation_size"]) == {"100", "500", "all"}
    assert all("seconds" in r for r in res["histories"][0])


def test_task5_starts_from_the_ae_encoder_and_compares_recipes(chain):
    out, _ = chain
    final = _final(out, "task5_transfer_learning")
    assert final["encoder_started_from_ae"] is True
    assert "test_accuracy_mean" in final["task4"]
    assert set(final["recipes"]) == {"fine-tune", "fine-tune, augmented", "frozen encoder", "frozen encoder, augmented",
                                     "two-stage", "two-stage, augmented"}
    assert final["best"]["selected_on"] == "validation"
    assert set(final["pretraining_gain"]) == {"plain", "augmented"}
    assert [r["latent_dim"] for r in final["transfer_vs_latent_dim"]] == [2, 4, 8, 12, 16, 32]
    for fig in ("vs_task4", "recipes", "vs_latent_dim"):
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
    assert (out / "figures" / "q2_equivariance.png").exists()


def test_quick_chain_builds_the_report_and_leaves_committed_outputs_alone(chain):
    out, log = chain
    assert (out / "ex2.pdf").read_bytes()[:5] == b"%PDF-"
    assert "runs/quick" not in log and str(REPO / "results") not in log


def test_task3_trains_missing_prerequisites(mnist_root, tmp_path):
    out = run_task("task3_classifier_decoding.py", "--quick", "--device", "cpu", "--data-dir", mnist_root,
                   "--out-dir", tmp_path)
    assert "task2_classifier.pt not found; training it with task2_classifier.py first" in out.stdout
    assert "task1_autoencoder.pt not found; training it with task1_autoencoder.py first" in out.stdout
    assert _final(tmp_path, "task3_classifier_decoding")["encoder_unchanged"] is True


def test_recipe_selection_reads_validation_metrics_only():
    from task4_few_shot import select, selection

    recipes = {  # test and validation rankings disagree
        "a": {"val_accuracy_mean": 0.80, "test_accuracy_mean": 0.95, "test_accuracy_std": 0.0, "seeds": 5,
              "val_accuracy_first_100_mean": 0.99, "val_accuracy_first_500_mean": 0.70},
        "b": {"val_accuracy_mean": 0.90, "test_accuracy_mean": 0.60, "test_accuracy_std": 0.0, "seeds": 5,
              "val_accuracy_first_100_mean": 0.50, "val_accuracy_first_500_mean": 0.95},
    }
    assert select(recipes) == "b"
    best, small = selection(recipes)
    assert best["recipe"] == "b" and best["selected_on"] == "validation" and best["test_accuracy_mean"] == 0.60
    assert small == {"100": "a", "500": "b", "all": "b"}
