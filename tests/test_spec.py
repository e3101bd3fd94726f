"""The exercise's specification (../shared/exercise/ex2.md), pinned: each test fails the moment one
requirement is broken (the L1 loss, d = 12 with an FC layer, the shared encoder architecture, the
two-layer MLP, Task 3's decoder and frozen encoder, the 100 examples, Task 5's initialisation)."""
import json
from unittest import mock

import pytest
import torch
from torch import nn

import task1_autoencoder
import task2_classifier
import fewshot
import task4_few_shot
from conftest import FIT_CALLS
from data import load_mnist
from models import MLP, Decoder, Encoder, load_checkpoint
from train import objective_loss, seed_everything


def _layout(module: nn.Module) -> list[tuple[str, type, tuple]]:
    """Every submodule's class and every parameter's shape, in order."""
    return [(name, type(m), tuple(tuple(p.shape) for p in m.parameters(recurse=False)))
            for name, m in module.named_modules()]


# ----------------------------------------------------------------------------- Task 1: mean L1, d ~ 12, FC
def test_l1_objective_is_the_mean_absolute_error_against_the_input():
    x = torch.tensor([0.0, 0.5, 1.0, 0.25]).reshape(1, 1, 2, 2)
    out = torch.tensor([0.5, 0.5, 0.0, 1.0]).reshape(1, 1, 2, 2)
    # by hand: |0.5 - 0| + |0.5 - 0.5| + |0 - 1| + |1 - 0.25| = 0.5 + 0 + 1 + 0.75 = 2.25; / 4 pixels = 0.5625
    assert objective_loss("l1", out, x, None).item() == pytest.approx(0.5625)


def test_task1_trains_and_reports_with_the_l1_objective(mnist_root, tmp_path):
    seen = []
    real_fit = task1_autoencoder.fit

    def spy(*args, **kwargs):
        seen.append(kwargs["objective"])
        return real_fit(*args, **kwargs)

    with mock.patch.object(task1_autoencoder, "fit", spy):
        task1_autoencoder.main(["--quick", "--explore-epochs", "0", "--device", "cpu", "--data-dir", str(mnist_root),
                                "--out-dir", str(tmp_path)])
    assert seen == ["l1"]
    # the reported test L1 is the mean absolute error of the saved AE, computed here by hand
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "task1_autoencoder.pt")[1]
    enc, dec = Encoder(**ckpt["config"]), Decoder(**ckpt["config"])
    enc.load_state_dict(ckpt["state_dict"]["encoder"])
    dec.load_state_dict(ckpt["state_dict"]["decoder"])
    x, _ = load_mnist(mnist_root, train=False)
    with torch.no_grad():
        by_hand = (dec.eval()(enc.eval()(x)) - x).abs().mean().item()
    final = json.loads((tmp_path / "results" / "task1_autoencoder.json").read_text())["final"]
    assert final["test_l1"] == pytest.approx(by_hand, rel=1e-5)


def test_latent_is_12_by_default_with_an_fc_layer_at_the_coarsest_level():
    args = task1_autoencoder.parse_args([])
    assert args.latent_dim == 12
    encoder = task1_autoencoder.build(args.latent_dim, args.channels)[0]
    x = torch.rand(3, 1, 28, 28)
    coarsest = encoder.features(x)
    assert coarsest.shape[-2:] == (7, 7)  # the coarsest level: 28 -> 14 -> 7
    linears = [m for m in encoder.head.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1 and linears[0].in_features == coarsest[0].numel() and linears[0].out_features == 12
    assert encoder(x).shape == (3, 12)
    assert Encoder()(x).shape == (3, 12)


# ----------------------------------------------------------------------------- Task 2: same encoder + 2-layer MLP
def test_classifier_encoder_has_exactly_task1_encoder_architecture():
    a1, a2 = task1_autoencoder.parse_args([]), task2_classifier.parse_args([])
    ae_encoder = task1_autoencoder.build(a1.latent_dim, a1.channels)[0]
    clf_encoder = task2_classifier.build_classifier(a2.latent_dim, a2.channels, a2.hidden)[0]
    assert _layout(clf_encoder) == _layout(ae_encoder)


def test_mlp_has_two_linear_layers():
    a2 = task2_classifier.parse_args([])
    head = task2_classifier.build_classifier(a2.latent_dim, a2.channels, a2.hidden)[1]
    assert isinstance(head, MLP)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 2 and linears[0].in_features == 12 and linears[-1].out_features == 10


# ----------------------------------------------------------------------------- Task 3: Task 1's decoder, frozen encoder
def test_task3_decoder_has_task1_decoder_architecture(chain):
    out, _ = chain
    t1 = load_checkpoint(out / "checkpoints" / "task1_autoencoder.pt")[1]["state_dict"]["decoder"]
    t3 = load_checkpoint(out / "checkpoints" / "task3_classifier_decoding.pt")[1]["state_dict"]["decoder"]
    assert {k: v.shape for k, v in t3.items()} == {k: v.shape for k, v in t1.items()}  # weights and BN buffers


def test_task3_trains_only_the_decoder_on_the_frozen_classifier_encoder(chain):
    out, _ = chain
    clf = load_checkpoint(out / "checkpoints" / "task2_classifier.pt")[1]["state_dict"]["encoder"]
    task3_call = FIT_CALLS["task3_classifier_decoding"][0]  # then the control on the AE encoder
    assert task3_call["params"] == task3_call["decoder"]  # the optimiser holds the decoder's parameters only
    assert task3_call["encoder"] in task3_call["frozen"]
    after = task3_call["encoder"].state_dict()
    assert all(torch.equal(v, after[k].cpu()) for k, v in clf.items())  # bit-identical, BatchNorm statistics too
    assert json.loads((out / "results" / "task3_classifier_decoding.json").read_text())["final"]["encoder_unchanged"]


# ----------------------------------------------------------------------------- Tasks 4, 5: indices 0..99, AE init
@pytest.fixture(scope="module")
def few_shot_runs(chain):
    """The quick chain's Tasks 4 and 5, with the start of every few-shot fit() recorded."""
    return chain[0], FIT_CALLS["task4_few_shot"], FIT_CALLS["task5_transfer_learning"]


def test_few_shot_set_is_training_indices_0_to_99_in_tasks_4_and_5(few_shot_runs, mnist_root):
    _, t4, t5 = few_shot_runs
    x_train, _ = load_mnist(mnist_root, train=True)
    expected = x_train[torch.arange(100)]
    assert t4 and t5
    for call in t4 + t5:
        assert torch.equal(call["x"], expected)


def test_task5_encoder_starts_from_task1_and_its_mlp_starts_fresh(few_shot_runs):
    out, _, t5 = few_shot_runs
    ae = load_checkpoint(out / "checkpoints" / "task1_autoencoder.pt")[1]["state_dict"]["encoder"]
    a2 = task2_classifier.parse_args([])
    main_calls = [c for c in t5 if c["latent_dim"] == 12]
    assert main_calls
    first_seed = task4_few_shot.parse_args(["--quick"]).seed
    seed_everything(first_seed)
    fresh_mlp = task2_classifier.build_classifier(a2.latent_dim, a2.channels, a2.hidden)[1].state_dict()
    clf_mlp = load_checkpoint(out / "checkpoints" / "task2_classifier.pt")[1]["state_dict"]["mlp"]
    args = task4_few_shot.parse_args(["--quick"])
    first_calls = {}  # the fit() of every (recipe, seed)
    for c in main_calls:
        first_calls.setdefault(c["label"], c)
    expected = {f"transfer: {r.name}, seed {seed} " for r in fewshot.recipes_for("autoencoder", args)
                for seed in range(args.seed, args.seed + args.seeds)}
    assert expected <= first_calls.keys()
    for label in expected:
        assert all(torch.equal(first_calls[label]["encoder"][k], v) for k, v in ae.items()), label
    first = main_calls[0]
    assert all(torch.equal(first["mlp"][k], v) for k, v in fresh_mlp.items())  # freshly initialised (seeded) MLP
    assert not all(torch.equal(first["mlp"][k], v) for k, v in clf_mlp.items())  # not Task 2's trained MLP


def test_task4_encoder_starts_random_and_trains(few_shot_runs):
    out, t4, _ = few_shot_runs
    ae = load_checkpoint(out / "checkpoints" / "task1_autoencoder.pt")[1]["state_dict"]["encoder"]
    for call in t4:
        assert call["encoder_params"] <= call["trainable"]  # from scratch: the encoder trains too
        assert not all(torch.equal(call["encoder"][k], v) for k, v in ae.items())
