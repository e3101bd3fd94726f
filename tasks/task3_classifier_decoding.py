"""Task 3: decode the classifier's latent space: Task 2's encoder, frozen, + a fresh Decoder (L1).

Story: load Task 2's classifier (train it first if its checkpoint is missing) -> freeze its
encoder -> train a Decoder of Task 1's architecture with mean L1 -> check the encoder is
bit-identical to the checkpoint -> compare with Task 1's autoencoder: L1 overall and per class,
within-class spread and between-class separation of both latent spaces, nearest-class-mean and
linear-probe accuracy on the codes, within-class variability of the reconstructions -> figures
-> results/task3_classifier_decoding.json.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tasks/...` from anywhere

import torch
import torch.nn.functional as F
from torch import nn

import plots
import task1_autoencoder
import task2_classifier
from data import load_splits
from models import Decoder, Encoder
from train import (base_parser, environment, evaluate, expected_architecture, fit, load_or_train, out_dirs,
                   pick_device, read_json, run_main, save_checkpoint, seed_everything, upstream_flags, write_json)

NAME = "task3_classifier_decoding"


def parse_args(argv=None):
    p = base_parser(__doc__.splitlines()[0], epochs=8, batch_size=128, lr=1e-2)
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = 1
    return args


@torch.no_grad()
def encode(encoder: nn.Module, x: torch.Tensor, device, batch_size: int = 1000) -> torch.Tensor:
    encoder.eval()
    return torch.cat([encoder(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


@torch.no_grad()
def decode(decoder: nn.Module, z: torch.Tensor, device, batch_size: int = 1000) -> torch.Tensor:
    decoder.eval()
    return torch.cat([decoder(z[i:i + batch_size].to(device)).cpu() for i in range(0, len(z), batch_size)])


def latent_geometry(z_train, y_train, z_test, y_test, seed: int) -> dict:
    """Within-class spread and between-class separation of test codes, made comparable across
    latent spaces by dividing every code by the RMS distance of the test codes to their overall
    mean (so each space has total spread 1), plus nearest-class-mean and linear-probe accuracy."""
    scale = (z_test - z_test.mean(0)).pow(2).sum(1).mean().sqrt()
    zs = z_test / scale
    means = torch.stack([zs[y_test == c].mean(0) for c in range(10)])
    within = (zs - means[y_test]).norm(dim=1).mean().item()
    pair = torch.cdist(means, means)
    between = (pair.sum() / (10 * 9)).item()  # mean over the 45 distinct pairs (each counted twice)
    # nearest class mean: class means from the training codes, applied to the test codes
    train_means = torch.stack([z_train[y_train == c].mean(0) for c in range(10)])
    ncm = (torch.cdist(z_test, train_means).argmin(1) == y_test).float().mean().item()
    return {"within_class_spread": within, "between_class_separation": between,
            "separation_to_spread_ratio": between / within, "nearest_class_mean_accuracy": ncm,
            "linear_probe_accuracy": linear_probe(z_train, y_train, z_test, y_test, seed),
            "normalisation": "codes divided by their RMS distance to the overall mean of the test codes"}


def linear_probe(z_train, y_train, z_test, y_test, seed: int, steps: int = 300) -> float:
    """Test accuracy of a softmax-regression classifier trained on standardised train codes."""
    torch.manual_seed(seed)
    mu, sd = z_train.mean(0), z_train.std(0) + 1e-8
    probe = nn.Linear(z_train.shape[1], 10)
    opt = torch.optim.Adam(probe.parameters(), lr=0.05)
    zt = (z_train - mu) / sd
    for _ in range(steps):  # full batch: 60k x d is tiny
        opt.zero_grad()
        F.cross_entropy(probe(zt), y_train).backward()
        opt.step()
    with torch.no_grad():
        return (probe((z_test - mu) / sd).argmax(1) == y_test).float().mean().item()


def per_class(values: torch.Tensor, labels: torch.Tensor) -> list[float]:
    return [values[labels == c].mean().item() for c in range(10)]


def within_class_pixel_std(images: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over classes of the mean per-pixel standard deviation within the class."""
    return sum(images[labels == c].std(0).mean().item() for c in range(10)) / 10


def pca_2d(z: torch.Tensor) -> torch.Tensor:
    zc = z - z.mean(0)
    _, _, v = torch.linalg.svd(zc, full_matrices=False)
    return zc @ v[:2].T


def main(argv=None):
    started = time.perf_counter()
    args = parse_args(argv)
    dirs = out_dirs(args)
    device = pick_device(args.device)

    train, test = load_splits(args.data_dir, args.quick)

    # The two trained encoders: Task 2's classifier (frozen here) and Task 1's autoencoder
    clf_path, ae_path = dirs["checkpoints"] / "task2_classifier.pt", dirs["checkpoints"] / "task1_autoencoder.pt"
    clf_ckpt = load_or_train(clf_path, task2_classifier, upstream_flags(args), expected_architecture(task2_classifier))
    ae_ckpt = load_or_train(ae_path, task1_autoencoder, upstream_flags(args) + ["--explore-epochs", "0"],
                            expected_architecture(task1_autoencoder))
    arch = clf_ckpt["config"]
    ae_results = read_json(dirs["results"] / "task1_autoencoder.json")

    encoder = Encoder(arch["latent_dim"], arch["channels"], fc=True)
    encoder.load_state_dict(clf_ckpt["state_dict"]["encoder"])
    encoder.requires_grad_(False)  # frozen: no gradients ...
    encoder.eval()                 # ... and BatchNorm uses (and keeps) its running statistics

    # Train a fresh decoder of Task 1's architecture on the frozen codes; the optimiser holds
    # only the decoder's parameters, and fit() keeps the encoder in eval mode.
    generator = seed_everything(args.seed)
    decoder = Decoder(arch["latent_dim"], arch["channels"], fc=True)
    model = nn.Sequential(encoder, decoder)
    history = fit(model, train, test, objective="l1", epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  device=device, generator=generator, params=decoder.parameters(), frozen=(encoder,),
                  label="classifier-decoder ")
    save_checkpoint(dirs["checkpoints"] / f"{NAME}.pt", {"decoder": decoder}, arch)

    # The encoder must be bit-identical to the checkpoint (weights and BatchNorm statistics)
    reference = clf_ckpt["state_dict"]["encoder"]
    current = encoder.state_dict()
    unchanged = reference.keys() == current.keys() and all(torch.equal(reference[k], current[k].cpu())
                                                           for k in reference)
    print(f"encoder unchanged after training: {unchanged}")

    # Task 1's autoencoder, for the comparison
    ae_encoder = Encoder(**ae_ckpt["config"])
    ae_decoder = Decoder(**ae_ckpt["config"])
    ae_encoder.load_state_dict(ae_ckpt["state_dict"]["encoder"])
    ae_decoder.load_state_dict(ae_ckpt["state_dict"]["decoder"])
    for m in (encoder, decoder, ae_encoder, ae_decoder):
        m.to(device)

    (x_tr, y_tr), (x_te, y_te) = train, test
    codes = {"autoencoder": (encode(ae_encoder, x_tr, device), encode(ae_encoder, x_te, device)),
             "classifier": (encode(encoder, x_tr, device), encode(encoder, x_te, device))}
    recon = {"autoencoder": decode(ae_decoder, codes["autoencoder"][1], device),
             "classifier_decoder": decode(decoder, codes["classifier"][1], device)}
    l1_per_image = {k: (r - x_te).abs().mean((1, 2, 3)) for k, r in recon.items()}

    final = {
        "encoder_unchanged": unchanged,
        "test_l1": history[-1]["test_loss"],
        "train_l1": evaluate(model, *train, "l1", device)["loss"],
        "train_seconds": history[-1]["seconds"],
        "task1_ae_test_l1": ae_results["final"]["test_l1"],
        "per_class_test_l1": {k: per_class(v, y_te) for k, v in l1_per_image.items()},
        "latent": {k: latent_geometry(ztr, y_tr, zte, y_te, args.seed) for k, (ztr, zte) in codes.items()},
        "within_class_pixel_std": {"test_digits": within_class_pixel_std(x_te, y_te)}
                                  | {k: within_class_pixel_std(r, y_te) for k, r in recon.items()},
    }
    for k, g in final["latent"].items():
        print(f"{k:11s} latent: within {g['within_class_spread']:.3f}, between {g['between_class_separation']:.3f}, "
              f"ratio {g['separation_to_spread_ratio']:.2f}, NCM acc {100 * g['nearest_class_mean_accuracy']:.1f}%, "
              f"linear probe {100 * g['linear_probe_accuracy']:.1f}%")
    print(f"classifier-decoder test L1 {final['test_l1']:.4f} vs Task 1 AE {final['task1_ae_test_l1']:.4f}")

    # Figures: >= 60 digits (6 per class where available), per-class L1, the two latent spaces
    show = torch.cat([torch.nonzero(y_te == c).flatten()[:6] for c in range(10)])
    plots.image_rows({"input": x_te[show], "AE (Task 1)": recon["autoencoder"][show],
                      "classifier enc.\n+ decoder": recon["classifier_decoder"][show]},
                     dirs["figures"] / f"{NAME}_digits.png",
                     "Test digits, Task 1 autoencoder and frozen classifier encoder + trained decoder", per_row=20)
    plots.bars({"autoencoder (Task 1)": final["per_class_test_l1"]["autoencoder"],
                "classifier encoder + decoder": final["per_class_test_l1"]["classifier_decoder"]},
               [str(c) for c in range(10)], dirs["figures"] / f"{NAME}_per_class_l1.png",
               "test mean L1", "Per-class test L1 of the two reconstructions")
    plots.latent_scatter({f"Task 1 autoencoder (ratio {final['latent']['autoencoder']['separation_to_spread_ratio']:.2f})":
                          (pca_2d(codes["autoencoder"][1]).numpy(), y_te.numpy()),
                          f"Task 2 classifier (ratio {final['latent']['classifier']['separation_to_spread_ratio']:.2f})":
                          (pca_2d(codes["classifier"][1]).numpy(), y_te.numpy())},
                         dirs["figures"] / f"{NAME}_latent_pca.png",
                         "Test codes projected on their first two principal components "
                         "(ratio = between-class separation / within-class spread)")
    plots.history_curves(history, dirs["figures"] / f"{NAME}_curves.png", "Task 3 decoder on frozen classifier codes")
    write_json(dirs["results"] / f"{NAME}.json", {
        "config": vars(args), "architecture": arch, "history": history, "final": final,
        "environment": environment(device, started),
    })
    print(f"wrote {dirs['results'] / f'{NAME}.json'}")
    if not unchanged:
        raise SystemExit("error: the frozen encoder changed during training")


if __name__ == "__main__":
    run_main(main)
