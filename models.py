"""The three building blocks of every task: Encoder, Decoder and MLP, and ``load_pretrained``.

Architecture (the defaults, which every task trains: channels 16/32, d = 12)::

    Encoder  1x28x28 -> conv3x3  s1 ->  16x28x28   conv blocks: Conv 3x3 (no bias)
                     -> conv3x3  s2 ->  16x14x14                 + BatchNorm + ReLU
                     -> conv3x3  s1 ->  32x14x14
                     -> conv3x3  s2 ->  32x7x7     (coarsest level, 1568 numbers)
                     -> FC 1568 -> d               (linear latent, no non-linearity)
    Decoder  d -> FC d -> 1568 -> ReLU -> 32x7x7
               -> convT4x4 s2 -> 16x14x14 -> conv3x3 s1 -> 16x14x14
               -> convT4x4 s2 -> 16x28x28 -> conv3x3 s1 ->  1x28x28 -> sigmoid
    MLP      d -> 128 -> ReLU -> dropout 0.2 -> 10 logits   (two linear layers)

Four 3x3 conv layers, two of them strided (28 -> 14 -> 7), downsample instead of max-pooling
so that the network learns how to subsample; the channel count doubles when the resolution
halves (16 -> 32). ReLU is the non-linearity and BatchNorm makes the training fast and stable.
The decoder mirrors the encoder with 4x4 transposed convolutions (stride 2, no checkerboard
overlap problem since 4 is divisible by 2) and ends in a sigmoid so that its output lies in
[0, 1] like the pixels.

Why an FC layer at the coarsest level: a 32x7x7 map is far from d = 12 numbers. Reaching 12
with convolutions alone needs two more strided layers (7 -> 4 -> 2, a 3x2x2 code): the same three
filters read at four places (each cell's receptive field, 37x37 pixels, already covers most of
the digit). The FC layer instead gives each of the d numbers its own weights over the whole map.
``Encoder(fc=False)`` is that conv-only variant (d must then be a multiple of 4), kept for the
comparison in Task 1; ``extra_channels=60`` widens its two extra layers to the FC model's parameter count.

``load_pretrained(path)`` rebuilds the trained modules of a checkpoint (in a notebook, or in a task
that builds on another); train.save_checkpoint writes one.
"""
from pathlib import Path

import torch
from torch import nn


def conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """3x3 convolution + BatchNorm + ReLU; stride 2 halves the resolution (28 -> 14 -> 7 -> 4 with padding 1)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def up_block(c_in: int, c_out: int, kernel: int = 4, padding: int = 1) -> nn.Sequential:
    """Transposed convolution with stride 2 + BatchNorm + ReLU: kernel 4 doubles the resolution
    (7 -> 14 -> 28), kernel 3 with padding 1 gives 2k - 1 (4 -> 7, in the conv-only decoder)."""
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, kernel, stride=2, padding=padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Encoder(nn.Module):
    """Image (B, 1, 28, 28) in [0, 1] -> latent code (B, latent_dim)."""

    def __init__(self, latent_dim: int = 12, channels: tuple[int, int] = (16, 32), fc: bool = True,
                 extra_channels: int | None = None):
        super().__init__()
        c1, c2 = channels
        c3 = extra_channels or c2  # the conv-only variant's two extra layers
        self.latent_dim, self.channels, self.fc, self.extra_channels = latent_dim, tuple(channels), fc, c3
        self.features = nn.Sequential(
            conv_block(1, c1, 1),   # 28x28
            conv_block(c1, c1, 2),  # 14x14
            conv_block(c1, c2, 1),  # 14x14
            conv_block(c2, c2, 2),  # 7x7, the coarsest level
        )
        if fc:
            self.to_latent = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 7 * 7, latent_dim))
        else:
            if latent_dim % 4:
                raise ValueError(f"the conv-only encoder needs latent_dim divisible by 4, got {latent_dim}")
            self.to_latent = nn.Sequential(
                conv_block(c2, c3, 2),                                     # 4x4
                nn.Conv2d(c3, latent_dim // 4, 3, stride=2, padding=1),   # (d/4)x2x2
                nn.Flatten(),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.features(x))


class Decoder(nn.Module):
    """Latent code (B, latent_dim) -> image (B, 1, 28, 28) in [0, 1]; mirrors the Encoder."""

    def __init__(self, latent_dim: int = 12, channels: tuple[int, int] = (16, 32), fc: bool = True,
                 extra_channels: int | None = None):
        super().__init__()
        c1, c2 = channels
        c3 = extra_channels or c2  # the conv-only variant's two extra layers
        self.latent_dim, self.channels, self.fc, self.extra_channels = latent_dim, tuple(channels), fc, c3
        if fc:
            self.from_latent = nn.Sequential(
                nn.Linear(latent_dim, c2 * 7 * 7), nn.ReLU(inplace=True), nn.Unflatten(1, (c2, 7, 7))
            )
        else:
            if latent_dim % 4:
                raise ValueError(f"the conv-only decoder needs latent_dim divisible by 4, got {latent_dim}")
            self.from_latent = nn.Sequential(
                nn.Unflatten(1, (latent_dim // 4, 2, 2)),
                up_block(latent_dim // 4, c3),            # 4x4
                up_block(c3, c2, kernel=3, padding=1),     # 7x7
            )
        self.features = nn.Sequential(
            up_block(c2, c1),        # 14x14
            conv_block(c1, c1, 1),
            up_block(c1, c1),        # 28x28
            nn.Conv2d(c1, 1, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.features(self.from_latent(z))


class MLP(nn.Module):
    """Two-layer perceptron: latent code (B, in_dim) -> class logits (B, num_classes)."""

    def __init__(self, in_dim: int = 12, hidden: int = 128, num_classes: int = 10, dropout: float = 0.2):
        super().__init__()
        self.in_dim, self.hidden = in_dim, hidden
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- checkpoints
class CheckpointError(RuntimeError):
    """A checkpoint that is missing or unusable; the message names the file and what to do."""


def architecture(modules: dict[str, nn.Module]) -> dict:
    """The sizes that rebuild the modules of a checkpoint: latent_dim, channels, fc and hidden."""
    arch = {}
    for m in modules.values():
        if isinstance(m, (Encoder, Decoder)):
            arch |= {"latent_dim": m.latent_dim, "channels": list(m.channels), "fc": m.fc,
                     "extra_channels": m.extra_channels}
        elif isinstance(m, MLP):
            arch |= {"latent_dim": m.in_dim, "hidden": m.hidden}
    return arch


BUILD = {  # module name in a checkpoint -> a fresh module of the recorded architecture
    "encoder": lambda a: Encoder(a["latent_dim"], tuple(a["channels"]), a["fc"], a.get("extra_channels")),
    "decoder": lambda a: Decoder(a["latent_dim"], tuple(a["channels"]), a["fc"], a.get("extra_channels")),
    "mlp": lambda a: MLP(a["latent_dim"], a["hidden"]),
}


def load_pretrained(path, fix: str = "rerun the task that wrote it") -> dict[str, nn.Module]:
    """The trained modules of a checkpoint ({'config': sizes, 'state_dict': {name: state_dict}}), rebuilt
    on the CPU in eval mode: {'encoder', 'decoder'} for checkpoints/task1_autoencoder.pt, {'encoder',
    'mlp'} for task2_classifier.pt, {'decoder'} for task3_classifier_decoding.pt. A missing or
    unusable file raises CheckpointError, one line that names it and ends in `fix`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; {fix}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        modules = {name: BUILD[name](ckpt["config"]) for name in ckpt["state_dict"]}
        for name, module in modules.items():
            module.load_state_dict(ckpt["state_dict"][name])
    except Exception as exc:  # not a torch file, another architecture, missing or misshapen weights
        detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise CheckpointError(f"checkpoint {path} does not fit this code ({type(exc).__name__}: {detail}); "
                              f"{fix}") from None
    return {name: module.eval() for name, module in modules.items()}
