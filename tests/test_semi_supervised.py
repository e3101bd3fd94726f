"""extras/semi_supervised.py: which images train with which labels, and the pseudo-label filter."""
import json
import math
import shutil

import numpy as np
import pytest
import torch

import semi_supervised
from conftest import make_mnist, write_idx
from data import load_mnist, validation_start


def test_confidence_filtering_keeps_exactly_the_predictions_above_the_threshold():
    """Softmax of (a, 0, 0) has confidence e^a / (e^a + 2): 0.787 for a = 2, 0.905 for a = ln 19, 0.998 for a = 7."""
    logits = torch.tensor([[2.0, 0, 0], [0, math.log(19), 0], [0, 0, 7.0], [0, 0, 0]])
    labels, keep = semi_supervised.confident(logits, 0.9)
    assert labels.tolist() == [0, 1, 2, 0] and keep.tolist() == [False, True, True, False]
    assert semi_supervised.confident(logits, 0.95)[1].tolist() == [False, False, True, False]


def _run(root, out, monkeypatch):
    """main() on the quick settings with every self_train() call's data recorded."""
    calls, real = [], semi_supervised.self_train

    def spy(start_recipe, labelled, unlabelled, val, test, *rest, **kw):
        calls.append({"labelled": labelled, "unlabelled": unlabelled, "val": val, "test": test})
        return real(start_recipe, labelled, unlabelled, val, test, *rest, **kw)

    monkeypatch.setattr(semi_supervised, "self_train", spy)
    semi_supervised.main(["--quick", "--device", "cpu", "--data-dir", str(root), "--out-dir", str(out)])
    return calls, json.loads((out / "results" / "semi_supervised.json").read_text())


@pytest.fixture(scope="module")
def two_runs(chain, mnist_root, tmp_path_factory):
    """The extra on the synthetic MNIST, and again with the labels of the unlabelled images 100..249 scrambled;
    a threshold low enough that every round keeps pseudo-labelled images (so a leak would show)."""
    monkeypatch, runs = pytest.MonkeyPatch(), []
    monkeypatch.setattr(semi_supervised, "GRIDS", semi_supervised.GRIDS | {"threshold": (0.0,)})  # --quick: one value
    other = tmp_path_factory.mktemp("scrambled")
    shutil.copytree(mnist_root / "MNIST", other / "MNIST")
    y = load_mnist(mnist_root, train=True)[1].numpy()
    y[100:validation_start(len(y))] = (y[100:validation_start(len(y))] + 3) % 10
    write_idx(other / "MNIST" / "raw" / "train-labels-idx1-ubyte", y.astype(np.uint8))
    for root in (mnist_root, other):
        out = tmp_path_factory.mktemp("semi")
        shutil.copytree(chain[0] / "checkpoints", out / "checkpoints")
        shutil.copytree(chain[0] / "results", out / "results")
        runs.append(_run(root, out, monkeypatch))
    monkeypatch.undo()
    return runs


def test_the_labelled_unlabelled_and_validation_images_are_the_stated_disjoint_sets(two_runs, mnist_root):
    (calls, _), _ = two_runs
    x, y = load_mnist(mnist_root, train=True)
    s = validation_start(len(x))
    for call in calls:
        assert torch.equal(call["labelled"][0], x[:100]) and torch.equal(call["labelled"][1], y[:100])
        assert torch.is_tensor(call["unlabelled"]) and torch.equal(call["unlabelled"], x[100:s])  # images, no labels
        assert torch.equal(call["val"][0], x[s:]) and torch.equal(call["val"][1], y[s:])


def test_no_label_of_the_unlabelled_images_reaches_training_or_the_choice(two_runs):
    """Scrambled labels of images 100..249 change only the report of the pseudo-labels' accuracy."""
    (_, a), (_, b) = two_runs

    def trained(res):  # every number that training or the choice produced
        runs = [row for name in ("autoencoder", "random") if res["final"][name] for h in res["final"][name]["history"]
                for row in h]
        untimed = [{k: v for k, v in row.items() if k != "train_seconds"} for q in res["questions"].values()
                   for row in q["rows"]]
        return untimed, res["final"]["chosen"]["threshold"], res["final"]["chosen"]["rounds"], \
            [(r["val_accuracy"], r["test_accuracy"]) for r in runs], [r["pseudo"]["kept"] for r in runs if "pseudo" in r]
    assert trained(a) == trained(b) and sum(trained(a)[4]) > 0

    def pseudo_accuracy(res):
        return [r["pseudo"]["accuracy"] for h in res["final"]["autoencoder"]["history"] for r in h if "pseudo" in r]
    assert pseudo_accuracy(a) != pseudo_accuracy(b)  # the report after training did read the (scrambled) labels


def test_the_choice_reads_validation_only(two_runs):
    from tune import choose

    (_, res), _ = two_runs
    for key, q in res["questions"].items():
        assert all(not any(k.startswith("test") for k in row) for row in q["rows"])
        assert q["chosen"] == choose(q["rows"], "val_accuracy")[key] == res["final"]["chosen"][key]
    assert res["final"]["chosen"]["rounds"] == q["rows"][q["values"].index(q["chosen"])]["rounds"]
