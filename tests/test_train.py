import pytest
import torch
from torch import nn

from conftest import run_task, synthetic_digits
from models import MLP, Decoder, Encoder
from runs import CheckpointError, load_checkpoint, save_checkpoint
from train import fit, objective_loss, seed_everything


def _steps(model, objective, x, y, n=30):
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    model.train()
    losses = []
    for _ in range(n):
        loss = objective_loss(objective, model(x), x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("objective", ["l1", "ce"])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(objective):
    seed_everything(0)
    images, labels = synthetic_digits(32, seed=0)
    x, y = torch.from_numpy(images).float().div(255).unsqueeze(1), torch.from_numpy(labels).long()
    head = Decoder(12, (8, 16)) if objective == "l1" else MLP(12)
    losses = _steps(nn.Sequential(Encoder(12, (8, 16)), head), objective, x, y)
    assert losses[-1] < 0.8 * losses[0]


def test_seeding_is_deterministic():
    runs = []
    for _ in range(2):
        seed_everything(3)
        x = torch.rand(16, 1, 28, 28)
        runs.append(_steps(nn.Sequential(Encoder(4, (8, 16)), MLP(4)), "ce", x, torch.arange(16) % 10, n=3))
    assert runs[0] == runs[1]


def test_frozen_encoder_stays_bit_identical():
    gen = seed_everything(0)
    enc, dec = Encoder(12, (8, 16)), Decoder(12, (8, 16))
    enc.requires_grad_(False)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    data = (torch.rand(64, 1, 28, 28), torch.zeros(64, dtype=torch.long))
    dec_before = [p.clone() for p in dec.parameters()]
    fit(nn.Sequential(enc, dec), data, data, objective="l1", epochs=2, batch_size=16, lr=1e-2,
        device=torch.device("cpu"), generator=gen, params=dec.parameters(), frozen=(enc,), log=lambda s: None)
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())  # BN statistics too
    assert any(not torch.equal(a, b) for a, b in zip(dec_before, dec.parameters()))  # the decoder did train


def test_fit_history_has_what_the_plots_need():
    gen = seed_everything(0)
    data = (torch.rand(40, 1, 28, 28), torch.arange(40) % 10)
    hist = fit(nn.Sequential(Encoder(12, (8, 16)), MLP(12)), data, data, objective="ce", epochs=3, batch_size=8,
               lr=1e-3, device=torch.device("cpu"), generator=gen, eval_train=True, schedule="constant",
               log=lambda s: None)
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    assert {"train_loss", "test_loss", "train_accuracy", "test_accuracy", "seconds"} <= hist[0].keys()
    assert hist[0]["seconds"] < hist[1]["seconds"] < hist[2]["seconds"]


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    enc = Encoder(12, (8, 16))
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"encoder": enc}, {"latent_dim": 12, "channels": [8, 16], "fc": True})
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind
    ckpt = load_checkpoint(path, {"latent_dim": 12})
    restored = Encoder(12, (8, 16))
    restored.load_state_dict(ckpt["state_dict"]["encoder"])
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), restored.state_dict().values()))
    with pytest.raises(CheckpointError, match="latent_dim=12, expected 8"):
        load_checkpoint(path, {"latent_dim": 8})
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "expected a positive integer"),
    (["--batch-size", "-4"], "expected a positive integer"),
    (["--lr", "abc"], "expected a positive number"),
    (["--device", "tpu"], "invalid choice"),
])
def test_argparse_rejects_bad_values(flags, message):
    out = run_task("task2_classifier.py", *flags, check=False)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_help_states_every_default():
    out = run_task("task1_autoencoder.py", "--help")
    for flag in ("--epochs", "--batch-size", "--lr", "--seed", "--device", "--data-dir", "--quick", "--latent-dim"):
        assert flag in out.stdout
    assert out.stdout.count("default") >= 10


def test_device_choice():
    from runs import UserError
    from train import pick_device

    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in {"cuda", "mps", "cpu"}
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="not available"):
            pick_device("cuda")
