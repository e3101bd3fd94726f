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
comparison in Task 1.

``load_pretrained(path)`` rebuilds the trained modules of a checkpoint (e.g. in a notebook);
``save_checkpoint`` / ``load_checkpoint`` are the tasks' writer and checked reader.
"""
from pathlib import Path

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

    def __init__(self, latent_dim: int = 12, channels: tuple[int, int] = (16, 32), fc: bool = True):
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

    def __init__(self, latent_dim: int = 12, channels: tuple[int, int] = (16, 32), fc: bool = True):
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
class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the one-line message names the file and says what to do."""


class CheckpointMissing(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


def architecture(modules: dict[str, nn.Module]) -> dict:
    """The one architecture record of a checkpoint, read off its modules: latent_dim, channels, fc
    (encoder/decoder) and hidden (MLP). Building each module again from it gives the same shapes."""
    arch = {}
    for m in modules.values():
        if isinstance(m, (Encoder, Decoder)):
            arch |= {"latent_dim": m.latent_dim, "channels": list(m.channels), "fc": m.fc}
        elif isinstance(m, MLP):
            arch |= {"latent_dim": m.in_dim, "hidden": m.hidden}
    return arch


BUILD = {  # module name in a checkpoint -> a fresh module of the recorded architecture
    "encoder": lambda a: Encoder(a["latent_dim"], tuple(a["channels"]), a["fc"]),
    "decoder": lambda a: Decoder(a["latent_dim"], tuple(a["channels"]), a["fc"]),
    "mlp": lambda a: MLP(a["latent_dim"], a.get("hidden", 128)),
}


def save_checkpoint(path, modules: dict[str, nn.Module], run_id: str | None = None, **extra) -> None:
    """{'config': architecture(modules) | extra, 'state_dict': {name: state_dict}, 'run_id': run_id}."""
    state = {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in modules.items()}
    with open(path, "wb") as f:  # a file object: the same bytes for the same weights
        torch.save({"config": architecture(modules) | extra, "state_dict": state, "run_id": run_id}, f)


def load_checkpoint(path, expect: dict | None = None, fix: str = "rerun the task that wrote it"):
    """(modules, checkpoint): the modules of a checkpoint rebuilt from its architecture record, on
    the CPU and in eval mode, and the raw checkpoint (its 'config' and 'run_id'). The keys of
    `expect` must match the record. Anything wrong raises CheckpointError, one sentence naming the
    file and ending in `fix` (CheckpointMissing, also a FileNotFoundError, if there is no file)."""
    path = Path(path)

    def fail(problem: str, cls=CheckpointError):
        return cls(f"checkpoint {path} {problem}; {fix}.")

    if not path.is_file():
        raise fail("not found", CheckpointMissing)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise fail(f"could not be read by torch.load ({type(exc).__name__})") from None
    arch, states = (ckpt.get("config"), ckpt.get("state_dict")) if isinstance(ckpt, dict) else (None, None)
    if not isinstance(arch, dict) or not isinstance(states, dict) or not states:
        raise fail("is not a dict with a 'config' and a 'state_dict' of named modules")
    for key, value in (expect or {}).items():
        if arch.get(key) != value:
            raise fail(f"was built with {key}={arch.get(key)}, expected {value}")
    modules = {}
    for name, state in states.items():
        if name not in BUILD:
            raise fail(f"holds an unknown module {name!r} (expected one of {', '.join(BUILD)})")
        try:
            module = BUILD[name](arch)
            module.load_state_dict(state)
        except KeyError as exc:
            raise fail(f"has no {exc} in its config, needed to build the {name}") from None
        except Exception as exc:  # a config that builds nothing; missing, unexpected or wrongly shaped weights
            lines = str(exc).splitlines()
            detail = "; ".join(line.strip().rstrip(". ") for line in lines[1:3] or lines[:1])
            raise fail(f"has a {name} config or weights that do not fit ({detail})") from None
        if not all(v.isfinite().all() for v in module.state_dict().values() if v.is_floating_point()):
            raise fail(f"has non-finite {name} weights")
        modules[name] = module.eval()
    return modules, ckpt


def load_pretrained(path) -> dict[str, nn.Module]:
    """The trained modules of a checkpoint (the notebook's entry point), e.g. {'encoder', 'decoder'}
    for checkpoints/task1_autoencoder.pt, {'encoder', 'mlp'} for task2_classifier.pt and
    {'decoder'} for task3_classifier_decoding.pt; in eval mode, on the CPU."""
    return load_checkpoint(path)[0]
