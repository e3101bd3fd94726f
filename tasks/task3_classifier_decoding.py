"""Task 3: decode the classifier's latent space: Task 2's encoder, frozen, + a fresh Decoder (L1).

The exercise: "Use the pre-trained classifier encoder network from #2 as a fixed (non-trainable)
encoder, connect it with a decoder network (same arch. as the one used in #1) and train the latter
to minimize the reconstruction loss. Compare the losses obtained here and in #1 and explain the
difference. Moreover, display an array of (>50) reconstructed digits and try to identify
differences between the results produced by the AE and classifier-based encoding."

Story: load Task 2's classifier and Task 1's autoencoder (each trained first if missing) -> freeze
the classifier's encoder -> train a Decoder of Task 1's architecture on its codes -> check the
encoder is bit-identical to the checkpoint -> control: the same decoder training on the frozen
Task 1 encoder, which splits the gap to Task 1 into "another latent space" and "decoder trained
jointly" -> compare the two latent spaces (per-class L1, geometry, probes, style R^2) -> figures
and results/task3_classifier_decoding.json.
"""
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import torch
from torch import nn

import plots
from analysis import (apply_batched, latent_geometry, pca_2d, per_class, style_measures, style_r2,
                      within_class_pixel_std)
from cli import base_parser, settings_from
from data import describe_validation, load_splits
from models import Decoder, save_checkpoint
from runs import open_run, prerequisite, run_main
from train import evaluate, fit, pick_device, seed_everything

NAME = "task3_classifier_decoding"


def parse_args(argv=None):
    p = base_parser(__doc__.splitlines()[0], epochs=8, batch_size=128, lr=0.01)
    args = p.parse_args(argv)
    args.settings_from = settings_from(p, args, ("epochs", "lr"))
    if args.quick:
        args.epochs = 1
    return args


def train_decoder(encoder: nn.Module, args, train, test, device, label: str):
    """A fresh Decoder on the frozen encoder's codes: no gradients for the encoder, the optimiser
    holds the decoder's parameters only, and fit() keeps the encoder in eval mode (BatchNorm
    statistics kept). The same seed gives every call the same initialisation and batch order."""
    encoder.requires_grad_(False)
    generator = seed_everything(args.seed)
    decoder = Decoder(encoder.latent_dim, encoder.channels, encoder.fc)
    history = fit(nn.Sequential(encoder, decoder), train, test, objective="l1", epochs=args.epochs,
                  batch_size=args.batch_size, lr=args.lr, device=device, generator=generator,
                  frozen=(encoder,), label=label)
    return decoder, history


def unchanged(before: dict, module: nn.Module) -> bool:
    """Weights and BatchNorm statistics equal `before` bit for bit."""
    after = module.state_dict()
    return before.keys() == after.keys() and all(torch.equal(v, after[k].cpu()) for k, v in before.items())


def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    clf, clf_results = prerequisite("task2_classifier", args)
    ae, ae_results = prerequisite("task1_autoencoder", args)
    with open_run(NAME, args) as run:
        train, test = load_splits(args.data_dir, args.quick)
        (x_tr, y_tr), (x_te, y_te) = train, test

        # Task 3: a fresh decoder on the frozen classifier encoder; then the control on the frozen AE encoder
        before = {k: v.clone() for k, v in clf["encoder"].state_dict().items()}
        decoder, history = train_decoder(clf["encoder"], args, train, test, device, "classifier-decoder ")
        if not unchanged(before, clf["encoder"]):
            raise RuntimeError("the frozen encoder changed during training")  # a bug, not a user error
        save_checkpoint(run.path("checkpoints", f"{NAME}.pt"), {"decoder": decoder}, run.run_id)
        control_encoder = copy.deepcopy(ae["encoder"])  # Task 1's own encoder stays as loaded, for the analysis
        _, control_history = train_decoder(control_encoder, args, train, test, device, "control: AE-encoder decoder ")

        # The two latent spaces: codes, reconstructions, per-image L1 and style measures
        encoders = {"autoencoder": ae["encoder"].to(device), "classifier": clf["encoder"]}
        codes = {k: (apply_batched(e, x_tr, device), apply_batched(e, x_te, device)) for k, e in encoders.items()}
        recon = {"autoencoder": apply_batched(ae["decoder"].to(device), codes["autoencoder"][1], device),
                 "classifier_decoder": apply_batched(decoder, codes["classifier"][1], device)}
        l1_per_image = {k: (r - x_te).abs().mean((1, 2, 3)) for k, r in recon.items()}
        style_train, style_test = style_measures(x_tr), style_measures(x_te)
        final = {
            "encoder_unchanged": True,  # checked above
            "test_l1": history[-1]["test_loss"],
            "train_l1": evaluate(nn.Sequential(clf["encoder"], decoder), *train, "l1", device)["loss"],
            "train_seconds": history[-1]["seconds"],
            "task1_ae_test_l1": ae_results["final"]["test_l1"],
            "control_ae_encoder_test_l1": control_history[-1]["test_loss"],
            "control_encoder_unchanged": unchanged(ae["encoder"].state_dict(), control_encoder),
            "control": "a fresh decoder with Task 3's epochs, schedule and seed on the frozen Task 1 encoder",
            "per_class_test_l1": {k: per_class(v, y_te) for k, v in l1_per_image.items()},
            "latent": {k: latent_geometry(ztr, y_tr, zte, y_te, args.seed) for k, (ztr, zte) in codes.items()},
            "within_class_pixel_std": {"test_digits": within_class_pixel_std(x_te, y_te)}
                                      | {k: within_class_pixel_std(r, y_te) for k, r in recon.items()},
            "style_r2": {k: style_r2(ztr, style_train, zte, style_test) for k, (ztr, zte) in codes.items()},
            "style_r2_how": "least-squares linear map from the codes (with intercept) fitted on the training "
                            "images, R^2 on the test images",
        }
        for k, g in final["latent"].items():
            print(f"{k:11s} latent: separation/spread {g['separation_to_spread_ratio']:.2f}, NCM acc "
                  f"{100 * g['nearest_class_mean_accuracy']:.1f}%, linear probe {100 * g['linear_probe_accuracy']:.1f}%;"
                  f" style R^2 " + ", ".join(f"{m} {v:.2f}" for m, v in final["style_r2"][k].items() if v is not None))
        print(f"test L1: classifier-decoder {final['test_l1']:.4f}, control decoder on the AE encoder "
              f"{final['control_ae_encoder_test_l1']:.4f}, Task 1 AE {final['task1_ae_test_l1']:.4f}")

        # Figures: 60 digits (6 per class where available), per-class L1, the two latent spaces
        show = torch.cat([torch.nonzero(y_te == c).flatten()[:6] for c in range(10)])
        plots.digit_grid({"input": x_te[show], "AE (Task 1)": recon["autoencoder"][show],
                          "classifier enc.\n+ decoder": recon["classifier_decoder"][show]},
                         run.path("figures", f"{NAME}_digits.png"), per_row=15, numbered=True)
        plots.bars({"autoencoder (Task 1)": final["per_class_test_l1"]["autoencoder"],
                    "classifier encoder + decoder": final["per_class_test_l1"]["classifier_decoder"]},
                   [str(c) for c in range(10)], run.path("figures", f"{NAME}_per_class_l1.png"),
                   "test mean L1", "Per-class test L1 of the two reconstructions", xlabel="digit class")
        ratio = {k: final["latent"][k]["separation_to_spread_ratio"] for k in codes}
        plots.latent_scatter({f"Task 1 autoencoder (ratio {ratio['autoencoder']:.2f})":
                              (pca_2d(codes["autoencoder"][1]).numpy(), y_te.numpy()),
                              f"Task 2 classifier (ratio {ratio['classifier']:.2f})":
                              (pca_2d(codes["classifier"][1]).numpy(), y_te.numpy())},
                             run.path("figures", f"{NAME}_latent_pca.png"),
                             "Test codes on their first two principal components")
        config = vars(args) | {"validation": describe_validation(len(x_tr)) | {
            "used_for": "choosing the decoder's epochs (tasks/tune.py, results/tuning.json)"}}
        run.write_results(f"{NAME}.json", {"prerequisites": {"task1_autoencoder": ae_results["run_id"],
                                                             "task2_classifier": clf_results["run_id"]},
                                           "config": config, "architecture": clf_results["architecture"],
                                           "history": history, "control_history": control_history,
                                           "final": final}, device)


if __name__ == "__main__":
    run_main(main, NAME)
