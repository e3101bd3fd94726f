import math

import pytest
import torch
from torch import nn

import train
from conftest import synthetic_digits
from models import MLP, CheckpointError, Decoder, Encoder, load_checkpoint, save_checkpoint
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
        device=torch.device("cpu"), generator=gen, frozen=(enc,), log=lambda s: None)
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
    save_checkpoint(path, {"encoder": enc}, "run-1")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    modules, ckpt = load_checkpoint(path, {"latent_dim": 12})
    assert ckpt["run_id"] == "run-1" and ckpt["config"] == {"latent_dim": 12, "channels": [8, 16], "fc": True}
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), modules["encoder"].state_dict().values()))
    with pytest.raises(CheckpointError, match="latent_dim=12, expected 8"):
        load_checkpoint(path, {"latent_dim": 8})
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_help_states_every_default(capsys):
    import task1_autoencoder

    with pytest.raises(SystemExit):
        task1_autoencoder.parse_args(["--help"])
    out = capsys.readouterr().out
    for flag in ("--epochs", "--batch-size", "--lr", "--seed", "--device", "--data-dir", "--quick", "--latent-dim"):
        assert flag in out
    assert out.count("default") >= 10


def _lr_trace(monkeypatch, **fit_kwargs) -> list[float]:
    """The learning rate of every optimiser step fit() takes (read by a step pre-hook)."""
    trace, make = [], train.make_optimizer

    def recording(*args, **kwargs):
        opt = make(*args, **kwargs)
        opt.register_step_pre_hook(lambda o, a, k: trace.append(o.param_groups[0]["lr"]))
        return opt

    monkeypatch.setattr(train, "make_optimizer", recording)
    data = (torch.rand(40, 1, 28, 28), torch.arange(40) % 10)
    fit(nn.Sequential(Encoder(4, (4, 8)), MLP(4, 8)), data, data, objective="ce", batch_size=8,
        device=torch.device("cpu"), generator=seed_everything(0), log=lambda s: None, **fit_kwargs)
    return trace


def test_onecycle_schedule_is_the_stated_one(monkeypatch):
    """5 epochs of 5 steps, peak 3e-3: cosine warm-up from peak/25 over the first 20% of the steps, then
    cosine annealing to peak/25/1e4 at the last step (OneCycleLR's formula, computed here by hand)."""
    peak, n = 3e-3, 25
    trace = _lr_trace(monkeypatch, epochs=5, lr=peak, schedule="onecycle")
    start, end, warm = peak / 25, peak / 25 / 1e4, 0.2 * n - 1

    def cos(a, b, t):
        return b + (a - b) / 2 * (1 + math.cos(math.pi * t))

    expected = [cos(start, peak, i / warm) if i <= warm else cos(peak, end, (i - warm) / (n - 1 - warm)) for i in range(n)]
    assert trace == pytest.approx(expected, rel=1e-9)
    assert max(trace) == pytest.approx(peak) and trace[-1] < peak * 1e-4


def test_constant_schedule_keeps_the_learning_rate(monkeypatch):
    assert _lr_trace(monkeypatch, epochs=3, lr=1e-3, schedule="constant") == [1e-3] * 15


def test_device_choice():
    from runs import UserError
    from train import pick_device

    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in {"cuda", "mps", "cpu"}
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="not available"):
            pick_device("cuda")
