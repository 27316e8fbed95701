"""Tests for trainyard.trainer.spec: the job spec (``TrainSpec``), its limits and ``check_fits_data``."""

from __future__ import annotations

import copy
import json
from typing import Any, Callable

import pydantic
import pytest

from trainyard.trainer.datasets import BUILTIN_NAMES, MAX_SAMPLES
from trainyard.trainer.optimizers import learning_rate
from trainyard.trainer.spec import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_HIDDEN_LAYERS,
    MAX_MIN_DELTA,
    MAX_NAME_LENGTH,
    MAX_NOTES_LENGTH,
    MAX_PARAMETERS,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_UNITS,
    MAX_WORKING_VALUES,
    AdamSpec,
    BuiltinData,
    CosineSchedule,
    MLPModel,
    PerceptronModel,
    RMSpropSpec,
    SGDSpec,
    SpecError,
    TrainSpec,
    UploadData,
    check_fits_data,
    count_parameters,
    field_errors,
    layer_sizes,
)

# The example job spec of the project's design page (its section "The job spec"), verbatim.
DESIGN_EXAMPLE_JSON = """
{
  "name": "xor-tanh",
  "dataset": {"name": "xor"},
  "model": {"type": "mlp",
            "hidden": [{"units": 8, "activation": "tanh"}],
            "init": "xavier"},
  "loss": "auto",
  "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9},
  "epochs": 2000,
  "batch_size": 4,
  "seed": 0,
  "tags": ["seed-example"]
}
"""
BASE: dict[str, Any] = json.loads(DESIGN_EXAMPLE_JSON)


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


# ------------------------------------------------------------------ valid specs
def _check_design_example(spec: TrainSpec) -> None:
    assert spec.version == 1
    assert spec.name == "xor-tanh"
    assert isinstance(spec.dataset, BuiltinData)
    assert spec.dataset.name == "xor"
    assert spec.dataset.test_fraction is None
    assert spec.dataset.held_out == 0.0
    assert spec.dataset.standardize is False
    assert isinstance(spec.model, MLPModel)
    assert spec.model.init == "xavier"
    assert len(spec.model.hidden) == 1
    assert spec.model.hidden[0].units == 8
    assert spec.model.hidden[0].activation == "tanh"
    assert spec.loss == "auto"
    assert isinstance(spec.optimizer, SGDSpec)
    assert spec.optimizer.lr == 0.5
    assert spec.optimizer.momentum == 0.9
    assert spec.optimizer.nesterov is False
    assert spec.optimizer.weight_decay == 0.0
    assert spec.lr_schedule is None
    assert spec.epochs == 2000
    assert spec.batch_size == 4
    assert spec.seed == 0
    assert spec.tags == ["seed-example"]
    assert spec.notes == ""
    assert spec.early_stopping is None


def test_design_example_validates_from_dict():
    _check_design_example(TrainSpec.model_validate(base()))


def test_design_example_validates_from_json_text():
    _check_design_example(TrainSpec.model_validate_json(DESIGN_EXAMPLE_JSON))
    _check_design_example(TrainSpec.from_json(DESIGN_EXAMPLE_JSON.encode()))


def test_round_trips_through_json_and_dict():
    spec = TrainSpec.model_validate(base())
    again = TrainSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert again.fingerprint() == spec.fingerprint()
    assert TrainSpec.model_validate(spec.model_dump()) == spec


def test_minimal_spec_defaults():
    spec = TrainSpec.model_validate({"dataset": {"name": "xor"}})
    assert spec.version == 1
    assert spec.name == "run"
    assert isinstance(spec.model, MLPModel)
    assert spec.model.type == "mlp"
    assert spec.model.hidden == []
    assert spec.model.init == "xavier"
    assert spec.loss == "auto"
    assert isinstance(spec.optimizer, SGDSpec)
    assert (spec.optimizer.lr, spec.optimizer.momentum, spec.optimizer.nesterov) == (0.01, 0.0, False)
    assert spec.optimizer.weight_decay == 0.0
    assert spec.lr_schedule is None
    assert spec.epochs == 100
    assert spec.batch_size == 32
    assert spec.shuffle is True
    assert spec.dtype == "float64"
    assert spec.seed == 0
    assert spec.early_stopping is None
    assert spec.snapshot_every is None
    assert spec.tags == []
    assert spec.notes == ""
    assert spec.dataset.n_samples is None
    assert spec.dataset.noise is None
    assert spec.dataset.standardize is False


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_default_held_out_share(name):
    spec = TrainSpec.model_validate({"dataset": {"name": name}})
    assert spec.dataset.test_fraction is None
    expected = 0.0 if name in ("or", "and", "xor") else 0.2
    assert spec.dataset.held_out == expected


@pytest.mark.parametrize("name", ["xor", "moons"])
@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.9])
def test_explicit_test_fraction_wins(name, fraction):
    spec = TrainSpec.model_validate({"dataset": {"name": name, "test_fraction": fraction}})
    assert spec.dataset.held_out == fraction


def test_upload_dataset_defaults():
    spec = TrainSpec.model_validate({"dataset": {"upload": "my-data_01"}})
    assert isinstance(spec.dataset, UploadData)
    assert spec.dataset.upload == "my-data_01"
    assert spec.dataset.held_out == 0.2
    assert spec.dataset.standardize is False


def test_model_without_type_is_an_mlp():
    spec = TrainSpec.model_validate({"dataset": {"name": "moons"}, "model": {"hidden": [{"units": 3}]}})
    assert isinstance(spec.model, MLPModel)
    assert spec.model.type == "mlp"
    assert spec.model.hidden[0].units == 3
    assert spec.model.hidden[0].activation == "relu"
    # an empty model object is an mlp without hidden layers
    empty = TrainSpec.model_validate({"dataset": {"name": "moons"}, "model": {}})
    assert isinstance(empty.model, MLPModel) and empty.model.hidden == []


def test_perceptron_spec():
    spec = TrainSpec.model_validate_json(
        '{"model": {"type": "perceptron"}, "dataset": {"name": "or"}, '
        '"optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 10, "batch_size": 1, "shuffle": false}'
    )
    assert isinstance(spec.model, PerceptronModel)
    assert spec.model.type == "perceptron"
    assert spec.model.init == "zeros"
    assert spec.loss == "auto"
    assert spec.optimizer.lr == 0.1
    assert spec.shuffle is False
    assert layer_sizes(spec, 2, 1) == [2, 1]


def test_optimizer_defaults():
    adam = TrainSpec.model_validate({"dataset": {"name": "xor"}, "optimizer": {"name": "adam"}}).optimizer
    assert isinstance(adam, AdamSpec)
    assert (adam.lr, adam.beta1, adam.beta2, adam.eps, adam.weight_decay) == (0.001, 0.9, 0.999, 1e-8, 0.0)
    rms = TrainSpec.model_validate({"dataset": {"name": "xor"}, "optimizer": {"name": "rmsprop"}}).optimizer
    assert isinstance(rms, RMSpropSpec)
    assert (rms.lr, rms.rho, rms.eps, rms.weight_decay) == (0.001, 0.9, 1e-8, 0.0)


def test_schedules_and_early_stopping_parse():
    spec = TrainSpec.model_validate(
        {
            "dataset": {"name": "moons"},
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.5, "nesterov": True},
            "lr_schedule": {"type": "cosine", "min_lr": 0.1},  # min_lr == lr is allowed
            "early_stopping": {"monitor": "val_loss"},  # moons holds out 0.2 by default
        }
    )
    assert isinstance(spec.lr_schedule, CosineSchedule)
    assert spec.lr_schedule.t_max is None
    assert spec.early_stopping.patience == 10
    assert spec.early_stopping.restore_best is True
    step = TrainSpec.model_validate(
        {"dataset": {"name": "xor"}, "lr_schedule": {"type": "step", "step_size": 5}}
    ).lr_schedule
    assert (step.type, step.step_size, step.gamma) == ("step", 5, 0.1)
    # a val_ monitor on the gates is fine once something is held out
    ok = TrainSpec.model_validate(
        {"dataset": {"name": "xor", "test_fraction": 0.5}, "early_stopping": {"monitor": "val_accuracy"}}
    )
    assert ok.early_stopping.monitor == "val_accuracy"


def _at_every_limit() -> dict[str, Any]:
    return {
        "version": 1,
        "name": "n" * MAX_NAME_LENGTH,
        "project": "p" * MAX_NAME_LENGTH,
        "dataset": {
            "name": "moons",
            "n_samples": MAX_SAMPLES,
            "noise": 10.0,
            "test_fraction": 0.9,
            "standardize": True,
        },
        "model": {
            "type": "mlp",
            "hidden": [{"units": MAX_UNITS, "activation": "identity"}]
            + [{"units": 2, "activation": "leaky_relu"}] * (MAX_HIDDEN_LAYERS - 2)
            + [{"units": 1, "activation": "sigmoid"}],
            "init": "normal",
        },
        "loss": "cross_entropy",
        "optimizer": {"name": "sgd", "lr": 10.0, "momentum": 0.999999, "nesterov": True, "weight_decay": 1.0},
        "lr_schedule": {"type": "cosine", "t_max": MAX_EPOCHS, "min_lr": 10.0},
        "epochs": MAX_EPOCHS,
        "batch_size": MAX_BATCH_SIZE,
        "shuffle": False,
        "dtype": "float32",
        "seed": 2**32 - 1,
        "early_stopping": {"monitor": "val_accuracy", "patience": MAX_EPOCHS, "min_delta": MAX_MIN_DELTA},
        "snapshot_every": MAX_EPOCHS,
        "tags": [f"{i:02d}" + "t" * (MAX_TAG_LENGTH - 2) for i in range(MAX_TAGS)],
        "notes": "x" * MAX_NOTES_LENGTH,
    }


def test_spec_at_every_upper_limit_validates():
    d = _at_every_limit()
    spec = TrainSpec.model_validate(d)
    assert len(spec.model.hidden) == MAX_HIDDEN_LAYERS
    assert spec.model.hidden[0].units == MAX_UNITS
    assert spec.epochs == MAX_EPOCHS
    assert len(spec.name) == MAX_NAME_LENGTH and len(spec.project) == MAX_NAME_LENGTH
    assert len(spec.tags) == MAX_TAGS and all(len(t) == MAX_TAG_LENGTH for t in spec.tags)
    assert len(spec.notes) == MAX_NOTES_LENGTH
    assert spec.seed == 2**32 - 1
    assert spec.dataset.n_samples == MAX_SAMPLES
    # and the same through JSON text
    assert TrainSpec.model_validate_json(json.dumps(d)) == spec


def test_spec_at_every_lower_limit_validates():
    spec = TrainSpec.model_validate(
        {
            "name": "x",
            "dataset": {"name": "sine", "n_samples": 4, "noise": 0.0, "test_fraction": 0.0},
            "model": {"hidden": [{"units": 1}]},
            "optimizer": {"name": "adam", "lr": 5e-324, "beta1": 0.0, "beta2": 0.0, "eps": 5e-324},
            "lr_schedule": {"type": "step", "step_size": 1, "gamma": 5e-324},
            "epochs": 1,
            "batch_size": 1,
            "seed": 0,
            "early_stopping": {"monitor": "train_loss", "patience": 1, "min_delta": 0.0},
            "snapshot_every": 1,
            "tags": ["t"],
        }
    )
    assert spec.epochs == 1 and spec.batch_size == 1 and spec.dataset.n_samples == 4


def test_a_spec_is_in_the_default_project_unless_it_names_one():
    assert TrainSpec.model_validate({"dataset": {"name": "xor"}}).project == "default"
    assert TrainSpec.model_validate({"dataset": {"name": "xor"}, "project": "gates"}).project == "gates"


@pytest.mark.parametrize("project", ["", "  ", "p" * (MAX_NAME_LENGTH + 1), 3, None, ["a"]])
def test_a_project_is_named_like_a_run(project):
    with pytest.raises(pydantic.ValidationError) as raised:
        TrainSpec.model_validate({"dataset": {"name": "xor"}, "project": project})
    assert [error["field"] for error in field_errors(raised.value)] == ["project"]


# --------------------------------------------------------------- malformed specs
def put(path: str, value: Any) -> Callable[[dict], None]:
    """A mutation that sets the dotted ``path`` (list indices as digits) to ``value``."""

    def mutate(d: dict) -> None:
        *parents, last = path.split(".")
        node: Any = d
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def merge(**fields: Any) -> Callable[[dict], None]:
    """A mutation that replaces whole top-level fields."""

    def mutate(d: dict) -> None:
        d.update(copy.deepcopy(fields))

    return mutate


def json_token(path: str, token: str) -> Callable[[dict], str]:
    """A mutation that returns the spec as JSON text with the raw ``token`` (``NaN``...) at ``path``."""

    def mutate(d: dict) -> str:
        put(path, "@@TOKEN@@")(d)
        return json.dumps(d).replace('"@@TOKEN@@"', token)

    return mutate


_UNITS0 = ("model", "mlp", "hidden", 0, "units")
_LR = ("optimizer", "sgd", "lr")

# (description, mutation of BASE, expected loc of the first error, text the message must mention)
# ``mentions`` is set for the validators of the whole spec, whose loc is ().
MALFORMED: list[tuple[str, Callable, tuple, str | None]] = [
    # unknown keys, top level and nested
    ("unknown top-level key", put("learning_rate", 0.1), ("learning_rate",), None),
    ("unknown key in dataset", put("dataset.size", 10), ("dataset", "builtin", "size"), None),
    ("unknown key in upload dataset", merge(dataset={"upload": "abc", "name": "xor"}),
     ("dataset", "upload", "name"), None),
    ("unknown key in model", put("model.dropout", 0.5), ("model", "mlp", "dropout"), None),
    ("unknown key in model without type", merge(model={"layers": []}), ("model", "mlp", "layers"), None),
    ("hidden layers on a perceptron", merge(model={"type": "perceptron", "hidden": []}),
     ("model", "perceptron", "hidden"), None),
    ("unknown key in a hidden layer", put("model.hidden.0.bias", True), _UNITS0[:-1] + ("bias",), None),
    ("unknown key in optimizer", put("optimizer.decay", 0.1), ("optimizer", "sgd", "decay"), None),
    ("sgd key on adam", merge(optimizer={"name": "adam", "momentum": 0.9}), ("optimizer", "adam", "momentum"), None),
    ("unknown key in lr_schedule", merge(lr_schedule={"type": "step", "step_size": 2, "warmup": 1}),
     ("lr_schedule", "step", "warmup"), None),
    ("unknown key in early_stopping", merge(early_stopping={"monitor": "train_loss", "mode": "min"}),
     ("early_stopping", "mode"), None),
    # wrong types (strict: no coercion)
    ("false for epochs", put("epochs", False), ("epochs",), None),
    ("string '3' for epochs", put("epochs", "3"), ("epochs",), None),
    ("1.5 for epochs", put("epochs", 1.5), ("epochs",), None),
    ("3.0 for epochs", put("epochs", 3.0), ("epochs",), None),
    ("string for lr", put("optimizer.lr", "0.1"), _LR, None),
    ("true for lr", put("optimizer.lr", True), _LR, None),
    ("number for name", put("name", 42), ("name",), None),
    ("dict for tags", put("tags", {"a": 1}), ("tags",), None),
    ("string for tags", put("tags", "seed-example"), ("tags",), None),
    ("1 for shuffle", put("shuffle", 1), ("shuffle",), None),
    ("string for batch_size", put("batch_size", "full"), ("batch_size",), None),
    ("string for test_fraction", put("dataset.test_fraction", "0.5"), ("dataset", "builtin", "test_fraction"), None),
    ("null epochs", put("epochs", None), ("epochs",), None),
    ("null name", put("name", None), ("name",), None),
    ("null dataset", put("dataset", None), ("dataset", "builtin"), None),
    ("null model", put("model", None), ("model",), None),
    ("null tags", put("tags", None), ("tags",), None),
    ("list for dataset", put("dataset", ["xor"]), ("dataset", "builtin"), None),
    ("missing dataset", lambda d: d.pop("dataset"), ("dataset",), None),
    ("version 2", put("version", 2), ("version",), None),
    ("float16 dtype", put("dtype", "float16"), ("dtype",), None),
    # NaN and infinite numbers, as Python floats and as JSON text
    ("nan lr", put("optimizer.lr", float("nan")), _LR, None),
    ("inf lr", put("optimizer.lr", float("inf")), _LR, None),
    ("nan noise", merge(dataset={"name": "moons", "noise": float("nan")}), ("dataset", "builtin", "noise"), None),
    ("inf min_delta", merge(early_stopping={"monitor": "train_loss", "min_delta": float("inf")}),
     ("early_stopping", "min_delta"), None),
    ("JSON NaN lr", json_token("optimizer.lr", "NaN"), _LR, None),
    ("JSON Infinity momentum", json_token("optimizer.momentum", "Infinity"), ("optimizer", "sgd", "momentum"), None),
    ("JSON -Infinity lr", json_token("optimizer.lr", "-Infinity"), _LR, None),
    ("JSON NaN test_fraction", json_token("dataset.test_fraction", "NaN"), ("dataset", "builtin", "test_fraction"),
     None),
    ("JSON 1e2 for epochs", json_token("epochs", "1e2"), ("epochs",), None),
    # out of range
    ("17 hidden layers", put("model.hidden", [{"units": 2}] * 17), ("model", "mlp", "hidden"), None),
    ("4097 units", put("model.hidden.0.units", 4097), _UNITS0, None),
    ("min_delta past its bound", merge(early_stopping={"monitor": "train_loss", "min_delta": 1e22}),
     ("early_stopping", "min_delta"), None),
    ("a name of spaces", put("name", "   "), ("name",), None),
    ("0 units", put("model.hidden.0.units", 0), _UNITS0, None),
    ("epochs 0", put("epochs", 0), ("epochs",), None),
    ("epochs 1_000_001", put("epochs", 1_000_001), ("epochs",), None),
    ("batch_size 0", put("batch_size", 0), ("batch_size",), None),
    ("batch_size over the limit", put("batch_size", MAX_BATCH_SIZE + 1), ("batch_size",), None),
    ("empty name", put("name", ""), ("name",), None),
    ("201-char name", put("name", "n" * 201), ("name",), None),
    ("lr 0", put("optimizer.lr", 0), _LR, None),
    ("lr negative", put("optimizer.lr", -0.5), _LR, None),
    ("lr over 10", put("optimizer.lr", 10.5), _LR, None),
    ("momentum 1.0", put("optimizer.momentum", 1.0), ("optimizer", "sgd", "momentum"), None),
    ("beta2 1.0", merge(optimizer={"name": "adam", "beta2": 1.0}), ("optimizer", "adam", "beta2"), None),
    ("negative weight_decay", merge(optimizer={"name": "rmsprop", "weight_decay": -0.1}),
     ("optimizer", "rmsprop", "weight_decay"), None),
    ("negative noise", merge(dataset={"name": "moons", "noise": -0.1}), ("dataset", "builtin", "noise"), None),
    ("n_samples 3", merge(dataset={"name": "moons", "n_samples": 3}), ("dataset", "builtin", "n_samples"), None),
    ("n_samples over MAX_SAMPLES", merge(dataset={"name": "moons", "n_samples": MAX_SAMPLES + 1}),
     ("dataset", "builtin", "n_samples"), None),
    ("test_fraction 0.95", put("dataset.test_fraction", 0.95), ("dataset", "builtin", "test_fraction"), None),
    ("upload test_fraction 1.0", merge(dataset={"upload": "abc", "test_fraction": 1.0}),
     ("dataset", "upload", "test_fraction"), None),
    ("seed -1", put("seed", -1), ("seed",), None),
    ("seed 2**32", put("seed", 2**32), ("seed",), None),
    ("33 tags", put("tags", ["t"] * 33), ("tags",), None),
    ("65-char tag", put("tags", ["ok", "t" * 65]), ("tags", 1), None),
    ("empty tag", put("tags", [""]), ("tags", 0), None),
    ("notes over the limit", put("notes", "x" * (MAX_NOTES_LENGTH + 1)), ("notes",), None),
    ("snapshot_every 0", put("snapshot_every", 0), ("snapshot_every",), None),
    ("patience 0", merge(early_stopping={"monitor": "train_loss", "patience": 0}), ("early_stopping", "patience"),
     None),
    ("step_size 0", merge(lr_schedule={"type": "step", "step_size": 0}), ("lr_schedule", "step", "step_size"), None),
    ("exponential gamma 0", merge(lr_schedule={"type": "exponential", "gamma": 0.0}),
     ("lr_schedule", "exponential", "gamma"), None),
    # unknown names
    ("unknown dataset", put("dataset.name", "mnist"), ("dataset", "builtin", "name"), None),
    ("unknown activation", put("model.hidden.0.activation", "gelu"), _UNITS0[:-1] + ("activation",), None),
    ("unknown init", put("model.init", "zeros"), ("model", "mlp", "init"), None),
    ("unknown model type", merge(model={"type": "cnn"}), ("model",), None),
    ("unknown optimizer", merge(optimizer={"name": "lbfgs", "lr": 0.1}), ("optimizer",), None),
    ("optimizer without name", merge(optimizer={"lr": 0.1}), ("optimizer",), None),
    ("unknown lr_schedule type", merge(lr_schedule={"type": "plateau"}), ("lr_schedule",), None),
    ("unknown loss", put("loss", "hinge"), ("loss",), None),
    ("unknown early_stopping monitor", merge(early_stopping={"monitor": "val_f1"}), ("early_stopping", "monitor"),
     None),
    # rules across fields
    ("nesterov without momentum", merge(optimizer={"name": "sgd", "lr": 0.1, "nesterov": True}),
     ("optimizer", "sgd"), "nesterov"),
    ("perceptron with loss mse", merge(model={"type": "perceptron"}, loss="mse"), (), "loss"),
    ("val_loss early stopping on xor without test_fraction", merge(early_stopping={"monitor": "val_loss"}), (),
     "early_stopping.monitor"),
    ("val_accuracy early stopping on xor with test_fraction 0", merge(
        dataset={"name": "xor", "test_fraction": 0.0}, early_stopping={"monitor": "val_accuracy"}), (),
     "early_stopping.monitor"),
    ("val_loss early stopping on an upload with test_fraction 0", merge(
        dataset={"upload": "abc", "test_fraction": 0.0}, early_stopping={"monitor": "val_loss"}), (),
     "early_stopping.monitor"),
    ("cosine min_lr above lr", merge(lr_schedule={"type": "cosine", "min_lr": 0.6}), (), "lr_schedule.min_lr"),
    # upload ids
    ("upload id with a path", merge(dataset={"upload": "../etc"}), ("dataset", "upload", "upload"), None),
    ("empty upload id", merge(dataset={"upload": ""}), ("dataset", "upload", "upload"), None),
    ("65-char upload id", merge(dataset={"upload": "a" * 65}), ("dataset", "upload", "upload"), None),
    ("number for upload id", merge(dataset={"upload": 7}), ("dataset", "upload", "upload"), None),
]


def test_malformed_table_is_large_and_distinct():
    assert len(MALFORMED) >= 35
    assert len({desc for desc, *_ in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize(
    "description, mutate, loc, mentions", MALFORMED, ids=[row[0] for row in MALFORMED]
)
def test_malformed_spec_is_refused_naming_the_field(description, mutate, loc, mentions):
    d = base()
    text = mutate(d)
    with pytest.raises(pydantic.ValidationError) as info:
        if isinstance(text, str):
            TrainSpec.model_validate_json(text)
        else:
            TrainSpec.model_validate(d)
    errors = info.value.errors()
    assert errors, description
    first = errors[0]
    assert first["loc"] == loc, (description, errors)
    if mentions is not None:
        assert mentions in first["msg"], (description, first["msg"])
    else:
        assert first["type"] != "value_error" or loc, (description, first)
    # the same refusal comes from JSON text (where the value is representable in JSON)
    if not isinstance(text, str):
        try:
            as_json = json.dumps(d, allow_nan=True)
        except (TypeError, ValueError):
            return
        with pytest.raises(pydantic.ValidationError) as info_json:
            TrainSpec.model_validate_json(as_json)
        assert info_json.value.errors()[0]["loc"] == loc, (description, info_json.value.errors())


def test_base_of_the_table_is_valid():
    # every row above fails because of its mutation, not because of the base
    assert TrainSpec.model_validate(base()).name == "xor-tanh"


# ---------------------------------------------------------- data-dependent limits
def _spec(**fields: Any) -> TrainSpec:
    d = {"dataset": {"name": "moons"}}
    d.update(fields)
    return TrainSpec.model_validate(d)


def test_too_many_parameters_names_model_hidden():
    spec = _spec(model={"hidden": [{"units": MAX_UNITS}] * MAX_HIDDEN_LAYERS})
    with pytest.raises(SpecError) as info:
        check_fits_data(spec, 100, 2, 1)
    err = info.value
    assert err.field == "model.hidden"
    assert isinstance(err, ValueError)
    assert str(err).startswith("model.hidden: ")
    assert f"{MAX_PARAMETERS:,}" in err.message


def test_parameter_limit_boundary():
    spec = _spec(model={"hidden": []})
    # no hidden layer: (n_features + 1) * n_outputs parameters
    assert count_parameters(layer_sizes(spec, 9_999, 1_000)) == MAX_PARAMETERS
    check_fits_data(spec, 100, 9_999, 1_000)  # exactly at the limit: fine
    with pytest.raises(SpecError) as info:
        check_fits_data(spec, 100, 10_000, 1_000)
    assert info.value.field == "model.hidden"


def test_full_batch_too_large_names_batch_size():
    wide = {"hidden": [{"units": 512}] * 4}
    spec = _spec(model=wide, batch_size=None)
    assert count_parameters(layer_sizes(spec, 2, 1)) < MAX_PARAMETERS
    with pytest.raises(SpecError) as info:
        check_fits_data(spec, MAX_SAMPLES, 2, 1)
    assert info.value.field == "batch_size"
    assert "batch_size" in info.value.message
    # a batch_size at least the sample count is the same full batch
    with pytest.raises(SpecError) as info:
        check_fits_data(_spec(model=wide, batch_size=MAX_BATCH_SIZE), MAX_SAMPLES, 2, 1)
    assert info.value.field == "batch_size"
    # mini-batches of the same network over the same data fit
    check_fits_data(_spec(model=wide, batch_size=256), MAX_SAMPLES, 2, 1)


def test_working_memory_boundary():
    spec = _spec(model={"hidden": [{"units": 97}]}, batch_size=None)
    sizes = layer_sizes(spec, 2, 1)
    assert sum(sizes) == 100
    rows = MAX_WORKING_VALUES // (3 * sum(sizes))  # 333_333 rows: just under
    check_fits_data(spec, rows, 2, 1)
    with pytest.raises(SpecError) as info:
        check_fits_data(spec, rows + 1, 2, 1)
    assert info.value.field == "batch_size"


def test_spec_just_under_both_limits_passes():
    # 2 -> 2000 -> 2000 -> 1: about 4M parameters; 32-row batches over a million rows
    spec = _spec(model={"hidden": [{"units": 2000}, {"units": 2000}]}, batch_size=32)
    assert count_parameters(layer_sizes(spec, 2, 1)) < MAX_PARAMETERS
    assert check_fits_data(spec, MAX_SAMPLES, 2, 1) is None


def test_perceptron_ignores_hidden_sizes():
    spec = TrainSpec.model_validate({"dataset": {"name": "or"}, "model": {"type": "perceptron"}})
    assert layer_sizes(spec, 64, 1) == [64, 1]
    check_fits_data(spec, 4, 2, 1)


# ------------------------------------------------------------------- fingerprint
def test_fingerprint_ignores_bookkeeping_fields():
    spec = TrainSpec.model_validate(base())
    fp = spec.fingerprint()
    assert json.loads(fp)["optimizer"]["lr"] == 0.5
    for field, value in [
        ("name", "renamed"),
        ("project", "vision"),
        ("tags", ["a", "b"]),
        ("notes", "some notes"),
        ("epochs", 5000),
        ("snapshot_every", 10),
    ]:
        d = base()
        d[field] = value
        other = TrainSpec.model_validate(d)
        assert other != spec
        assert other.fingerprint() == fp, field


@pytest.mark.parametrize(
    "mutate",
    [
        put("optimizer.lr", 0.25),
        put("seed", 1),
        put("optimizer.momentum", 0.5),
        put("batch_size", 2),
        put("model.hidden.0.units", 9),
        put("dataset.name", "or"),
        put("dtype", "float32"),
        put("shuffle", False),
    ],
    ids=["lr", "seed", "momentum", "batch_size", "units", "dataset", "dtype", "shuffle"],
)
def test_fingerprint_changes_with_what_decides_the_trajectory(mutate):
    d = base()
    mutate(d)
    assert TrainSpec.model_validate(d).fingerprint() != TrainSpec.model_validate(base()).fingerprint()


def test_fingerprint_is_canonical_json():
    spec = TrainSpec.model_validate(base())
    fp = spec.fingerprint()
    assert fp == json.dumps(json.loads(fp), sort_keys=True, separators=(",", ":"))
    # key order in the input does not matter
    reordered = dict(reversed(list(base().items())))
    assert TrainSpec.model_validate(reordered).fingerprint() == fp


def test_same_fingerprint_means_same_learning_rates():
    """The fingerprint's promise: specs with the same fingerprint train identically.

    A cosine schedule without ``t_max`` takes its period from ``epochs``, so
    there ``epochs`` decides the trajectory and must not be left out.
    """
    short = base()
    short["lr_schedule"] = {"type": "cosine"}
    short["epochs"] = 100
    long = copy.deepcopy(short)
    long["epochs"] = 1000
    a, b = TrainSpec.model_validate(short), TrainSpec.model_validate(long)
    rates_a = [learning_rate(a.optimizer.lr, a.lr_schedule, e, a.epochs) for e in range(1, 101)]
    rates_b = [learning_rate(b.optimizer.lr, b.lr_schedule, e, b.epochs) for e in range(1, 101)]
    assert rates_a != rates_b  # the two runs differ from epoch 2 on...
    assert a.fingerprint() != b.fingerprint()  # ...so the fingerprints must differ


# ------------------------------------------------------------------- immutability
def test_spec_is_frozen():
    spec = TrainSpec.model_validate(base())
    with pytest.raises(pydantic.ValidationError):
        spec.epochs = 5
    with pytest.raises(pydantic.ValidationError):
        spec.optimizer.lr = 1.0
    with pytest.raises(pydantic.ValidationError):
        spec.model.hidden[0].units = 3
    with pytest.raises(pydantic.ValidationError):
        spec.dataset.name = "or"
    assert spec.epochs == 2000 and spec.optimizer.lr == 0.5
    assert spec.model.hidden[0].units == 8 and spec.dataset.name == "xor"


@pytest.mark.parametrize(
    "mutation,field",
    [
        ({"optimizer": {"name": "adam", "lr": 0}}, "optimizer.lr"),
        ({"model": {"hidden": [{"units": 0}]}}, "model.hidden.0.units"),
        ({"dataset": {"name": "moons", "noise": -1}}, "dataset.noise"),
        ({"dataset": {"upload": "../etc"}}, "dataset.upload"),
        ({"lr_schedule": {"type": "cosine", "t_max": 0}}, "lr_schedule.t_max"),
        ({"early_stopping": {"patience": 0}}, "early_stopping.patience"),
        ({"epochs": 0}, "epochs"),
    ],
)
def test_field_errors_give_json_paths(mutation, field):
    """The variant pydantic adds to a union's error location is not part of the JSON path."""
    with pytest.raises(pydantic.ValidationError) as info:
        TrainSpec.model_validate({"dataset": {"name": "xor"}, **mutation})
    assert field_errors(info.value)[0]["field"] == field
    assert field_errors(info.value)[0]["message"]
