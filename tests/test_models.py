import subprocess
import sys

import pytest
import torch

from conftest import REPO
from models import MLP, Decoder, Encoder, count_parameters


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


def test_import_has_no_side_effects(tmp_path):
    out = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                          "from models import Encoder, Decoder, MLP", str(REPO)],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout == "" and out.stderr == ""
    assert list(tmp_path.iterdir()) == []
