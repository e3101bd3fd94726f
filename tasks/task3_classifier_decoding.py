"""Task 3: decode the classifier's latent space: Task 2's encoder, frozen, + a fresh Decoder (L1).

The exercise: "Use the pre-trained classifier encoder network from #2 as a fixed (non-trainable)
encoder, connect it with a decoder network (same arch. as the one used in #1) and train the latter
to minimize the reconstruction loss. Compare the losses obtained here and in #1 and explain the
difference. Moreover, display an array of (>50) reconstructed digits and try to identify
differences between the results produced by the AE and classifier-based encoding."

Story: load Task 2's classifier and Task 1's autoencoder -> encode every training and test image
once with the frozen classifier encoder (eval mode) -> train a Decoder of Task 1's architecture on
those codes -> check the encoder is bit-identical to the checkpoint -> control: the same decoder
training on the codes of Task 1's encoder, which splits the gap to Task 1 into "another latent
space" and "decoder trained jointly" -> a second control: a classifier trained with Task 1's epochs,
batch and learning rate, no augmentation and no dropout (its encoder differs from Task 1's only in
the objective), frozen and decoded the same way -> compare the latent spaces (per-class L1,
class-mean distances, probes, style R^2) -> figures and results/task3_classifier_decoding.json.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import torch
import torch.nn.functional as F
from torch import nn

import plots
from analysis import apply_batched, latent_geometry, per_class, style_measures, style_r2, within_class_pixel_std
from data import load_splits
from models import MLP, Decoder, Encoder, load_pretrained
from train import (evaluate, fit, load_results, parser, pick_device, prepare_out_dir, run, save_checkpoint,
                   save_results, seed_everything)

NAME = "task3_classifier_decoding"


def parse_args(argv=None):
    args = parser(__doc__.splitlines()[0], epochs=8, batch_size=256, lr=0.056).parse_args(argv)  # as tune.py chose
    if args.quick:
        args.epochs = 1
    return args


def train_decoder(args, codes, images, device, label: str):
    """A fresh Decoder trained on fixed codes = (train, test) of a frozen encoder to reconstruct the
    images = (train, test). The same seed gives every call the same initialisation and batch order."""
    generator = seed_everything(args.seed)
    decoder = Decoder(codes[0].shape[1])
    # AdamW; one-cycle schedule peaking at --lr; mean L1 between the decoded image and the original
    history = fit(decoder, (codes[0], images[0]), (codes[1], images[1]), loss_fn=F.l1_loss, epochs=args.epochs,
                  batch_size=args.batch_size, lr=args.lr, device=device, generator=generator, schedule="onecycle",
                  label=label)
    return decoder, history


def train_objective_control(args, ae_config: dict, ae_encoder: Encoder, hidden: int, train, test, device):
    """The objective control: Encoder + MLP trained with cross-entropy but with Task 1's epochs, batch size and
    peak learning rate, no shift augmentation and no dropout, so that its encoder differs from Task 1's only in
    the objective (and the head it feeds). Returns the classifier and its history."""
    generator = seed_everything(args.seed)
    d = ae_encoder.latent_dim
    model = nn.Sequential(Encoder(d, ae_encoder.channels), MLP(d, hidden, dropout=0.0))
    history = fit(model, train, test, loss_fn=F.cross_entropy, epochs=ae_config["epochs"],
                  batch_size=ae_config["batch_size"], lr=ae_config["lr"], device=device, generator=generator,
                  schedule="onecycle", label="control: classifier with Task 1's settings ")
    return model, history


def main(argv=None):
    args = parse_args(argv)
    device, out, started = pick_device(args.device), prepare_out_dir(args), time.perf_counter()
    clf = load_pretrained(out / "checkpoints" / "task2_classifier.pt",
                          "run python tasks/task2_classifier.py first (about 1 minute)")
    ae = load_pretrained(out / "checkpoints" / "task1_autoencoder.pt",
                         "run python tasks/task1_autoencoder.py first (about 5 minutes)")
    ae_config = load_results(out / "results" / "task1_autoencoder.json",
                             "run python tasks/task1_autoencoder.py first (about 5 minutes)")["config"]
    (x_tr, y_tr), (x_te, y_te) = load_splits(args.data_dir, args.quick)

    # The frozen encoders' codes, computed once (eval mode: BatchNorm's running statistics, no gradients)
    def snapshot(e):  # its weights and BatchNorm statistics, on the CPU
        return {n: t.detach().cpu().clone() for n, t in e.state_dict().items()}

    def encode(e):  # (train codes, test codes)
        return apply_batched(e, x_tr, device), apply_batched(e, x_te, device)

    encoders = {"classifier": clf["encoder"], "autoencoder": ae["encoder"]}
    before = {k: snapshot(e) for k, e in encoders.items()}
    codes = {k: encode(e) for k, e in encoders.items()}

    # Task 3: a fresh decoder on the classifier's codes; the control: the same training on the AE's codes
    decoder, history = train_decoder(args, codes["classifier"], (x_tr, x_te), device, "classifier-decoder ")
    _, control_history = train_decoder(args, codes["autoencoder"], (x_tr, x_te), device, "control: AE-code decoder ")
    # The objective control: train a classifier like Task 1's AE, then freeze and decode it the same way
    objective, objective_history = train_objective_control(args, ae_config, ae["encoder"], clf["mlp"].hidden,
                                                           (x_tr, y_tr), (x_te, y_te), device)
    encoders["objective_control"] = objective[0]
    before["objective_control"], codes["objective_control"] = snapshot(objective[0]), encode(objective[0])
    _, objective_decoder_history = train_decoder(args, codes["objective_control"], (x_tr, x_te), device,
                                                 "control: objective-control decoder ")
    for k, e in encoders.items():  # frozen means bit-identical, BatchNorm statistics included (compared on the CPU)
        if not all(torch.equal(v, e.state_dict()[n].cpu()) for n, v in before[k].items()):
            raise RuntimeError(f"the frozen {k} encoder changed")  # a bug, not a user error
    save_checkpoint(out / "checkpoints" / f"{NAME}.pt", {"decoder": decoder})

    # The two latent spaces: reconstructions, per-image L1, geometry, probes and style
    recon = {"autoencoder": apply_batched(ae["decoder"], codes["autoencoder"][1], device),
             "classifier_decoder": apply_batched(decoder, codes["classifier"][1], device)}
    l1_per_image = {k: (r - x_te).abs().mean((1, 2, 3)) for k, r in recon.items()}
    style_train, style_test = style_measures(x_tr), style_measures(x_te)
    final = {
        "encoder_unchanged": True,  # checked above
        "test_l1": history[-1]["test_loss"],
        "train_l1": evaluate(decoder, (codes["classifier"][0], x_tr), F.l1_loss, device)["loss"],
        "train_seconds": history[-1]["seconds"],
        "task1_ae_test_l1": evaluate(nn.Sequential(ae["encoder"], ae["decoder"]), (x_te, x_te), F.l1_loss,
                                     device)["loss"],
        "control_ae_encoder_test_l1": control_history[-1]["test_loss"],
        "objective_control": {"settings": {k: ae_config[k] for k in ("epochs", "batch_size", "lr")},
                              "augment_shift": 0, "dropout": 0.0,
                              "test_accuracy": objective_history[-1]["test_accuracy"],
                              "decoder_test_l1": objective_decoder_history[-1]["test_loss"]},
        "per_class_test_l1": {k: per_class(v, y_te) for k, v in l1_per_image.items()},
        "latent": {k: latent_geometry(ztr, y_tr, zte, y_te, args.seed) for k, (ztr, zte) in codes.items()},
        "within_class_pixel_std": {"test_digits": within_class_pixel_std(x_te, y_te)}
                                  | {k: within_class_pixel_std(r, y_te) for k, r in recon.items()},
        "style_r2": {k: style_r2(ztr, style_train, zte, style_test) for k, (ztr, zte) in codes.items()},
    }
    print(f"test L1: classifier-decoder {final['test_l1']:.4f}, control decoder on the AE codes "
          f"{final['control_ae_encoder_test_l1']:.4f}, on the objective control's codes "
          f"{final['objective_control']['decoder_test_l1']:.4f}, Task 1 AE {final['task1_ae_test_l1']:.4f}")

    # Figures: 60 digits (the first 6 of each class; 3 classes per row), per-class L1, class-mean distances
    show = torch.cat([torch.nonzero(y_te == c).flatten()[:6] for c in range(10)])
    final["digits_shown"] = show.tolist()  # their test-set indices
    plots.digit_grid({"input": x_te[show], "AE (Task 1)": recon["autoencoder"][show],
                      "classifier enc.\n+ decoder": recon["classifier_decoder"][show]},
                     out / "figures" / f"{NAME}_digits.png", per_row=18, numbers=show.tolist())
    plots.bars({"autoencoder (Task 1)": final["per_class_test_l1"]["autoencoder"],
                "classifier encoder + decoder": final["per_class_test_l1"]["classifier_decoder"]},
               [str(c) for c in range(10)], out / "figures" / f"{NAME}_per_class_l1.png",
               "test mean L1", "Per-class test L1 of the two reconstructions", xlabel="digit class")
    plots.distance_maps(("Task 1 autoencoder", final["latent"]["autoencoder"]["class_mean_distances"]),
                        ("Task 2 classifier", final["latent"]["classifier"]["class_mean_distances"]),
                        out / "figures" / f"{NAME}_class_mean_distances.png")
    save_results(out / "results" / f"{NAME}.json", args, device, started, history=history,
                 control_history=control_history, objective_control_history={
                     "classifier": objective_history, "decoder": objective_decoder_history}, final=final)


if __name__ == "__main__":
    run(main)
