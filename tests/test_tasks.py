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
    for fig in ("digits", "per_class_l1", "latent_pca"):
        assert (out / "figures" / f"task3_classifier_decoding_{fig}.png").exists()


def test_task4_records_seeds_and_time(chain):
    out, _ = chain
    res = json.loads((out / "results" / "task4_few_shot.json").read_text())
    assert res["config"]["train_indices"] == "0..99"
    assert len(res["final"]["per_seed"]) == len(res["histories"]) == 2
    assert {"test_accuracy_mean", "test_accuracy_std", "test_loss_mean"} <= res["final"].keys()
    assert all("seconds" in r for r in res["histories"][0])


def test_task5_starts_from_the_ae_encoder(chain):
    out, _ = chain
    final = _final(out, "task5_transfer_learning")
    assert final["encoder_started_from_ae"] is True
    assert "test_accuracy_mean" in final["task4"]
    assert (out / "figures" / "task5_transfer_learning_vs_task4.png").exists()
    # independently: the AE encoder in the checkpoint is not a random one
    ckpt = torch.load(out / "checkpoints" / "task1_autoencoder.pt", weights_only=True)
    fresh = Encoder(**ckpt["config"]).state_dict()
    assert any(not torch.equal(v, fresh[k]) for k, v in ckpt["state_dict"]["encoder"].items())


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


def test_augmented_extra_has_its_own_outputs(chain, mnist_root):
    out, _ = chain
    plain = (out / "results" / "task5_transfer_learning.json").read_bytes()
    for script in ("task4_few_shot.py", "task5_transfer_learning.py"):
        run_task(script, "--quick", "--augment-shift", "1", "--device", "cpu", "--data-dir", mnist_root,
                 "--out-dir", out)
    res = json.loads((out / "results" / "task5_transfer_learning_augmented.json").read_text())
    assert res["config"]["augment_shift"] == 1 and res["final"]["encoder_started_from_ae"] is True
    assert (out / "figures" / "task5_transfer_learning_augmented_vs_task4.png").exists()
    assert (out / "results" / "task5_transfer_learning.json").read_bytes() == plain
