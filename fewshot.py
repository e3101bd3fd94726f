"""Training on the 100 labelled images (Tasks 4 and 5): the recipes, training one recipe over
several seeds, the summary over seeds, the choice of a recipe on the validation split, and what
pre-training adds under the same recipe (with its standard errors)."""
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from cli import SEED_MAX, positive_int, settings_from
from data import FEW_SHOT_SIZE, describe_validation, few_shot, load_splits, random_affine, split_validation
from models import MLP, Encoder
from train import fit, seed_everything


@dataclass(frozen=True)
class Recipe:
    """How the classifier is trained on the 100 images. encoder: 'train' (everything trains) or
    'frozen' (only the MLP trains; the encoder, BatchNorm statistics included, stays as it started)."""
    name: str
    init: str                 # 'scratch' (Task 4) or 'autoencoder' (Task 5: Task 1's encoder)
    encoder: str = "train"
    augment: bool = False     # random affine: rotation +-15 deg, scale +-10 %, shift +-2 px, per image and step
    epochs: int = 30
    lr: float = 1e-3
    schedule: str = "constant"
    batch_size: int = 10


# Two schedules, both chosen on validation by tasks/tune.py (results/tuning.json): the plain one
# (constant lr, Task 4's set-up, shared by Task 5 for the like-for-like comparison) and the long
# one of the augmented recipes (one-cycle). "schedule only" is the long schedule without the
# augmentation, so the two parts of the augmented recipe's gain can be told apart. Each task's
# recipe is the one with the best mean validation accuracy.
PLAIN = dict(epochs=30, lr=0.003, schedule="constant")
AUGMENTED = dict(augment=True, epochs=150, lr=0.001, schedule="onecycle")
RECIPES = (
    Recipe("plain", "scratch", **PLAIN),
    Recipe("augmented", "scratch", **AUGMENTED),
    Recipe("schedule only", "scratch", **AUGMENTED | {"augment": False}),  # isolates the augmentation's share
    Recipe("fine-tune", "autoencoder", **PLAIN),
    Recipe("fine-tune, augmented", "autoencoder", **AUGMENTED),
    Recipe("frozen encoder", "autoencoder", encoder="frozen", **PLAIN),
    Recipe("frozen encoder, augmented", "autoencoder", encoder="frozen", **AUGMENTED),
)
SAME_RECIPE = {"plain": "fine-tune", "augmented": "fine-tune, augmented"}  # Task 4 name -> Task 5 name
CURVE_EVERY = 2  # epochs between test evaluations of the plain recipes (15 points of their curves)


def parse_args(p, argv=None):
    """The flags of Tasks 4 and 5: the shared ones (--epochs and --lr default to the plain schedule),
    --seeds, and where the settings come from; --quick: 2 seeds, 2 plain and 3 long-schedule epochs."""
    p.add_argument("--seeds", type=positive_int, default=5, help="number of seeds, --seed, --seed+1, ... (default: 5)")
    args = p.parse_args(argv)
    args.settings_from = settings_from(p, args, ("epochs", "lr"))
    if args.seed + args.seeds - 1 > SEED_MAX:
        p.error(f"--seed {args.seed} with --seeds {args.seeds} runs past the largest seed {SEED_MAX}")
    if args.quick:
        args.epochs, args.seeds = 2, 2
    return args


def recipes_for(init: str, args) -> list[Recipe]:
    """The task's recipes. Those of the plain schedule take it from --epochs, --lr and --batch-size;
    those of the long (augmented) schedule keep theirs (3 epochs with --quick)."""
    plain = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size}
    return [Recipe(**asdict(r) | (plain if r.schedule == "constant" else {"epochs": 3} if args.quick else {}))
            for r in RECIPES if r.init == init]


def load_data(args):
    """The 100 labelled training images (indices 0..99), the validation split and the test set."""
    train_full, test = load_splits(args.data_dir, args.quick)
    train = few_shot(*train_full)
    _, val = split_validation(*train_full)
    print(f"{len(train[0])} labelled training images (indices 0..{FEW_SHOT_SIZE - 1}), labels per class "
          f"{torch.bincount(train[1], minlength=10).tolist()}; {len(val[0])} validation and {len(test[0])} test images")
    return train, val, test, describe_validation(len(train_full[0]))


def train_recipe(model, recipe: Recipe, data, device, generator, label: str, eval_every: int | None = None) -> list[dict]:
    """Train model = (encoder, mlp) on the 100 images with `recipe`. The test set is evaluated every
    `eval_every` epochs and after the last (default: only after the last, as evaluating 10,000 test
    images costs as much as ~100 training steps); validation after the last epoch."""
    train, val, test = data
    encoder = model[0]
    common = dict(objective="ce", batch_size=recipe.batch_size, device=device, generator=generator, eval_train=True,
                  schedule=recipe.schedule, augment=random_affine if recipe.augment else None, val=val, label=label)
    if recipe.encoder == "frozen":  # only the MLP trains; fit() keeps the encoder in eval mode
        encoder.requires_grad_(False)
        common["frozen"] = (encoder,)
    return fit(model, train, test, epochs=recipe.epochs, lr=recipe.lr, eval_every=eval_every or recipe.epochs, **common)


def run_seeds(recipe: Recipe, args, data, device, init_encoder: dict | None = None,
              latent_dim: int | None = None, label: str = "", eval_every: int | None = None) -> tuple[list, dict]:
    """Train one classifier per seed with `recipe`. If init_encoder (a state_dict) is given, the
    encoder starts from it (checked equal); the MLP is always freshly initialised. Returns
    (per-seed histories, summary). latent_dim overrides Task 2's d (for the latent sweep's AEs)."""
    d = latent_dim or Encoder().latent_dim
    histories, per_seed = [], []
    for seed in range(args.seed, args.seed + args.seeds):
        generator = seed_everything(seed)
        model = nn.Sequential(Encoder(d), MLP(d))  # Task 2's classifier architecture
        row = {"seed": seed}
        if init_encoder is not None:
            model[0].load_state_dict(init_encoder)
            row["encoder_started_from_ae"] = all(torch.equal(v, model[0].state_dict()[k])
                                                 for k, v in init_encoder.items())
        history = train_recipe(model, recipe, data, device, generator, f"{label}{recipe.name}, seed {seed} ",
                               eval_every)
        last = history[-1]
        row |= {k: last[k] for k in ("test_accuracy", "test_loss", "train_accuracy", "val_accuracy")}
        row["best_test_loss_epoch"] = min(history, key=lambda r: r["test_loss"])["epoch"]
        row["train_seconds"] = last["seconds"]
        histories.append(history)
        per_seed.append(row)
    return histories, summarise(per_seed) | {"recipe": asdict(recipe)}


def summarise(per_seed: list[dict]) -> dict:
    """Mean and sample standard deviation over the seeds of every per-seed number (std 0 for one seed),
    the train-test accuracy gap of the means, and the per-seed rows."""
    out = {"seeds": len(per_seed), "per_seed": per_seed}
    for key in (k for k in per_seed[0] if k not in ("seed", "encoder_started_from_ae")):
        v = torch.tensor([float(r[key]) for r in per_seed], dtype=torch.float64)
        out |= {f"{key}_mean": v.mean().item(), f"{key}_std": v.std().item() if len(v) > 1 else 0.0}
    return out | {"train_test_accuracy_gap_mean": out["train_accuracy_mean"] - out["test_accuracy_mean"]}


def select(recipes: dict[str, dict]) -> dict:
    """The recipe with the highest mean validation accuracy, as final.best. Reads validation metrics
    only: the test metrics of the recipes never enter the choice."""
    name = max(recipes, key=lambda n: recipes[n]["val_accuracy_mean"])
    r = recipes[name]
    return {"recipe": name, "selected_on": "validation", "val_accuracy_mean": r["val_accuracy_mean"],
            "test_accuracy_mean": r["test_accuracy_mean"], "test_accuracy_std": r["test_accuracy_std"],
            "seeds": r["seeds"]}


def run_recipes(init: str, args, data, device, init_encoder=None, label: str = ""):
    """Every recipe of `init`: (histories, summaries), by name. The plain one (the curves of Tasks 4
    and 5) is evaluated on the test set every CURVE_EVERY epochs; Task 4's long-schedule recipes six
    times, to show their over-fitting; the others after their last epoch."""
    histories, summaries = {}, {}
    for recipe in recipes_for(init, args):
        every = CURVE_EVERY if recipe.name in ("plain", "fine-tune") else None
        if init == "scratch" and recipe.schedule == "onecycle":
            every = max(1, recipe.epochs // 6)
        histories[recipe.name], summaries[recipe.name] = run_seeds(
            recipe, args, data, device, init_encoder, label=label, eval_every=every)
        r = summaries[recipe.name]
        print(f"{label}{recipe.name}: test accuracy {100 * r['test_accuracy_mean']:.2f} "
              f"+- {100 * r['test_accuracy_std']:.2f}%, val accuracy {100 * r['val_accuracy_mean']:.2f}%, train accuracy "
              f"{100 * r['train_accuracy_mean']:.1f}%, lowest test loss at epoch {r['best_test_loss_epoch_mean']:.1f} "
              f"of {recipe.epochs} (mean over seeds)")
    return histories, summaries


def unpaired_standard_error(std_a: float, n_a: int, std_b: float, n_b: int) -> float:
    """Standard error of a difference of two means (Welch): sqrt(s_a^2 / n_a + s_b^2 / n_b)."""
    return math.sqrt(std_a ** 2 / n_a + std_b ** 2 / n_b)


def paired_standard_error(diffs: list[float]) -> float:
    """Standard error of the mean of paired differences: their sample standard deviation / sqrt(n)."""
    n = len(diffs)
    if n < 2:
        return 0.0
    mean = sum(diffs) / n
    return math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n)


def pretraining_gain(task5: dict, task4: dict) -> dict:
    """Task 5 minus Task 4 under the same recipe: the difference of the mean test accuracies, its
    unpaired standard error, and the paired one over the per-seed differences (a seed fixes the
    MLP's initialisation, the batch order and the augmentation in both tasks, so only the
    encoder's start differs within a pair)."""
    t4 = {r["seed"]: r["test_accuracy"] for r in task4["per_seed"]}
    diffs = [r["test_accuracy"] - t4[r["seed"]] for r in task5["per_seed"] if r["seed"] in t4]
    return {"task4_recipe": task4["recipe"]["name"], "task5_recipe": task5["recipe"]["name"],
            "test_accuracy_difference": task5["test_accuracy_mean"] - task4["test_accuracy_mean"],
            "standard_error": unpaired_standard_error(task5["test_accuracy_std"], task5["seeds"],
                                                      task4["test_accuracy_std"], task4["seeds"]),
            "paired_seeds": len(diffs), "paired_standard_error": paired_standard_error(diffs)}
