"""tune.py: the brackets of the validation study on planted score curves with known optima, and the
committed study (results/tuning.json): every choice inside its grid or at a named cap, and Task 1's
exploration with 3+ seeds per variant and a capacity-matched conv-only variant."""
import json
import math

import pytest

import tune
from conftest import REPO


def planted(optimum: float, calls: list):
    """A validation L1 with one sharp minimum at `optimum` (only it is within 2 % of the best), equal costs."""
    def score(v):
        calls.append(v)
        distance = math.log(v / optimum) if optimum > 0 else v - optimum  # a shift may be 0
        return {"val_l1": 0.03 * (1 + distance ** 2), "cost": 1.0}
    return score


@pytest.mark.parametrize("question, values, optimum, chosen, tried", [
    ("task1.lr", [0.001, 0.003, 0.01], 0.09, 0.11, [0.001, 0.003, 0.01, 0.033, 0.11, 0.37]),  # grows upwards
    ("task1.batch_size", [128, 256, 512], 32, 32, [16, 32, 64, 128, 256, 512]),               # and downwards
    ("task2.epochs", [3, 6, 12], 6, 6, [3, 6, 12]),                                           # inside: as asked
])
def test_a_grid_grows_past_its_edge_until_the_choice_is_inside(question, values, optimum, chosen, tried):
    calls = []
    a = tune.bracket(question, values, planted(optimum, calls), "val_l1")
    assert (a["chosen"], a["values"], a["cap"]) == (chosen, tried, None)
    assert sorted(set(calls)) == tried and a["values"][0] < a["chosen"] < a["values"][-1]


def test_a_choice_at_a_cap_names_the_cap_and_the_grid_stops_there():
    a = tune.bracket("task1.epochs", [4, 6, 8], planted(100, []), "val_l1")
    assert (a["chosen"], a["values"], a["cap"]) == (10, [4, 6, 8, 10], tune.CAPS["task1.epochs"][2])
    a = tune.bracket("task2.augment_shift", [1, 2, 3], planted(0, []), "val_l1")
    assert (a["chosen"], a["values"]) == (0, [0, 1, 2, 3]) and a["cap"].startswith("0 is no augmentation")
    a = tune.bracket("plain.lr", [1.0, 2.0], planted(1e6, []), "val_l1", max_steps=2)
    assert a["values"] == [1.0, 2.0, 4.0, 8.0] and a["chosen"] == 8.0 and "not bracketed" in a["cap"]


def test_the_committed_study_brackets_every_choice_and_explores_over_seeds():
    study = json.loads((REPO / "results" / "tuning.json").read_text())
    for question, a in study["questions"].items():
        task, key = question.split(".")
        assert study["chosen"][task][key] == a["chosen"]
        if a["cap"] is None:
            assert a["values"][0] < a["chosen"] < a["values"][-1], question
        else:
            smallest, largest = study["caps"][question]["smallest"], study["caps"][question]["largest"]
            assert a["chosen"] in (smallest, largest) and a["cap"] == study["caps"][question]["reason"], question
    ex = study["exploration"]
    assert len(ex["seeds"]) >= 3 and len(ex["budgets"]) == 2
    fc = ex["variants"]["with FC"]["parameters"]
    assert abs(ex["variants"]["conv-only, wide"]["parameters"] / fc - 1) < 0.05
    assert ex["variants"]["conv-only"]["parameters"] < 0.8 * fc
    for e in ex["budgets"]:
        assert all(len(v[f"{e} epochs"]["val_l1"]) == len(ex["seeds"]) for v in ex["variants"].values())
