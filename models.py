"""The three building blocks of every task: Encoder, Decoder and MLP.

Architecture (d = 12 by default)::

    Encoder  1x28x28 -> conv3x3  s1 ->  32x28x28   conv blocks: Conv 3x3 (no bias)
                     -> conv3x3  s2 ->  32x14x14                 + BatchNorm + ReLU
                     -> conv3x3  s1 ->  64x14x14
                     -> conv3x3  s2 ->  64x7x7     (coarsest level, 3136 numbers)
                     -> FC 3136 -> d               (linear latent, no non-linearity)
    Decoder  d -> FC -> 64x7x7 -> convT4x4 s2 -> 32x14x14 -> conv3x3 s1 -> 32x14x14
               -> convT4x4 s2 -> 32x28x28 -> conv3x3 s1 -> 1x28x28 -> sigmoid
    MLP      d -> 128 -> ReLU -> dropout -> 10 logits   (two linear layers)

Four 3x3 conv layers, two of them strided (28 -> 14 -> 7), downsample instead of max-pooling
so that the network learns how to subsample; the channel count doubles when the resolution
halves (32 -> 64). ReLU is the non-linearity and BatchNorm makes the training fast and stable.
The decoder mirrors the encoder with 4x4 transposed convolutions (stride 2, no checkerboard
overlap problem since 4 is divisible by 2) and ends in a sigmoid so that its output lies in
[0, 1] like the pixels.

Why an FC layer at the coarsest level: a 64x7x7 map is far from d = 12 numbers, and reaching
12 with convolutions alone needs more strided layers (7 -> 4 -> 2, a 3x2x2 code) whose every
latent number sees only a part of the digit. The FC layer lets each of the d numbers depend on
the whole digit, which is what a 12-number summary needs. ``Encoder(fc=False)`` is that
conv-only variant (d must then be a multiple of 4), kept for the comparison in Task 1.
"""
import torch
from torch import nn


def conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """3x3 convolution + BatchNorm + ReLU; stride 2 halves the resolution (padding 1)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def up_block(c_in: int, c_out: int, kernel: int = 4, padding: int = 1) -> nn.Sequential:
    """Transposed convolution with stride 2 (doubles the resolution) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, kernel, stride=2, padding=padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Encoder(nn.Module):
    """Image (B, 1, 28, 28) in [0, 1] -> latent code (B, latent_dim)."""

    def __init__(self, latent_dim: int = 12, channels: tuple[int, int] = (32, 64), fc: bool = True):
        super().__init__()
        c1, c2 = channels
        self.latent_dim, self.channels, self.fc = latent_dim, tuple(channels), fc
        self.features = nn.Sequential(
            conv_block(1, c1, 1),   # 28x28
            conv_block(c1, c1, 2),  # 14x14
            conv_block(c1, c2, 1),  # 14x14
            conv_block(c2, c2, 2),  # 7x7, the coarsest level
        )
        if fc:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 7 * 7, latent_dim))
        else:
            if latent_dim % 4:
                raise ValueError(f"the conv-only encoder needs latent_dim divisible by 4, got {latent_dim}")
            self.head = nn.Sequential(
                conv_block(c2, c2, 2),                                     # 4x4
                nn.Conv2d(c2, latent_dim // 4, 3, stride=2, padding=1),   # (d/4)x2x2
                nn.Flatten(),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Decoder(nn.Module):
    """Latent code (B, latent_dim) -> image (B, 1, 28, 28) in [0, 1]; mirrors the Encoder."""

    def __init__(self, latent_dim: int = 12, channels: tuple[int, int] = (32, 64), fc: bool = True):
        super().__init__()
        c1, c2 = channels
        self.latent_dim, self.channels, self.fc = latent_dim, tuple(channels), fc
        if fc:
            self.head = nn.Sequential(
                nn.Linear(latent_dim, c2 * 7 * 7), nn.ReLU(inplace=True), nn.Unflatten(1, (c2, 7, 7))
            )
        else:
            if latent_dim % 4:
                raise ValueError(f"the conv-only decoder needs latent_dim divisible by 4, got {latent_dim}")
            self.head = nn.Sequential(
                nn.Unflatten(1, (latent_dim // 4, 2, 2)),
                up_block(latent_dim // 4, c2),            # 4x4
                up_block(c2, c2, kernel=3, padding=1),     # 7x7
            )
        self.features = nn.Sequential(
            up_block(c2, c1),        # 14x14
            conv_block(c1, c1, 1),
            up_block(c1, c1),        # 28x28
            nn.Conv2d(c1, 1, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.features(self.head(z))


class MLP(nn.Module):
    """Two-layer perceptron: latent code (B, in_dim) -> class logits (B, num_classes)."""

    def __init__(self, in_dim: int = 12, hidden: int = 128, num_classes: int = 10, dropout: float = 0.2):
        super().__init__()
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
