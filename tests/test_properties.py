"""Scientific properties of the pipeline, each pinned by a known answer: planted data, hand computations,
or a spy on fit() that records what a task trains with. Every test is tiny (CPU, seconds in all)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import data
import fewshot
import task1_autoencoder
import task2_classifier
import task3_classifier_decoding
import task4_few_shot
import task5_transfer_learning
from analysis import latent_geometry
from conftest import synthetic_digits
from models import MLP, Decoder, Encoder
from train import UserError, evaluate, fit, save_checkpoint, seed_everything

CPU = torch.device("cpu")
TASKS = (task1_autoencoder, task2_classifier, task3_classifier_decoding, task4_few_shot, task5_transfer_learning)


class Stop(Exception):
    """Raised by a spy on fit(): what the task would train with is recorded, nothing trains."""


def _first_fit(module, argv, monkeypatch) -> tuple:
    """(training data, keyword arguments) of the first fit() call of `module`.main(argv)."""
    seen = []

    def spy(model, train, test, **kwargs):
        seen.append((train, kwargs))
        raise Stop

    monkeypatch.setattr(module, "fit", spy)
    with pytest.raises(Stop):
        module.main(argv)
    return seen[0]


def _digits(n, seed=0):
    images, labels = synthetic_digits(n, seed)
    return torch.from_numpy(images).float().div(255).unsqueeze(1), torch.from_numpy(labels).long()


def _dot(n, row=14, col=14):
    """n images, each black with one bright pixel at (row, col)."""
    x = torch.zeros(n, 1, 28, 28)
    x[:, 0, row, col] = 1.0
    return x


def _displacements(x):
    """(dy, dx) of every image's single bright pixel from (14, 14); asserts that it is still one pixel."""
    assert torch.equal(x.sum((1, 2, 3)), torch.ones(len(x))) and torch.equal(x.amax((1, 2, 3)), torch.ones(len(x)))
    pos = x.flatten(1).argmax(1)
    return torch.stack([pos // 28 - 14, pos % 28 - 14], 1)


# ----------------------------------------------------------------------------- 1. the losses
def test_the_task_losses_are_cross_entropy_and_mean_absolute_error(mnist_root, tmp_path, monkeypatch):
    """Catches a classifier loss that is not the cross-entropy of the logits against the labels (NLL on
    raw logits, a sum, label smoothing) and an autoencoder loss that is not the mean |x_hat - x|."""
    flags = ["--quick", "--device", "cpu", "--data-dir", str(mnist_root), "--out-dir", str(tmp_path)]
    _, kw2 = _first_fit(task2_classifier, flags, monkeypatch)
    logits, labels = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]]), torch.tensor([0, 2])
    by_hand = (-math.log(math.exp(2) / (math.exp(2) + 2)) - math.log(math.exp(3) / (1 + math.e + math.exp(3)))) / 2
    assert kw2["loss_fn"](logits, labels).item() == pytest.approx(by_hand, rel=1e-6)
    (x1, target1), kw1 = _first_fit(task1_autoencoder, flags, monkeypatch)
    assert target1 is x1  # the input is its own target
    recon, image = torch.tensor([[0.2, 0.9], [0.5, 0.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert kw1["loss_fn"](recon, image).item() == pytest.approx((0.2 + 0.1 + 0.5 + 0.0) / 4, rel=1e-6)


# ----------------------------------------------------------------------------- 2. validation numbers and choices
def test_validation_accuracy_is_recomputable_from_the_model_on_the_validation_images_alone(mnist_root, monkeypatch):
    """Catches a val_accuracy computed on other images (test, training), in train mode, or leaking into
    training: it equals evaluate() of the trained model on the validation split (training images
    validation_start(n)..n-1); planted validation labels move it and nothing else; test labels don't."""
    args = type("Args", (), {"data_dir": str(mnist_root), "quick": False})()
    _, val_split, _ = fewshot.load_data(args)
    x_all, y_all = data.load_mnist(str(mnist_root))
    assert data.validation_start(300) == 250
    assert torch.equal(val_split[0], x_all[250:]) and torch.equal(val_split[1], y_all[250:])

    train, val, test = _digits(100, 0), _digits(60, 1), _digits(40, 2)
    recipe = fewshot.Recipe(epochs=1)
    models, real_fit = [], fewshot.fit
    monkeypatch.setattr(fewshot, "fit", lambda model, *a, **k: models.append(model) or real_fit(model, *a, **k))
    _, base = fewshot.train_seeds(recipe, (train, val, test), [0, 1], CPU)
    for row, model in zip(base["per_seed"], models):
        assert row["val_accuracy"] == evaluate(model, val, F.cross_entropy, CPU)["accuracy"]
    with torch.no_grad():
        planted = models[0].eval()(val[0]).argmax(1)  # labels the seed-0 model gets all right
        planted_test = models[0](test[0]).argmax(1)
    _, s = fewshot.train_seeds(recipe, (train, (val[0], planted), test), [0], CPU)
    assert s["per_seed"][0]["val_accuracy"] == 1.0 > base["per_seed"][0]["val_accuracy"]
    assert s["per_seed"][0]["test_accuracy"] == base["per_seed"][0]["test_accuracy"]  # validation never trains
    _, s = fewshot.train_seeds(recipe, (train, val, (test[0], planted_test)), [0], CPU)
    assert s["per_seed"][0]["test_accuracy"] == 1.0
    assert s["per_seed"][0]["val_accuracy"] == base["per_seed"][0]["val_accuracy"]


def test_choices_read_validation_numbers_only():
    """Catches a recipe choice (fewshot.select) or a tuning choice (tune.choose) that looks at test numbers."""
    from tune import choose

    summaries = {"a": {"val_accuracy_mean": 0.70, "test_accuracy_mean": 0.95},
                 "b": {"val_accuracy_mean": 0.80, "test_accuracy_mean": 0.60},
                 "c": {"val_accuracy_mean": 0.75, "test_accuracy_mean": 0.99}}
    assert fewshot.select(summaries) == "b"
    rows = [{"setting": "a", "val_accuracy": 0.9900, "cost": 10},
            {"setting": "b", "val_accuracy": 0.9950, "cost": 20},
            {"setting": "c", "val_accuracy": 0.9945, "cost": 5}]  # within 0.1 points of b, and cheapest
    assert choose(rows, "val_accuracy")["setting"] == "c"
    for tests in ((0.999, 0.1, 0.1), (0.1, 0.1, 0.999), (0.1, 0.999, 0.1)):
        poisoned = [r | {"test_accuracy": t, "test_loss": 1 - t} for r, t in zip(rows, tests)]
        assert choose(poisoned, "val_accuracy")["setting"] == "c"


# ----------------------------------------------------------------------------- 3. frozen against fine-tuned
@pytest.mark.parametrize("freeze", [True, False])
def test_a_frozen_encoder_stays_bit_identical_and_a_fine_tuned_one_trains(freeze, monkeypatch):
    """Catches a frozen encoder whose weights or BatchNorm statistics move, and a fine-tuned one that doesn't train."""
    seed_everything(5)
    start = Encoder()
    for name, buf in start.named_buffers():  # non-trivial statistics, so that a reset would show too
        if "running" in name:
            buf.uniform_(0.5, 1.5)
    models, real_fit = [], fewshot.fit
    monkeypatch.setattr(fewshot, "fit", lambda model, *a, **k: models.append(
        (model, {n: t.clone() for n, t in model.state_dict().items()})) or real_fit(model, *a, **k))
    train = _digits(40)
    fewshot.train_seeds(fewshot.Recipe(freeze_encoder=freeze, epochs=1, batch_size=10), (train, train, None), [0], CPU,
                        init_encoder=start)
    model, before = models[0]
    after = model[0].state_dict()
    same = {k: torch.equal(v, after[k]) for k, v in start.state_dict().items()}
    if freeze:
        assert all(same.values()), [k for k, ok in same.items() if not ok]
    else:
        assert not same["features.0.0.weight"] and not same["to_latent.1.weight"]
        assert not same["features.0.1.running_mean"] and not same["features.0.1.num_batches_tracked"]
    assert not torch.equal(before["1.net.0.weight"], model[1].net[0].weight)  # the MLP trains in both


# ----------------------------------------------------------------------------- 4. evaluation
def test_evaluation_is_a_deterministic_eval_mode_pass_that_restores_every_mode():
    """Catches evaluation with dropout on or BatchNorm on batch statistics, a non-deterministic one,
    and one that leaves a submodule in a mode other than the one it found (or a frozen encoder training)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(32, 10))
    x, y = _digits(300)
    with torch.no_grad():
        for _ in range(3):
            model(x[:100] * 3)  # running statistics far from any batch's own
    model.train()
    model[2].eval()
    modes = [m.training for m in model.modules()]
    first, second = (evaluate(model, (x, y), F.cross_entropy, CPU, batch_size=64) for _ in range(2))
    assert first == second and [m.training for m in model.modules()] == modes
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 50]) for i in range(0, len(x), 50)])
    assert first["accuracy"] == (logits.argmax(1) == y).sum().item() / len(y)
    assert first["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)

    clf = nn.Sequential(Encoder(4, (4, 8)), MLP(4, 8))
    clf[0].requires_grad_(False)
    fit(clf, (x[:40], y[:40]), (x[:20], y[:20]), loss_fn=F.cross_entropy, epochs=2, batch_size=10, lr=1e-3, device=CPU,
        generator=seed_everything(0), frozen=(clf[0],))
    assert not any(m.training for m in clf[0].modules()) and clf[1].training
    evaluate(clf, (x, y), F.cross_entropy, CPU)
    assert not any(m.training for m in clf[0].modules()) and clf[1].training


# ----------------------------------------------------------------------------- 5. the shift augmentation
def test_random_shift_moves_by_at_most_k_pixels_every_shift_occurs_and_0_is_off(mnist_root, tmp_path, monkeypatch):
    """Catches a shift larger than stated, one that never reaches some displacement (an off-by-one in
    the range), a non-zero shift at 0, and Task 2 training without (or ignoring) --augment-shift."""
    x = _dot(2000)
    for k in (1, 2, 3):
        d = _displacements(data.random_shift(x, k, torch.Generator().manual_seed(k)))
        assert d.abs().max() == k
        assert len({tuple(v) for v in d.tolist()}) == (2 * k + 1) ** 2  # every (dy, dx) in [-k, k]^2 occurs
    assert data.random_shift(x, 0, torch.Generator().manual_seed(0)) is x

    flags = ["--quick", "--device", "cpu", "--data-dir", str(mnist_root), "--out-dir", str(tmp_path)]
    _, kwargs = _first_fit(task2_classifier, flags, monkeypatch)  # default: --augment-shift 1
    d = _displacements(kwargs["augment"](x, torch.Generator().manual_seed(0)))
    assert d.abs().max() == 1 and len({tuple(v) for v in d.tolist()}) == 9
    _, kwargs = _first_fit(task2_classifier, flags + ["--augment-shift", "0"], monkeypatch)
    assert kwargs["augment"] is None


# ----------------------------------------------------------------------------- 6. seeds
def test_seeds_give_different_initialisations_and_orders_and_a_seed_repeats():
    """Catches seeds that don't reach the initialisation or the data order (all seeds alike), or a seed
    that doesn't repeat its run."""
    def draw(seed):
        g = seed_everything(seed)
        weights = torch.cat([p.detach().flatten() for p in Encoder().parameters()])
        return weights, torch.cat(data.batches(100, 10, shuffle=True, generator=g))

    runs = [draw(s) for s in range(4)]
    for i in range(4):
        for j in range(i):
            assert not torch.equal(runs[i][0], runs[j][0]) and not torch.equal(runs[i][1], runs[j][1])
    again = draw(2)
    assert torch.equal(again[0], runs[2][0]) and torch.equal(again[1], runs[2][1])


# ----------------------------------------------------------------------------- 7. the pre-training gain
@pytest.fixture(scope="module")
def few_shot_runs(mnist_root, tmp_path_factory):
    """Tasks 4 and 5 with --quick on the synthetic MNIST (each fit() cut to one epoch), Task 5 from a
    saved random autoencoder; returns (out dir, {fit label: recorded call})."""
    out = tmp_path_factory.mktemp("few_shot")
    seed_everything(123)
    ae_encoder = Encoder()
    (out / "checkpoints").mkdir()
    save_checkpoint(out / "checkpoints" / "task1_autoencoder.pt", {"encoder": ae_encoder, "decoder": Decoder()})
    calls, real_fit = {}, fewshot.fit

    def spy(model, train, test, **kwargs):
        calls[kwargs["label"].strip()] = {"x": train[0].clone(), "kwargs": dict(kwargs),
                                          "state": {k: v.clone() for k, v in model.state_dict().items()},
                                          "generator": kwargs["generator"].get_state()}
        return real_fit(model, train, test, **kwargs | {"epochs": 1})

    flags = ["--quick", "--device", "cpu", "--data-dir", str(mnist_root), "--out-dir", str(out)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fewshot, "fit", spy)
        task4_few_shot.main(flags)
        task5_transfer_learning.main(flags)
    return out, calls, ae_encoder.state_dict()


def test_each_pretraining_gain_pairs_recipes_that_differ_only_in_the_starting_weights(few_shot_runs):
    """Catches a gain computed against a Task 4 recipe with other settings (epochs, lr, schedule,
    augmentation, freezing), or runs of a pair that differ in more than the encoder's starting weights."""
    import json

    out, calls, ae_state = few_shot_runs
    t4 = json.loads((out / "results" / "task4_few_shot.json").read_text())["final"]["recipes"]
    t5 = json.loads((out / "results" / "task5_transfer_learning.json").read_text())["final"]
    pairs = {name: g["task4_recipe"] for name, g in t5["pretraining_gain"].items()}
    assert pairs == {"fine-tune": "plain", "fine-tune, augmented": "augmented",
                     "fine-tune, schedule only": "schedule only"}  # the frozen ones have no Task 4 twin
    for name5, name4 in pairs.items():
        assert t5["recipes"][name5]["recipe"] == t4[name4]["recipe"]
        assert [r["seed"] for r in t5["recipes"][name5]["per_seed"]] == [r["seed"] for r in t4[name4]["per_seed"]]
        for seed in (0, 1):
            a, b = calls[f"scratch, {name4}, seed {seed}"], calls[f"transfer, {name5}, seed {seed}"]
            assert torch.equal(a["x"], b["x"]) and torch.equal(a["generator"], b["generator"])
            skip = {"label", "generator", "eval_every"}  # eval_every only sets when the test curve is read
            assert {k: v for k, v in a["kwargs"].items() if k not in skip} == \
                   {k: v for k, v in b["kwargs"].items() if k not in skip}
            assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"] if k.startswith("1."))  # same MLP
            assert all(torch.equal(ae_state[k], b["state"]["0." + k]) for k in ae_state)  # the AE's encoder
            assert not torch.equal(a["state"]["0.to_latent.1.weight"], b["state"]["0.to_latent.1.weight"])


def test_pretraining_gain_of_hand_made_summaries():
    """Catches a wrong difference, standard errors with the wrong variances or counts, and a pairing by
    position instead of by seed."""
    t5 = {"seeds": 4, "test_accuracy_mean": 0.8, "test_accuracy_std": 0.1,
          "per_seed": [{"seed": s, "test_accuracy": a} for s, a in ((0, 0.8), (1, 0.7), (2, 0.9), (7, 0.8))]}
    t4 = {"seeds": 3, "test_accuracy_mean": 0.6, "test_accuracy_std": 0.05,
          "per_seed": [{"seed": s, "test_accuracy": a} for s, a in ((2, 0.6), (0, 0.6), (1, 0.65))]}
    g = fewshot.pretraining_gain(t5, t4)
    diffs = [0.8 - 0.6, 0.7 - 0.65, 0.9 - 0.6]  # seeds 0, 1, 2; seed 7 has no partner
    mean = sum(diffs) / 3
    paired = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2) / math.sqrt(3)
    assert g["test_accuracy_difference"] == pytest.approx(0.2)
    assert g["standard_error"] == pytest.approx(math.sqrt(0.1 ** 2 / 4 + 0.05 ** 2 / 3))
    assert g["paired_seeds"] == 3 and g["paired_standard_error"] == pytest.approx(paired)


# ----------------------------------------------------------------------------- 8. summaries over seeds
def test_summaries_are_the_mean_and_the_sample_standard_deviation():
    """Catches the population std (n) instead of the sample std (n - 1), a wrong mean, or a summarised seed."""
    rows = [{"seed": 0, "test_accuracy": 0.1, "val_accuracy": 0.5},
            {"seed": 1, "test_accuracy": 0.2, "val_accuracy": 0.5},
            {"seed": 2, "test_accuracy": 0.6, "val_accuracy": 0.8}]
    s = fewshot.summarise(rows)
    assert s["seeds"] == 3 and s["per_seed"] == rows and "seed_mean" not in s
    assert s["test_accuracy_mean"] == pytest.approx(0.3)
    assert s["test_accuracy_std"] == pytest.approx(math.sqrt(0.14 / 2))  # population std: sqrt(0.14 / 3)
    assert s["val_accuracy_mean"] == pytest.approx(0.6) and s["val_accuracy_std"] == pytest.approx(math.sqrt(0.06 / 2))
    assert fewshot.summarise(rows[:1])["test_accuracy_std"] == 0.0


# ----------------------------------------------------------------------------- 9.-10. the latent analysis
def test_probes_are_fitted_on_training_codes_only():
    """Catches class means or a linear probe fitted on the test codes: on codes unrelated to the labels
    that would score well above chance (about 0.28 here); honest ones score near 0.1. Planted classes score ~1."""
    g = torch.Generator().manual_seed(0)
    z_train, z_test = torch.randn(2000, 32, generator=g), torch.randn(500, 32, generator=g)
    y_train, y_test = torch.randint(0, 10, (2000,), generator=g), torch.randint(0, 10, (500,), generator=g)
    noise = latent_geometry(z_train, y_train, z_test, y_test, seed=0)
    assert noise["nearest_class_mean_accuracy"] < 0.2 and noise["linear_probe_accuracy"] < 0.2
    centres = 4 * torch.randn(10, 32, generator=g)
    planted = latent_geometry(z_train + centres[y_train], y_train, z_test + centres[y_test], y_test, seed=0)
    assert planted["nearest_class_mean_accuracy"] > 0.98 and planted["linear_probe_accuracy"] > 0.98


# ----------------------------------------------------------------------------- 11. the flags
def _bad_flags():
    training = ["task1_autoencoder", "task2_classifier", "task3_classifier_decoding", "task4_few_shot",
                "task5_transfer_learning", "latent_sweep"]
    cases = [(t, f, v) for t in training for f, v in (("--epochs", "0"), ("--lr", "0"), ("--lr", "-1"),
                                                        ("--lr", "nan"), ("--batch-size", "0"), ("--seed", "-1"))]
    cases += [(t, "--seeds", "0") for t in ("task4_few_shot", "task5_transfer_learning", "latent_sweep")]
    cases += [("task2_classifier", "--augment-shift", "5"), ("task2_classifier", "--augment-shift", "-1"),
              ("task2_classifier", "--hidden", "0"), ("task1_autoencoder", "--latent-dim", "1569"),
              ("task1_autoencoder", "--latent-dim", "0"), ("task2_classifier", "--latent-dim", "0"),
              ("q2_equivariance", "--seed", "-1"), ("tune", "--seed", "-1")]
    return cases


@pytest.mark.parametrize("script, flag, value", _bad_flags())
def test_a_numeric_flag_out_of_range_ends_in_one_line_before_any_data_is_loaded(script, flag, value, tmp_path,
                                                                                 monkeypatch, capsys):
    """Catches a flag accepted outside its range, checked only after the data (or a dataset error
    instead of the flag's), an error of more than one line, or a run that starts writing first."""
    import tune

    module = __import__(script)
    loaded = []
    for where in (data, tune):
        monkeypatch.setattr(where, "load_mnist", lambda *a, **k: loaded.append(a) or 1 / 0)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        module.main([flag, value, "--data-dir", str(tmp_path / "no-such-folder"), "--out-dir", str(out)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and err.endswith("\n") and flag in err
    assert not loaded and not out.exists()


@pytest.mark.parametrize("module", TASKS, ids=lambda m: m.__name__)
def test_an_empty_out_dir_is_refused_before_training(module, mnist_root, monkeypatch):
    """Catches --out-dir '' taken as the repository (or runs/quick) and a task that loads or trains first."""
    calls = []
    monkeypatch.setattr(data, "load_mnist", lambda *a, **k: calls.append("data") or 1 / 0)
    monkeypatch.setattr(module, "fit", lambda *a, **k: calls.append("fit") or 1 / 0, raising=False)
    monkeypatch.setattr(module, "save_results", lambda *a, **k: calls.append("results"))
    with pytest.raises(UserError, match="--out-dir"):
        module.main(["--out-dir", "", "--quick", "--device", "cpu", "--data-dir", str(mnist_root)])
    assert calls == []
