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
        assert Encoder().latent_dim == Decoder().latent_dim == task.parse_args([]).latent_dim == 12
    assert Encoder().channels == Decoder().channels == (16, 32)
    assert Encoder().fc and Decoder().fc
    mlp = MLP()
    assert mlp.net[0].in_features == 12 and mlp.net[0].out_features == task2_classifier.parse_args([]).hidden == 128
    assert mlp.net[2].p == 0.2


def test_the_coarsest_level_is_32x7x7_and_the_fc_layers_sit_there():
    """The FC layer maps the 32x7x7 map to d in the encoder, and d back to 32x7x7 in the decoder."""
    enc, dec = Encoder(), Decoder()
    assert enc.features(torch.rand(2, 1, 28, 28)).shape == (2, 32, 7, 7)
    assert enc.to_latent[1].in_features == 32 * 7 * 7 and dec.from_latent[0].out_features == 32 * 7 * 7
    assert dec.features(dec.from_latent(torch.rand(2, 12))).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("names", [("encoder", "decoder"), ("encoder", "mlp"), ("decoder",)])
def test_load_pretrained_round_trips_a_saved_checkpoint(tmp_path, names):
    from train import save_checkpoint

    build = {"encoder": lambda: Encoder(8, (8, 16)), "decoder": lambda: Decoder(8, (8, 16)), "mlp": lambda: MLP(8, 32)}
    modules = {}
    for n in names:
        torch.manual_seed(len(modules))
        modules[n] = build[n]()
        with torch.no_grad():  # trained-like: BatchNorm statistics away from their defaults too
            for v in modules[n].state_dict().values():
                if v.is_floating_point():
                    v.add_(torch.randn_like(v) * 0.1)
    save_checkpoint(tmp_path / "c.pt", modules)
    loaded = load_pretrained(tmp_path / "c.pt")
    assert loaded.keys() == modules.keys()
    for n, m in loaded.items():
        assert not m.training and type(m) is type(modules[n])
        assert all(torch.equal(v, m.state_dict()[k]) for k, v in modules[n].state_dict().items())
