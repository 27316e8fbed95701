"""Expanding sweeps: grid products, seeded random draws, dotted paths, whole-or-nothing validation."""

from __future__ import annotations

import copy
import math

import pytest
from pydantic import ValidationError

from trainyard.service.specpaths import set_path
from trainyard.service.sweeps import (
    MAX_SWEEP_RUNS,
    SweepPointError,
    SweepRequest,
    default_metric,
    expand,
    points,
    run_name,
)
from trainyard.trainer.datasets import BUILTIN_NAMES
from trainyard.trainer.spec import GATES, BuiltinData

BASE = {
    "name": "base",
    "dataset": {"name": "xor"},
    "model": {"type": "mlp", "hidden": [{"units": 4, "activation": "tanh"}]},
    "optimizer": {"name": "sgd", "lr": 0.1},
    "epochs": 20,
    "batch_size": 4,
}


def request(**fields) -> SweepRequest:
    return SweepRequest.model_validate({"name": "s", "spec": copy.deepcopy(BASE), **fields})


def test_grid_is_the_cartesian_product_in_order():
    sweep = request(method="grid", space={"optimizer.lr": [0.1, 0.01], "model.hidden.0.units": [4, 8, 16]})

    specs = expand(sweep)

    got = [(spec.optimizer.lr, spec.model.hidden[0].units) for spec in specs]
    assert got == [(0.1, 4), (0.1, 8), (0.1, 16), (0.01, 4), (0.01, 8), (0.01, 16)]
    assert specs[0].name == "s #001 lr=0.1 units=4" and specs[5].name == "s #006 lr=0.01 units=16"
    assert all(spec.epochs == 20 and spec.dataset.name == "xor" for spec in specs)  # the rest of the base


def test_run_names_give_floats_4_significant_digits():
    point = {"optimizer.lr": 0.0008120532108251925, "model.hidden.0.units": 31, "optimizer.momentum": 0.9}
    assert run_name("s", 0, point) == "s #001 lr=0.0008121 units=31 momentum=0.9"
    assert run_name("s", 11, {"optimizer.lr": 123456.789}) == "s #012 lr=1.235e+05"


def test_random_draws_are_reproducible_from_the_seed_and_in_range():
    space = {
        "optimizer.lr": {"log_uniform": [1e-4, 1e-1]},
        "batch_size": {"choice": [1, 2, 4]},
        "optimizer.momentum": {"uniform": [0.5, 0.9]},
        "model.hidden.0.units": {"int_uniform": [2, 6]},
    }
    first = points(request(method="random", n=50, seed=7, space=space))

    assert first == points(request(method="random", n=50, seed=7, space=space))
    assert first != points(request(method="random", n=50, seed=8, space=space))
    assert len(first) == 50
    assert all(1e-4 <= p["optimizer.lr"] <= 1e-1 and 0.5 <= p["optimizer.momentum"] <= 0.9 for p in first)
    assert {p["batch_size"] for p in first} == {1, 2, 4}
    assert {p["model.hidden.0.units"] for p in first} == set(range(2, 7))
    logs = [math.log10(p["optimizer.lr"]) for p in first]
    assert min(logs) < -3 and max(logs) > -2  # spread over the decades, not bunched at the top
    assert len(expand(request(method="random", n=50, seed=7, space=space))) == 50


def test_set_path_creates_keys_but_not_list_items():
    spec = copy.deepcopy(BASE)
    set_path(spec, "lr_schedule.name", "cosine")
    set_path(spec, "model.hidden.0.activation", "relu")
    assert spec["lr_schedule"] == {"name": "cosine"} and spec["model"]["hidden"][0]["activation"] == "relu"
    with pytest.raises(KeyError, match="model.hidden.1"):
        set_path(spec, "model.hidden.1.units", 8)
    with pytest.raises(KeyError, match="epochs.x"):
        set_path(spec, "epochs.x", 1)


def test_an_invalid_point_refuses_the_sweep_naming_point_and_path():
    sweep = request(method="grid", space={"optimizer.lr": [0.1, -1.0], "batch_size": [4]})

    with pytest.raises(SweepPointError) as caught:
        expand(sweep)

    assert caught.value.fields[0]["field"] == "points.1.optimizer.lr"
    assert "optimizer.lr=-1.0" in str(caught.value)


def test_a_point_too_large_for_its_data_refuses_the_sweep():
    sweep = request(method="grid", space={"model.hidden": [[{"units": 4}], [{"units": 4096}] * 2]})

    with pytest.raises(SweepPointError) as caught:
        expand(sweep)

    assert caught.value.fields[0]["field"] == "points.1.model.hidden"
    assert "parameters" in caught.value.fields[0]["message"]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"method": "grid", "space": {"optimizer.lr": 0.1}}, "needs a list"),
        ({"method": "grid", "space": {"optimizer.lr": []}}, "needs a list"),
        ({"method": "grid", "space": {"optimizer.lr": [0.1]}, "n": 3}, "n: is for random"),
        ({"method": "random", "space": {"optimizer.lr": {"choice": [0.1]}}}, "needs n"),
        ({"method": "random", "n": 2, "space": {"optimizer.lr": [0.1, 0.2]}}, "random sweep needs one of"),
        ({"method": "random", "n": 2, "space": {"optimizer.lr": {"log_uniform": [0, 1]}}}, "0 < low"),
        ({"method": "random", "n": 2, "space": {"optimizer.lr": {"uniform": [1, 0]}}}, "low <= high"),
        ({"method": "random", "n": 2, "space": {"optimizer.lr": {"normal": [0, 1]}}}, "random sweep needs one of"),
        ({"method": "random", "n": MAX_SWEEP_RUNS + 1, "space": {"seed": {"int_uniform": [0, 9]}}}, "n"),
        ({"method": "grid", "space": {"seed": list(range(15)), "epochs": list(range(1, 15))}}, "combinations"),
        ({"method": "grid", "space": {"optimizer..lr": [0.1]}}, "space"),
        ({"method": "bayes", "space": {"seed": [1]}}, "method"),
    ],
)
def test_bad_requests_are_refused(fields, match):
    with pytest.raises(ValidationError, match=match):
        request(**fields)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
@pytest.mark.parametrize("test_fraction", [None, 0.0, 0.3])
def test_the_default_metric_is_validation_loss_wherever_the_trainer_holds_data_out(name, test_fraction):
    """Moons, circles, spirals, iris, digits and uploads hold out 20 % unless told otherwise: ranking them by
    training loss would crown the most overfit run.  The rule is the trainer's own (``held_out``)."""
    dataset = {"name": name} if test_fraction is None else {"name": name, "test_fraction": test_fraction}
    expected = "val_loss" if BuiltinData.model_validate(dataset).held_out > 0 else "train_loss"

    assert default_metric({"dataset": dataset}) == expected
    if test_fraction is None:
        assert expected == ("train_loss" if name in GATES else "val_loss")
    assert default_metric({"dataset": {"upload": "abc"}}) == "val_loss"
    assert default_metric({"dataset": {"upload": "abc", "test_fraction": 0.0}}) == "train_loss"
