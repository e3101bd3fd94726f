import pytest
import torch

from conftest import REPO
from models import MLP, Decoder, Encoder, count_parameters, load_pretrained


@pytest.mark.parametrize("fc", [True, False])
@pytest.mark.parametrize("d", [4, 12, 32])
def test_shapes_and_ranges(fc, d):
    enc, dec = Encoder(d, (8, 16), fc=fc), Decoder(d, (8, 16), fc=fc)
    x = torch.rand(5, 1, 28, 28)
    z = enc(x)
    assert z.shape == (5, d)  # the latent has d dims
    y = dec(z)
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 1  # sigmoid output, like the pixels
    assert MLP(d)(z).shape == (5, 10)


def test_default_latent_is_12_and_conv_only_needs_multiple_of_4():
    assert Encoder()(torch.rand(2, 1, 28, 28)).shape == (2, 12)
    with pytest.raises(ValueError, match="divisible by 4"):
        Encoder(10, fc=False)


def test_parameter_count_depends_on_sizes():
    assert count_parameters(Encoder(12, (16, 32))) < count_parameters(Encoder(12, (32, 64)))


def test_import_has_no_side_effects(tmp_path, monkeypatch, capsys):
    import runpy

    monkeypatch.chdir(tmp_path)
    names = runpy.run_path(str(REPO / "models.py"), run_name="models_again")  # executes the module's code afresh
    assert {"Encoder", "Decoder", "MLP", "load_pretrained"} <= names.keys()
    assert capsys.readouterr() == ("", "") and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- defaults and load_pretrained
def test_defaults_are_the_architecture_the_tasks_train():
    import task1_autoencoder
    import task2_classifier

    for task in (task1_autoencoder, task2_classifier):
        args = task.parse_args([])
        assert Encoder().channels == Decoder().channels == tuple(args.channels) == (16, 32)
        assert Encoder().latent_dim == Decoder().latent_dim == args.latent_dim == 12
    assert Encoder().fc and Decoder().fc
    mlp = MLP()
    assert mlp.net[0].in_features == 12 and mlp.net[0].out_features == task2_classifier.parse_args([]).hidden == 128
    assert mlp.net[2].p == 0.2


def _trained_like(module):
    """Perturb every float tensor (weights and BatchNorm statistics) so a round-trip is not trivially default."""
    with torch.no_grad():
        for v in module.state_dict().values():
            if v.is_floating_point():
                v.add_(torch.randn_like(v) * 0.1)
    return module


@pytest.mark.parametrize("names", [("encoder", "decoder"), ("encoder", "mlp"), ("decoder",)])
def test_load_pretrained_round_trips_a_saved_checkpoint(tmp_path, names):
    from models import save_checkpoint  # the tasks' own checkpoint writer

    build = {"encoder": lambda: Encoder(8, (8, 16)), "decoder": lambda: Decoder(8, (8, 16)), "mlp": lambda: MLP(8, 32)}
    saved = {name: _trained_like(build[name]()) for name in names}
    save_checkpoint(tmp_path / "m.pt", saved)
    loaded = load_pretrained(tmp_path / "m.pt")
    assert list(loaded) == list(names)
    for name, module in loaded.items():
        assert type(module) is type(saved[name]) and not module.training
        assert all(not m.training for m in module.modules())
        for k, v in saved[name].state_dict().items():
            assert torch.equal(module.state_dict()[k], v), k
    if "encoder" in loaded:
        assert loaded["encoder"].channels == (8, 16) and loaded["encoder"].latent_dim == 8
        x = torch.rand(3, 1, 28, 28)
        assert torch.equal(loaded["encoder"](x), saved["encoder"].eval()(x))


def test_load_pretrained_ignores_extra_top_level_keys_and_defaults_hidden(tmp_path):
    enc, mlp = Encoder(4, (8, 16)), MLP(4)
    torch.save({"config": {"latent_dim": 4, "channels": [8, 16], "fc": True}, "run_id": "abc",
                "state_dict": {"encoder": enc.state_dict(), "mlp": mlp.state_dict()}}, tmp_path / "c.pt")
    loaded = load_pretrained(tmp_path / "c.pt")
    assert loaded["mlp"].net[0].out_features == 128


def _one_sentence_naming(exc_info, path):
    msg = str(exc_info.value)
    assert str(path) in msg
    assert "\n" not in msg and msg.endswith(".") and msg.count(". ") == 0, msg


def _save(path, obj):
    torch.save(obj, path)
    return path


def _good(d=4):
    return {"config": {"latent_dim": d, "channels": [8, 16], "fc": True},
            "state_dict": {"encoder": Encoder(d, (8, 16)).state_dict()}}


@pytest.mark.parametrize("case, match", [
    ("no_state_dict", "not a dict with a .config. and a .state_dict."),
    ("missing_weight", 'Missing key\\(s\\) in state_dict: "features.0.0.weight"'),
    ("missing_config_key", "no .channels. in its config"),
    ("not_a_dict", "not a dict"),
    ("unknown_module", "unknown module 'head'"),
    ("wrong_shape", "size mismatch for head.1.weight"),
    ("non_finite", "non-finite"),
    ("garbage", "could not be read"),
])
def test_load_pretrained_rejects_malformed_checkpoints(tmp_path, case, match):
    ckpt, path = _good(), tmp_path / f"{case}.pt"
    if case == "no_state_dict":
        del ckpt["state_dict"]
    elif case == "missing_weight":
        del ckpt["state_dict"]["encoder"]["features.0.0.weight"]
    elif case == "missing_config_key":
        del ckpt["config"]["channels"]
    elif case == "not_a_dict":
        ckpt = [ckpt]
    elif case == "unknown_module":
        ckpt["state_dict"]["head"] = {}
    elif case == "wrong_shape":
        ckpt["config"]["latent_dim"] = 8
    elif case == "non_finite":
        ckpt["state_dict"]["encoder"]["head.1.bias"][0] = float("nan")
    if case == "garbage":
        path.write_bytes(b"not a checkpoint")
    else:
        _save(path, ckpt)
    with pytest.raises(ValueError, match=match) as exc_info:
        load_pretrained(path)
    _one_sentence_naming(exc_info, path)


def test_load_pretrained_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_pretrained(tmp_path / "nope.pt")
