"""Training on the 100 labelled images (Tasks 4 and 5): the recipes and their augmentation, one recipe
over several seeds, the summary over seeds, the choice on the validation split and what pre-training adds."""
import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from analysis import apply_batched
from data import few_shot, load_splits, split_validation
from models import MLP, Encoder
from train import evaluate, fit, seed_everything


@dataclass(frozen=True)
class Recipe:
    """How the classifier (Encoder + MLP) trains on the 100 images, with AdamW and batches of 10."""
    freeze_encoder: bool = False  # True: only the MLP trains; the encoder (BatchNorm statistics too) stays as it started
    augment: bool = False         # random affine: rotation +-15 deg, scale +-10 %, shift +-2 px, per image and step
    epochs: int = 30
    lr: float = 0.003
    schedule: str = "constant"    # or "onecycle" (train.fit)
    batch_size: int = 10


# The two schedules chosen on validation by tune.py (results/tuning.json): the plain one, and the long
# one-cycle schedule of the augmented recipe. replace(AUGMENTED, augment=False), "schedule only", tells
# the two parts of the augmented recipe's gain apart.
PLAIN = Recipe()
AUGMENTED = Recipe(augment=True, epochs=338, lr=0.001, schedule="onecycle")


def curve_every(recipe: Recipe) -> int:
    """How often the learning curves evaluate the test set: every 2 epochs with the constant schedule, 30 times
    over a one-cycle run."""
    return 2 if recipe.schedule == "constant" else max(1, recipe.epochs // 30)


def schedules(args) -> tuple[Recipe, Recipe]:
    """The plain recipe with the task's --epochs, --lr and --batch-size, and the augmented one (3 epochs with --quick)."""
    plain = replace(PLAIN, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size)
    return plain, replace(AUGMENTED, epochs=3) if args.quick else AUGMENTED


def random_affine(x: torch.Tensor, generator: torch.Generator | None = None, degrees: float = 15.0,
                  scale: float = 0.1, max_shift: float = 2.0) -> torch.Tensor:
    """Each image rotated by U(-degrees, degrees), scaled by U(1 - scale, 1 + scale) and shifted by
    U(-max_shift, max_shift) pixels in x and y (bilinear, zero fill), with fresh parameters per image
    and call. Vectorised: one affine_grid + grid_sample per batch."""
    b, _, h, w = x.shape
    u = torch.rand(4, b, generator=generator) * 2 - 1  # on the CPU: the same stream on every device
    angle, s = u[0] * degrees * torch.pi / 180, 1 + u[1] * scale
    tx, ty = u[2] * max_shift * 2 / w, u[3] * max_shift * 2 / h  # pixels -> normalised coordinates
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s  # the grid maps output to input: inverse scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def load_data(args):
    """The 100 labelled training images (indices 0..99), the validation split and the test set."""
    train_full, test = load_splits(args.data_dir, args.quick)
    train, (_, val) = few_shot(*train_full), split_validation(*train_full)
    print(f"{len(train[0])} labelled training images, per class {torch.bincount(train[1], minlength=10).tolist()}")
    return train, val, test


def classifier(init_encoder: nn.Module | None = None) -> nn.Sequential:
    """Task 2's classifier architecture, Encoder + MLP: the encoder starts from init_encoder's weights if
    given, else at random like the MLP (from torch's current seed)."""
    enc = Encoder() if init_encoder is None else Encoder(init_encoder.latent_dim, init_encoder.channels, init_encoder.fc)
    model = nn.Sequential(enc, MLP(enc.latent_dim))
    if init_encoder is not None:
        enc.load_state_dict(init_encoder.state_dict())
    return model


def train_recipe(model, recipe: Recipe, train, test, device, generator, eval_every=None, label="") -> list[dict]:
    """fit() the classifier `model` on train = (images, labels) with `recipe`; its history."""
    if recipe.freeze_encoder:
        model[0].requires_grad_(False)
    return fit(model, train, test, loss_fn=F.cross_entropy, epochs=recipe.epochs, batch_size=recipe.batch_size,
               lr=recipe.lr, device=device, generator=generator, schedule=recipe.schedule,
               augment=random_affine if recipe.augment else None, frozen=(model[0],) if recipe.freeze_encoder else (),
               eval_every=eval_every or recipe.epochs, label=label)


def train_seeds(recipe: Recipe, data, seeds, device, init_encoder: nn.Module | None = None,
                eval_every: int | None = None, label: str = "") -> tuple[list, dict]:
    """One classifier per seed, trained with `recipe`: (per-seed histories, summary). A seed fixes the
    initialisation, the batch order and the augmentation; the encoder then starts from init_encoder's
    weights if given (the MLP always starts fresh). The test set (if not None) is evaluated every
    `eval_every` epochs (default: after the last only), validation after the last."""
    train, val, test = data
    histories, per_seed = [], []
    for seed in seeds:
        generator = seed_everything(seed)
        model = classifier(init_encoder)
        history = train_recipe(model, recipe, train, test, device, generator, eval_every, f"{label}seed {seed} ")
        last = history[-1]
        row = {"seed": seed, "train_accuracy": last["train_accuracy"],
               "val_accuracy": evaluate(model, val, F.cross_entropy, device)["accuracy"], "train_seconds": last["seconds"]}
        if test is not None:
            row |= {"test_accuracy": last["test_accuracy"], "test_loss": last["test_loss"],
                    "best_test_loss_epoch": min(history, key=lambda r: r["test_loss"])["epoch"],
                    "test_loss_of_errors": loss_of_errors(model, test, device)}
        per_seed.append(row)
        histories.append(history)
    return histories, summarise(per_seed) | {"recipe": asdict(recipe)}


def loss_of_errors(model: nn.Module, test, device) -> float:
    """The mean cross-entropy of the misclassified test images: how confident the mistakes are."""
    logits, labels = apply_batched(model, test[0], device), test[1]
    wrong = logits.argmax(1) != labels
    return F.cross_entropy(logits[wrong], labels[wrong]).item() if wrong.any() else 0.0


def summarise(per_seed: list[dict]) -> dict:
    """Mean and sample standard deviation (0 for one seed) of every per-seed number, and the rows."""
    out = {"seeds": len(per_seed), "per_seed": per_seed}
    for key in (k for k in per_seed[0] if k != "seed"):
        v = torch.tensor([float(r[key]) for r in per_seed], dtype=torch.float64)
        out |= {f"{key}_mean": v.mean().item(), f"{key}_std": v.std().item() if len(v) > 1 else 0.0}
    return out


def select(summaries: dict[str, dict]) -> str:
    """The name of the recipe with the highest mean validation accuracy: test numbers never enter."""
    return max(summaries, key=lambda name: summaries[name]["val_accuracy_mean"])


def pretraining_gain(task5: dict, task4: dict) -> dict:
    """Task 5 minus Task 4 under the same recipe: the difference of the mean test accuracies, its
    unpaired standard error sqrt(s5^2/n5 + s4^2/n4), and the paired one over the per-seed
    differences (within a seed only the encoder's starting weights differ)."""
    t4 = {r["seed"]: r["test_accuracy"] for r in task4["per_seed"]}
    diffs = torch.tensor([r["test_accuracy"] - t4[r["seed"]] for r in task5["per_seed"] if r["seed"] in t4],
                         dtype=torch.float64)
    return {"test_accuracy_difference": task5["test_accuracy_mean"] - task4["test_accuracy_mean"],
            "standard_error": math.sqrt(task5["test_accuracy_std"] ** 2 / task5["seeds"]
                                        + task4["test_accuracy_std"] ** 2 / task4["seeds"]),
            "paired_seeds": len(diffs),
            "paired_standard_error": (diffs.std() / len(diffs) ** 0.5).item() if len(diffs) > 1 else 0.0}
