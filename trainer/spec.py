"""The job spec: what to train, on what, and how (JSON, version 1).

``TrainSpec`` is the single source of truth for every field, default and
limit.  It is strict: unknown keys, wrong types (``false`` for a number,
``"3"`` for an int), NaN and infinite numbers and out-of-range values are all
refused, each with the path of the offending field.  The limits are explicit
so that no spec can exhaust a worker: see the ``MAX_*`` constants.

Limits that depend on the data (the parameter count needs the number of
input features; the working memory of a full batch needs the number of
samples) are checked when training starts, by :func:`check_fits_data`.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from .datasets import BUILTIN_NAMES, MAX_SAMPLES

MAX_HIDDEN_LAYERS = 16
MAX_UNITS = 4096
MAX_PARAMETERS = 10_000_000
MAX_EPOCHS = 1_000_000
MAX_BATCH_SIZE = 1_000_000
MAX_NAME_LENGTH = 200
MAX_TAGS = 32
MAX_TAG_LENGTH = 64
MAX_NOTES_LENGTH = 10_000
#: Largest early-stopping ``min_delta``: beyond any loss worth monitoring.  Every number a spec holds stays below
#: 1e16, which JSON stores (PostgreSQL's JSONB among them) give back as the float it was, not as an integer.
MAX_MIN_DELTA = 1e12
#: Activations, gradients and deltas of one batch, in values (8 bytes each in float64).
MAX_WORKING_VALUES = 100_000_000

ACTIVATION_NAMES = ("relu", "leaky_relu", "tanh", "sigmoid", "identity")
GATES = ("or", "and", "xor")


class SpecError(ValueError):
    """A spec that validated on its own does not fit the data it is given.

    ``field`` is the dotted path of the field to change, like pydantic's ``loc``.
    """

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


#: Unions whose variant pydantic names in an error's location, after the field.
_VARIANT_TAGS = {
    "dataset": {"builtin", "upload"},
    "model": {"mlp", "perceptron"},
    "optimizer": {"sgd", "adam", "rmsprop"},
    "lr_schedule": {"step", "exponential", "cosine"},
}


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """A ``ValidationError`` as ``[{"field": "optimizer.lr", "message": ...}]``.

    Field paths are the spec's JSON paths (``model.hidden.0.units``), without
    the name of the union variant pydantic puts in its locations.
    """
    out = []
    for err in exc.errors():
        loc = list(err["loc"])
        if len(loc) > 1 and loc[1] in _VARIANT_TAGS.get(str(loc[0]), ()):
            del loc[1]
        message = err["msg"].removeprefix("Value error, ")
        out.append({"field": ".".join(str(part) for part in loc), "message": message})
    return out


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be blank")
    return text


#: A run's name: 1 to 200 characters, not all spaces.
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(_not_blank)]
#: The project every run and sweep belongs to unless it names another.
DEFAULT_PROJECT = "default"

Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
LearningRate = Annotated[float, Field(gt=0.0, le=10.0)]
WeightDecay = Annotated[float, Field(ge=0.0, le=1.0)]


# --------------------------------------------------------------------------- data
class BuiltinData(_Strict):
    """A built-in dataset by name; ``n_samples`` and ``noise`` for the synthetic ones."""

    name: Literal[BUILTIN_NAMES]  # type: ignore[valid-type]
    n_samples: Annotated[int, Field(ge=4, le=MAX_SAMPLES)] | None = None
    noise: Annotated[float, Field(ge=0.0, le=10.0)] | None = None
    test_fraction: Annotated[float, Field(ge=0.0, le=0.9)] | None = Field(
        default=None, description="Held-out validation share; default 0 for the logic gates, 0.2 otherwise."
    )
    standardize: bool = False

    @property
    def held_out(self) -> float:
        if self.test_fraction is not None:
            return self.test_fraction
        return 0.0 if self.name in GATES else 0.2


class UploadData(_Strict):
    """A CSV uploaded to the service, by id.  The service resolves it to data."""

    upload: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    test_fraction: Annotated[float, Field(ge=0.0, le=0.9)] = 0.2
    standardize: bool = False

    @property
    def held_out(self) -> float:
        return self.test_fraction


def _data_kind(value: object) -> str:
    if isinstance(value, dict):
        return "upload" if "upload" in value else "builtin"
    return "upload" if isinstance(value, UploadData) else "builtin"


DataSpec = Annotated[
    Union[Annotated[BuiltinData, Tag("builtin")], Annotated[UploadData, Tag("upload")]],
    Discriminator(_data_kind),
]


# -------------------------------------------------------------------------- model
class Layer(_Strict):
    units: Annotated[int, Field(ge=1, le=MAX_UNITS)]
    activation: Literal[ACTIVATION_NAMES] = "relu"  # type: ignore[valid-type]


class MLPModel(_Strict):
    """A multi-layer network; the output layer follows the task (see ``loss``)."""

    type: Literal["mlp"] = "mlp"
    hidden: Annotated[list[Layer], Field(max_length=MAX_HIDDEN_LAYERS)] = []
    init: Literal["xavier", "he", "normal"] = "xavier"


class PerceptronModel(_Strict):
    """Rosenblatt's perceptron: one layer, step output, the rule ``w += lr * (y - y_hat) * x``."""

    type: Literal["perceptron"]
    init: Literal["zeros", "normal"] = "zeros"


def _model_kind(value: object) -> object:
    if isinstance(value, dict):
        return value.get("type", "mlp")
    return getattr(value, "type", None)


ModelSpec = Annotated[
    Union[Annotated[MLPModel, Tag("mlp")], Annotated[PerceptronModel, Tag("perceptron")]],
    Discriminator(_model_kind),
]


# ---------------------------------------------------------------------- optimizer
class SGDSpec(_Strict):
    name: Literal["sgd"]
    lr: LearningRate = 0.01
    momentum: Probability = 0.0
    nesterov: bool = False
    weight_decay: WeightDecay = 0.0

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDSpec:
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov needs momentum > 0")
        return self


class AdamSpec(_Strict):
    name: Literal["adam"]
    lr: LearningRate = 0.001
    beta1: Probability = 0.9
    beta2: Probability = 0.999
    eps: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-8
    weight_decay: WeightDecay = 0.0


class RMSpropSpec(_Strict):
    name: Literal["rmsprop"]
    lr: LearningRate = 0.001
    rho: Probability = 0.9
    eps: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-8
    weight_decay: WeightDecay = 0.0


OptimizerSpec = Annotated[Union[SGDSpec, AdamSpec, RMSpropSpec], Field(discriminator="name")]


class StepSchedule(_Strict):
    """``lr * gamma ** ((epoch - 1) // step_size)``."""

    type: Literal["step"]
    step_size: Annotated[int, Field(ge=1, le=MAX_EPOCHS)]
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1


class ExponentialSchedule(_Strict):
    """``lr * gamma ** (epoch - 1)``."""

    type: Literal["exponential"]
    gamma: Annotated[float, Field(gt=0.0, le=1.0)]


class CosineSchedule(_Strict):
    """``min_lr + (lr - min_lr) * (1 + cos(pi * (epoch - 1) / t_max)) / 2``, then ``min_lr``."""

    type: Literal["cosine"]
    t_max: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] | None = Field(
        default=None, description="Epochs of one half-period; default: the spec's epochs."
    )
    min_lr: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0


ScheduleSpec = Annotated[
    Union[StepSchedule, ExponentialSchedule, CosineSchedule], Field(discriminator="type")
]


class EarlyStopping(_Strict):
    monitor: Literal["val_loss", "train_loss", "val_accuracy", "train_accuracy"] = "val_loss"
    patience: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = 10
    min_delta: Annotated[float, Field(ge=0.0, le=MAX_MIN_DELTA)] = 0.0
    restore_best: bool = True


# --------------------------------------------------------------------------- spec
class TrainSpec(_Strict):
    """A training job.  ``TrainSpec.model_validate_json(text)`` parses and checks one."""

    version: Literal[1] = 1
    name: Name = "run"
    project: Name = Field(DEFAULT_PROJECT, description="The project the run belongs to: like name and tags, a label "
                          "that does not change training.")
    dataset: DataSpec
    model: ModelSpec = MLPModel()
    loss: Literal["auto", "cross_entropy", "mse"] = "auto"
    optimizer: OptimizerSpec = SGDSpec(name="sgd")
    lr_schedule: ScheduleSpec | None = None
    epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = 100
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH_SIZE)] | None = 32
    shuffle: bool = True
    dtype: Literal["float64", "float32"] = "float64"
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    early_stopping: EarlyStopping | None = None
    snapshot_every: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] | None = None
    tags: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_TAG_LENGTH)]],
        Field(max_length=MAX_TAGS),
    ] = []
    notes: Annotated[str, Field(max_length=MAX_NOTES_LENGTH)] = ""

    @model_validator(mode="after")
    def _consistent(self) -> TrainSpec:
        if isinstance(self.model, PerceptronModel) and self.loss != "auto":
            raise ValueError("loss: a perceptron has its own rule; use loss 'auto'")
        sched = self.lr_schedule
        if isinstance(sched, CosineSchedule) and sched.min_lr > self.optimizer.lr:
            raise ValueError("lr_schedule.min_lr must not exceed optimizer.lr")
        es = self.early_stopping
        if es is not None and es.monitor.startswith("val_") and self.dataset.held_out == 0.0:
            raise ValueError(
                f"early_stopping.monitor: {es.monitor!r} needs held-out data; set dataset.test_fraction > 0"
            )
        return self

    @classmethod
    def from_json(cls, text: str | bytes) -> TrainSpec:
        return cls.model_validate_json(text)

    def fingerprint(self) -> str:
        """The fields that decide the trajectory, as canonical JSON.

        Two specs with the same fingerprint train identically epoch by epoch;
        ``name``, ``project``, ``tags``, ``notes``, ``epochs`` and ``snapshot_every`` do not
        count, so a checkpoint can be resumed with more epochs (unless a
        cosine schedule takes its period from ``epochs``).
        """
        data = self.model_dump(mode="json", exclude={"name", "project", "tags", "notes", "epochs",
                                                         "snapshot_every"})
        if isinstance(self.lr_schedule, CosineSchedule) and self.lr_schedule.t_max is None:
            data["lr_schedule"]["t_max"] = self.epochs  # then epochs shapes every epoch's lr
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


# ------------------------------------------------------------ data-dependent checks
def layer_sizes(spec: TrainSpec, n_features: int, n_outputs: int) -> list[int]:
    """``[n_features, hidden..., n_outputs]`` for the spec's network."""
    hidden = [] if isinstance(spec.model, PerceptronModel) else [h.units for h in spec.model.hidden]
    return [n_features, *hidden, n_outputs]


def count_parameters(sizes: list[int]) -> int:
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))


def check_representable(spec: TrainSpec) -> None:
    """Refuse, naming the field, a non-zero hyper-parameter below the smallest normal number of ``spec.dtype``.

    Such a value rounds to zero or loses its digits when training uses it
    (an ``eps`` of 1e-46 is 0 in float32, and Adam's and RMSprop's ``0 / (0 + eps)`` then NaN).
    """
    tiny = float(np.finfo(spec.dtype).tiny)
    for part in ("optimizer", "lr_schedule"):
        values = getattr(spec, part)
        for name, value in ({} if values is None else values.model_dump()).items():
            if isinstance(value, float) and 0.0 < abs(value) < tiny:
                raise SpecError(f"{part}.{name}", f"{value:g} is below the smallest normal {spec.dtype} number "
                                f"({tiny:g}); {spec.dtype} cannot represent it")


def check_fits_data(spec: TrainSpec, n_train: int, n_features: int, n_outputs: int) -> None:
    """Refuse, with the field to change, a spec too large for the data it trains on."""
    sizes = layer_sizes(spec, n_features, n_outputs)
    n_params = count_parameters(sizes)
    if n_params > MAX_PARAMETERS:
        raise SpecError(
            "model.hidden",
            f"the network has {n_params:,} parameters for {n_features} input features; "
            f"the limit is {MAX_PARAMETERS:,}",
        )
    rows = n_train if spec.batch_size is None else min(spec.batch_size, n_train)
    working = rows * sum(sizes) * 3
    if working > MAX_WORKING_VALUES:
        raise SpecError(
            "batch_size",
            f"a batch of {rows:,} rows through layers of {sum(sizes):,} units needs "
            f"{working:,} working values (limit {MAX_WORKING_VALUES:,}); use a smaller batch_size",
        )
