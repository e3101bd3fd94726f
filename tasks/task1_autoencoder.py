"""Task 1: a convolutional autoencoder to a d = 12 latent, trained with mean L1 loss.

The exercise: "Define a convolutional autoencoder to encode (and decode) the images into a small
dimensional latent space (around d ~ 12). Explore the use of an FC layer at the coarsest level (i.e.
in latent space) in order to gain a better reconstruction accuracy and reach the embedded dimension
d. Report these tests (input vs. reconstructed images) and the scores obtained. [...] Use a mean L1
error to define the reconstruction loss."

Story: load MNIST -> train Encoder(FC to d) + Decoder on all 60,000 training images -> evaluate
train/test L1 -> plot reconstructions and curves -> explore (a) FC vs conv-only at the coarsest
level and (b) the latent size d, each exploration run trained on images 0..49999 and scored on
the validation images 50000..59999 (never on the test set) -> save checkpoints (the sweep's too:
Task 5 measures how well each d transfers) and results/task1_autoencoder.json.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import torch
from torch import nn

import plots
from data import describe_validation, load_splits, split_validation
from models import Decoder, Encoder, architecture, count_parameters, save_checkpoint
from cli import base_parser, positive_int, settings_from
from runs import open_run, run_main
from train import evaluate, fit, pick_device, seed_everything

NAME = "task1_autoencoder"
SWEEP_DIMS = (2, 4, 8, 12, 16, 32)


def parse_args(argv=None):
    p = base_parser(__doc__.splitlines()[0], epochs=8, batch_size=128, lr=0.01)
    p.add_argument("--latent-dim", type=positive_int, default=12, help="latent size d (default: 12)")
    p.add_argument("--channels", type=positive_int, nargs=2, default=[16, 32],
                   help="conv channels at 14x14 and 7x7 (default: 16 32)")
    p.add_argument("--explore-epochs", type=int, default=2,
                   help="epochs of each exploration run (FC ablation, latent sweep): the validation study's short "
                        "budget; 0 skips it (default: 2)")
    args = p.parse_args(argv)
    args.settings_from = settings_from(p, args, ("epochs", "lr", "channels"))
    if args.explore_epochs < 0:
        p.error("--explore-epochs must be >= 0")
    if args.quick:
        args.epochs, args.explore_epochs = 1, min(args.explore_epochs, 1)
    return args


def build(latent_dim: int, channels, fc: bool = True) -> nn.Sequential:
    return nn.Sequential(Encoder(latent_dim, channels, fc), Decoder(latent_dim, channels, fc))


def train_autoencoder(args, train, test, device, *, latent_dim, fc, epochs, label="", val=None):
    """Seed, build and train one AE; return (model, history, final metrics). With a validation
    split (the exploration runs), it is scored only after the last epoch."""
    generator = seed_everything(args.seed)
    model = build(latent_dim, args.channels, fc)
    history = fit(model, train, test, objective="l1", epochs=epochs, batch_size=args.batch_size, lr=args.lr,
                  device=device, generator=generator, val=val, eval_every=epochs if val is not None else 1,
                  label=label)
    final = {"latent_dim": latent_dim, "fc": fc, "test_l1": history[-1]["test_loss"],
             "train_l1": evaluate(model, *train, "l1", device)["loss"] if val is None else None,  # clean eval pass
             "train_seconds": history[-1]["seconds"], "epochs": epochs, "parameters": count_parameters(model)}
    if val is not None:
        final["val_l1"] = history[-1]["val_loss"]
    return model, history, final


def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    config = vars(args) | {"channels": list(args.channels)}
    with open_run(NAME, args) as run:
        # Data: loaded once, float32 in [0, 1]
        train, test = load_splits(args.data_dir, args.quick)
        config["validation"] = describe_validation(len(train[0])) | {
            "used_for": "choosing lr, widths and epochs (tasks/tune.py, results/tuning.json) and the exploration "
                        "runs (FC ablation, latent sweep), trained on the images before it"}

        # Main model: Encoder with FC to d, Decoder; mean L1 loss; all 60,000 training images
        model, history, final = train_autoencoder(args, train, test, device, latent_dim=args.latent_dim,
                                                  fc=True, epochs=args.epochs, label="AE ")
        encoder, decoder = model
        print(f"AE d={args.latent_dim}: test L1 {final['test_l1']:.4f}, train L1 {final['train_l1']:.4f}, "
              f"{final['train_seconds']:.0f}s")
        modules = {"encoder": encoder, "decoder": decoder}
        save_checkpoint(run.path("checkpoints", f"{NAME}.pt"), modules, run.run_id)

        # Figures: test inputs vs reconstructions, learning curves
        x_show = test[0][:24]
        with torch.no_grad():
            recon = model.eval()(x_show.to(device)).cpu()
        plots.digit_grid({"input": x_show, f"AE (d={args.latent_dim})": recon},
                         run.path("figures", f"{NAME}_reconstructions.png"), per_row=12,
                         title=f"Task 1: test digits and their reconstructions (test L1 {final['test_l1']:.4f})")
        plots.history_curves(history, run.path("figures", f"{NAME}_curves.png"), "Task 1 autoencoder (mean L1)")

        # Exploration on the validation split: (a) FC vs conv-only at d=12, (b) latent size sweep
        exploration = {}
        if args.explore_epochs:
            e, c2 = args.explore_epochs, args.channels[1]
            fit_part, val = split_validation(*train)
            runs = {}
            for d in SWEEP_DIMS:
                runs[("fc", d)] = train_autoencoder(args, fit_part, test, device, latent_dim=d, fc=True, epochs=e,
                                                    val=val, label=f"sweep d={d} ")
                save_checkpoint(run.path("checkpoints", f"{NAME}_sweep_d{d}.pt"),  # read by Task 5
                                {"encoder": runs[("fc", d)][0][0], "decoder": runs[("fc", d)][0][1]},
                                run.run_id, epochs=e, trained_on=f"0..{len(fit_part[0]) - 1}")
            runs[("conv", 12)] = train_autoencoder(args, fit_part, test, device, latent_dim=12, fc=False, epochs=e,
                                                   val=val, label="conv-only d=12 ")
            fc_run, conv_run = runs[("fc", 12)], runs[("conv", 12)]
            exploration = {
                "epochs": e,
                "trained_on": f"0..{len(fit_part[0]) - 1}",
                "scored_on": "validation",
                "fc_ablation": {
                    "with_fc": fc_run[2],
                    "conv_only": conv_run[2] | {"how": f"two more stride-2 convs instead of the FC: {c2}x7x7 -> "
                                                      f"{c2}x4x4 -> 3x2x2 = 12 numbers; the decoder mirrors "
                                                      f"them with stride-2 transposed convs"},
                },
                "latent_sweep": [runs[("fc", d)][2] for d in SWEEP_DIMS],
            }
            with torch.no_grad():
                rows = {"input": val[0][:12]}
                for key, name in ((("fc", 12), "with FC"), (("conv", 12), "conv-only")):
                    rows[f"{name}\n(val L1 {runs[key][2]['val_l1']:.4f})"] = \
                        runs[key][0].eval()(val[0][:12].to(device)).cpu()
            plots.digit_grid(rows, run.path("figures", f"{NAME}_fc_ablation.png"), per_row=12,
                             title=f"FC layer at the coarsest level vs conv-only, d = 12, {e} epochs each "
                                   f"(validation digits)")
        final["exploration"] = exploration

        run.write_results(f"{NAME}.json", {"config": config, "architecture": architecture(modules), "history": history,
                                           "final": final}, device)


if __name__ == "__main__":
    run_main(main, NAME)
