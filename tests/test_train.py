"""The training loop, evaluation, seeding, the device, checkpoints and the command line."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from conftest import synthetic_digits
from models import MLP, CheckpointError, Decoder, Encoder, load_pretrained
from train import UserError, evaluate, fit, pick_device, save_checkpoint, seed_everything

CPU = torch.device("cpu")


def _digits(n=40):
    images, labels = synthetic_digits(n, seed=0)
    return torch.from_numpy(images).float().div(255).unsqueeze(1), torch.from_numpy(labels).long()


def test_fit_lowers_the_loss_of_a_fixed_set():
    x, y = _digits(64)
    model = nn.Sequential(Encoder(12, (8, 16)), MLP(12))
    hist = fit(model, (x, y), (x, y), loss_fn=F.cross_entropy, epochs=6, batch_size=16, lr=3e-3, device=CPU,
               generator=seed_everything(0), schedule="constant")
    assert hist[-1]["train_loss"] < 0.9 * hist[0]["train_loss"] and hist[-1]["train_accuracy"] > 0.8


def test_seeding_is_deterministic():
    x, y = _digits()
    runs = []
    for _ in range(2):
        gen = seed_everything(3)
        model = nn.Sequential(Encoder(4, (8, 16)), MLP(4))
        runs.append(fit(model, (x, y), None, loss_fn=F.cross_entropy, epochs=2, batch_size=8, lr=1e-3, device=CPU,
                        generator=gen)[-1]["train_loss"])
    assert runs[0] == runs[1]


def test_fit_history_has_what_the_plots_need():
    x, y = _digits()
    hist = fit(nn.Sequential(Encoder(12, (8, 16)), MLP(12)), (x, y), (x, y), loss_fn=F.cross_entropy, epochs=3,
               batch_size=8, lr=1e-3, device=CPU, generator=seed_everything(0), schedule="constant")
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    assert {"train_loss", "test_loss", "train_accuracy", "test_accuracy", "seconds"} <= hist[0].keys()
    assert hist[0]["seconds"] < hist[1]["seconds"] < hist[2]["seconds"]
    # "train" is an eval-mode pass like the test one: on the same data the two are equal
    assert all(r["train_loss"] == r["test_loss"] and r["train_accuracy"] == r["test_accuracy"] for r in hist)


def test_train_curve_is_an_eval_mode_pass_over_the_first_10000_training_examples():
    x = torch.rand(10_050, 1, 28, 28)
    x[10_000:] = 5.0  # examples past the first 10,000 would change the number if they were counted
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(784, 784), nn.Unflatten(1, (1, 28, 28)))
    hist = fit(model, (x, x), None, loss_fn=F.l1_loss, epochs=1, batch_size=4096, lr=1e-3, device=CPU,
               generator=seed_everything(0))
    with torch.no_grad():
        by_hand = F.l1_loss(model.eval()(x[:10_000]), x[:10_000]).item()  # eval mode: dropout off
        everything = F.l1_loss(model(x), x).item()
    assert hist[-1]["train_loss"] == pytest.approx(by_hand, rel=1e-5)
    assert hist[-1]["train_loss"] != pytest.approx(everything, rel=1e-3)


def test_a_nan_loss_stops_in_one_line():
    x, y = _digits()
    with pytest.raises(UserError) as info:
        fit(nn.Sequential(Encoder(4, (8, 16)), MLP(4)), (x, y), None, loss_fn=lambda out, t: out.sum() * math.nan,
            epochs=1, batch_size=8, lr=1e-3, device=CPU, generator=seed_everything(0), schedule="constant")
    assert "\n" not in str(info.value) and "diverged" in str(info.value) and "epoch 1, step 1" in str(info.value)


def _lr_trace(**fit_kwargs) -> list[float]:
    """The learning rate of every optimiser step fit() takes (read by a global step pre-hook)."""
    trace = []
    handle = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: trace.append(opt.param_groups[0]["lr"]))
    try:
        x, y = _digits()
        fit(nn.Sequential(Encoder(4, (4, 8)), MLP(4, 8)), (x, y), None, loss_fn=F.cross_entropy, batch_size=8,
            device=CPU, generator=seed_everything(0), **fit_kwargs)
    finally:
        handle.remove()
    return trace


def test_onecycle_schedule_is_the_stated_one():
    """5 epochs of 5 steps, peak 3e-3: cosine warm-up from peak/25 over the first 20% of the steps, then
    cosine annealing to peak/25/1e4 at the last step (OneCycleLR's formula, computed here by hand)."""
    peak, n = 3e-3, 25
    trace = _lr_trace(epochs=5, lr=peak, schedule="onecycle")
    start, end, warm = peak / 25, peak / 25 / 1e4, 0.2 * n - 1

    def cos(a, b, t):
        return b + (a - b) / 2 * (1 + math.cos(math.pi * t))

    expected = [cos(start, peak, i / warm) if i <= warm else cos(peak, end, (i - warm) / (n - 1 - warm)) for i in range(n)]
    assert trace == pytest.approx(expected, rel=1e-9)
    assert max(trace) == pytest.approx(peak) and trace[-1] < peak * 1e-4


def test_constant_schedule_keeps_the_learning_rate():
    assert _lr_trace(epochs=3, lr=1e-3, schedule="constant") == [1e-3] * 15


def test_checkpoint_round_trip(tmp_path):
    enc, mlp = Encoder(12, (8, 16)), MLP(12, 32)
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"encoder": enc, "mlp": mlp})
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # written whole: no temporary file left
    assert torch.load(path, weights_only=True).keys() == {"config", "state_dict"}
    modules = load_pretrained(path)
    assert modules["encoder"].channels == (8, 16) and modules["mlp"].hidden == 32
    assert not modules["encoder"].training
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), modules["encoder"].state_dict().values()))


@pytest.mark.parametrize("content", [b"", b"not a torch file", None])
def test_an_unusable_checkpoint_ends_in_one_line_naming_it(tmp_path, content):
    path = tmp_path / "c.pt"
    if content is None:  # another architecture's weights under a config that does not build them
        save_checkpoint(path, {"decoder": Decoder(8)})
        ckpt = torch.load(path, weights_only=True)
        ckpt["config"]["latent_dim"] = 12
        torch.save(ckpt, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_pretrained(path, "run python tasks/x.py first")
    message = str(info.value)
    assert "\n" not in message and str(path) in message and message.endswith("run python tasks/x.py first")
    with pytest.raises(CheckpointError, match="not found"):
        load_pretrained(tmp_path / "missing.pt")


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in {"cuda", "mps", "cpu"}
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="not available"):
            pick_device("cuda")


def test_help_states_every_default(capsys):
    import task1_autoencoder

    with pytest.raises(SystemExit):
        task1_autoencoder.parse_args(["--help"])
    out = capsys.readouterr().out
    for flag in ("--epochs", "--batch-size", "--lr", "--seed", "--device", "--data-dir", "--quick", "--latent-dim"):
        assert flag in out
    assert out.count("default") >= 8  # every flag but --quick and --help


def test_evaluate_on_known_values():
    """Logits one-hot at position i % 3, label 0, batches of 200: accuracy 1/3 and cross-entropy
    log(e + 2) - 1/3 by hand; the L1 of inputs 0, 1, 2 against zeros, (0 + 1 + 2) / 3."""
    logits = F.one_hot(torch.arange(450) % 3, 3).float()
    result = evaluate(nn.Identity(), (logits, torch.zeros(450, dtype=torch.long)), F.cross_entropy, CPU)
    assert result["accuracy"] == pytest.approx(1 / 3)
    assert result["loss"] == pytest.approx(math.log(math.e + 2) - 1 / 3)
    x = (torch.arange(450) % 3).float()[:, None]
    assert evaluate(nn.Identity(), (x, torch.zeros_like(x)), F.l1_loss, CPU) == {"loss": pytest.approx(1.0)}
