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
space" and "decoder trained jointly" -> compare the two latent spaces (per-class L1, geometry,
probes, style R^2) -> figures and results/task3_classifier_decoding.json.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import torch
import torch.nn.functional as F
from torch import nn

import plots
from analysis import apply_batched, latent_geometry, pca_2d, per_class, style_measures, style_r2, within_class_pixel_std
from data import load_splits
from models import Decoder, load_pretrained
from train import evaluate, fit, parser, pick_device, prepare_out_dir, run, save_checkpoint, save_results, seed_everything

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


def main(argv=None):
    args = parse_args(argv)
    device, out, started = pick_device(args.device), prepare_out_dir(args), time.perf_counter()
    clf = load_pretrained(out / "checkpoints" / "task2_classifier.pt",
                          "run python tasks/task2_classifier.py first (about 1 minute)")
    ae = load_pretrained(out / "checkpoints" / "task1_autoencoder.pt",
                         "run python tasks/task1_autoencoder.py first (about 5 minutes)")
    (x_tr, y_tr), (x_te, y_te) = load_splits(args.data_dir, args.quick)

    # The frozen encoders' codes, computed once (eval mode: BatchNorm's running statistics, no gradients)
    encoders = {"classifier": clf["encoder"], "autoencoder": ae["encoder"]}
    before = {k: {n: t.clone() for n, t in e.state_dict().items()} for k, e in encoders.items()}  # on the CPU
    codes = {k: (apply_batched(e, x_tr, device), apply_batched(e, x_te, device)) for k, e in encoders.items()}

    # Task 3: a fresh decoder on the classifier's codes; the control: the same training on the AE's codes
    decoder, history = train_decoder(args, codes["classifier"], (x_tr, x_te), device, "classifier-decoder ")
    _, control_history = train_decoder(args, codes["autoencoder"], (x_tr, x_te), device, "control: AE-code decoder ")
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
        "per_class_test_l1": {k: per_class(v, y_te) for k, v in l1_per_image.items()},
        "latent": {k: latent_geometry(ztr, y_tr, zte, y_te, args.seed) for k, (ztr, zte) in codes.items()},
        "within_class_pixel_std": {"test_digits": within_class_pixel_std(x_te, y_te)}
                                  | {k: within_class_pixel_std(r, y_te) for k, r in recon.items()},
        "style_r2": {k: style_r2(ztr, style_train, zte, style_test) for k, (ztr, zte) in codes.items()},
    }
    print(f"test L1: classifier-decoder {final['test_l1']:.4f}, control decoder on the AE codes "
          f"{final['control_ae_encoder_test_l1']:.4f}, Task 1 AE {final['task1_ae_test_l1']:.4f}")

    # Figures: 60 digits (the first 6 of each class; 3 classes per row), per-class L1, the two latent spaces
    show = torch.cat([torch.nonzero(y_te == c).flatten()[:6] for c in range(10)])
    final["digits_shown"] = show.tolist()  # their test-set indices
    plots.digit_grid({"input": x_te[show], "AE (Task 1)": recon["autoencoder"][show],
                      "classifier enc.\n+ decoder": recon["classifier_decoder"][show]},
                     out / "figures" / f"{NAME}_digits.png", per_row=18, numbers=show.tolist())
    plots.bars({"autoencoder (Task 1)": final["per_class_test_l1"]["autoencoder"],
                "classifier encoder + decoder": final["per_class_test_l1"]["classifier_decoder"]},
               [str(c) for c in range(10)], out / "figures" / f"{NAME}_per_class_l1.png",
               "test mean L1", "Per-class test L1 of the two reconstructions", xlabel="digit class")
    ratio = {k: final["latent"][k]["separation_to_spread_ratio"] for k in codes}
    plots.latent_scatter({f"Task 1 autoencoder (ratio {ratio['autoencoder']:.2f})":
                          (pca_2d(codes["autoencoder"][1]).numpy(), y_te.numpy()),
                          f"Task 2 classifier (ratio {ratio['classifier']:.2f})":
                          (pca_2d(codes["classifier"][1]).numpy(), y_te.numpy())},
                         out / "figures" / f"{NAME}_latent_pca.png")  # described by the report's caption
    save_results(out / "results" / f"{NAME}.json", args, device, started, history=history,
                 control_history=control_history, final=final)


if __name__ == "__main__":
    run(main)
