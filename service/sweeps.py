"""Hyper-parameter sweeps: a base spec and a search space, expanded into the specs of their runs.

A sweep request names spec values by dotted paths (``optimizer.lr``,
``model.hidden.0.units``: list positions included) and says what each may be:

- ``grid``: a list of values per path; the runs are the Cartesian product,
  in the order the paths are given (the last path varies fastest);
- ``random``: a distribution per path, ``{"choice": [...]}``,
  ``{"uniform": [low, high]}``, ``{"log_uniform": [low, high]}`` or
  ``{"int_uniform": [low, high]}`` (both ends included), and ``n`` points
  drawn with ``seed``: the same request gives the same points.

:func:`expand` validates every resulting spec with :class:`trainer.TrainSpec`
before anything is stored, so a sweep is created whole or not at all; an
invalid point is reported with its index and the path at fault.

A sweep belongs to one project, and so do all its runs: the request's
``project``, else its base spec's (``default`` if neither names one).  Each
run's spec says the sweep's project; a request that names two different
projects, or sweeps ``project`` itself, is refused.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from trainyard.service.errors import validation_fields
from trainyard.service.specpaths import set_path
from trainyard.service.storage.models import RANKED_STATUSES, RUN_STATUSES, Run
from trainyard.trainer import SpecError, TrainSpec, check
from trainyard.trainer.spec import DEFAULT_PROJECT, MAX_NAME_LENGTH, DataSpec, Name, UploadData

#: Most runs one sweep may create.
MAX_SWEEP_RUNS = 200

#: What ranks a sweep's runs (``?metric=``, ``--metric``) -> (summary column, whether higher is better).
METRICS: dict[str, tuple[str, bool]] = {
    "val_loss": ("best_val_loss", False),
    "val_accuracy": ("best_val_accuracy", True),
    "train_loss": ("final_train_loss", False),
    "train_accuracy": ("final_train_accuracy", True),
    "final_val_loss": ("final_val_loss", False),
    "final_val_accuracy": ("final_val_accuracy", True),
}

#: Most values a grid axis or a ``choice`` may list, and most paths a space may have.
MAX_VALUES = MAX_SWEEP_RUNS
MAX_PATHS = 16
#: Largest swept value, as JSON: a grid or choice value is set into a spec, whose own limits are far smaller.
MAX_VALUE_BYTES = 10_000
#: Largest magnitude of a distribution's bounds: what numpy draws from exactly, and what a JSON store (PostgreSQL's
#: JSONB among them) gives back as the float it was (from 1e16 on, it gives an integer).
MAX_BOUND = 1e15
#: ... and of an ``int_uniform``'s: every integer up to it is a float exactly.
MAX_INT_BOUND = 2**53

_Path = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")]
_Value = Any
_Bound = Annotated[float, Field(ge=-MAX_BOUND, le=MAX_BOUND)]
_Bounds = Annotated[list[_Bound], Field(min_length=2, max_length=2)]
_IntBound = Annotated[int, Field(ge=-MAX_INT_BOUND, le=MAX_INT_BOUND)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Choice(_Strict):
    """One of the listed values, each equally likely."""

    choice: Annotated[list[_Value], Field(min_length=1, max_length=MAX_VALUES)]


class Uniform(_Strict):
    """A float uniformly between ``low`` and ``high``."""

    uniform: _Bounds

    @field_validator("uniform")
    @classmethod
    def _ordered(cls, bounds: list[float]) -> list[float]:
        if not bounds[0] <= bounds[1]:
            raise ValueError("must be [low, high] with low <= high")
        return bounds


class LogUniform(_Strict):
    """A float whose logarithm is uniform between ``log(low)`` and ``log(high)`` (learning rates)."""

    log_uniform: _Bounds

    @field_validator("log_uniform")
    @classmethod
    def _positive(cls, bounds: list[float]) -> list[float]:
        if not 0 < bounds[0] <= bounds[1]:
            raise ValueError("must be [low, high] with 0 < low <= high")
        return bounds


class IntUniform(_Strict):
    """An integer uniformly between ``low`` and ``high``, both included."""

    int_uniform: Annotated[list[_IntBound], Field(min_length=2, max_length=2)]

    @field_validator("int_uniform")
    @classmethod
    def _ordered(cls, bounds: list[int]) -> list[int]:
        if not bounds[0] <= bounds[1]:
            raise ValueError("must be [low, high] with low <= high")
        return bounds


Distribution = Choice | Uniform | LogUniform | IntUniform


class SweepRequest(_Strict):
    """The body of ``POST /api/sweeps``."""

    name: Name
    project: Name | None = Field(None, description="The project of the sweep and of all its runs (default: the base "
                                 "spec's `project`, else `default`).")
    spec: dict[str, Any] = Field(description="The base job spec, itself valid; each run overrides the space's paths.")
    method: Literal["grid", "random"]
    space: Annotated[dict[_Path, Any], Field(min_length=1, max_length=MAX_PATHS)] = Field(
        description="Dotted spec path -> a list of values (grid) or a distribution (random)."
    )
    n: Annotated[int, Field(ge=1, le=MAX_SWEEP_RUNS)] | None = Field(None, description="Points to draw (random).")
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = Field(0, description="Seed of the draws (random).")

    @model_validator(mode="after")
    def _one_project(self) -> SweepRequest:
        if "project" in self.space:
            raise ValueError("space.project: every run of a sweep is in the sweep's project; set `project` instead")
        named = self.spec.get("project")
        if self.project is not None and named is not None and named != self.project:
            raise ValueError(f"project: the sweep is in {self.project!r} but its spec says {named!r}; "
                             "name one project, or the same in both")
        return self

    @model_validator(mode="after")
    def _space_fits_method(self) -> SweepRequest:
        if self.method == "grid":
            if self.n is not None:
                raise ValueError("n: is for random sweeps; a grid has one run per combination")
            for path, values in self.space.items():
                if not isinstance(values, list) or not 1 <= len(values) <= MAX_VALUES:
                    raise ValueError(f"space.{path}: a grid needs a list of 1 to {MAX_VALUES} values")
                _check_sizes(f"space.{path}", values)
            size = math.prod(len(values) for values in self.space.values())
            if size > MAX_SWEEP_RUNS:
                raise ValueError(f"space: the grid has {size} combinations; a sweep has at most {MAX_SWEEP_RUNS} runs")
        else:
            if self.n is None:
                raise ValueError("n: a random sweep needs n, the number of points to draw")
            for path, value in self.space.items():
                self.space[path] = _distribution(path, value)
                if isinstance(self.space[path], Choice):
                    _check_sizes(f"space.{path}.choice", self.space[path].choice)
        return self


def _check_sizes(where: str, values: list[Any]) -> None:
    for index, value in enumerate(values):
        if len(json.dumps(value)) > MAX_VALUE_BYTES:
            raise ValueError(f"{where}.{index}: a swept value may be at most {MAX_VALUE_BYTES:,} bytes of JSON")


def _distribution(path: str, value: Any) -> Distribution:
    if isinstance(value, Distribution):
        return value
    if isinstance(value, dict) and len(value) == 1:
        kind = next(iter(value))
        model = {"choice": Choice, "uniform": Uniform, "log_uniform": LogUniform, "int_uniform": IntUniform}.get(kind)
        if model is not None:
            try:
                return model.model_validate(value)
            except ValidationError as exc:
                raise ValueError(f"space.{path}.{kind}: {exc.errors()[0]['msg']}") from None
    raise ValueError(
        f"space.{path}: a random sweep needs one of {{'choice': [...]}}, {{'uniform': [low, high]}}, "
        "{'log_uniform': [low, high]}, {'int_uniform': [low, high]}"
    )


class SweepPointError(ValueError):
    """A point of the sweep gives an invalid spec; ``fields`` name the point and the path, as the API reports them."""

    def __init__(self, message: str, fields: list[dict[str, str]]):
        super().__init__(message)
        self.fields = fields


def points(request: SweepRequest) -> list[dict[str, Any]]:
    """The sweep's points (path -> value), in order: the grid's product, or ``n`` seeded draws."""
    paths = list(request.space)
    if request.method == "grid":
        return [dict(zip(paths, combination)) for combination in itertools.product(*request.space.values())]
    rng = np.random.default_rng(request.seed)
    return [{path: _draw(request.space[path], rng) for path in paths} for _ in range(request.n or 0)]


def _draw(distribution: Distribution, rng: np.random.Generator) -> Any:
    if isinstance(distribution, Choice):
        return copy.deepcopy(distribution.choice[int(rng.integers(len(distribution.choice)))])
    if isinstance(distribution, Uniform):
        low, high = distribution.uniform
        return min(max(float(rng.uniform(low, high)), low), high)
    if isinstance(distribution, LogUniform):
        low, high = distribution.log_uniform  # exp(log(x)) may land a rounding error past a bound: clamp
        return min(max(float(math.exp(rng.uniform(math.log(low), math.log(high)))), low), high)
    low, high = distribution.int_uniform
    return int(rng.integers(low, high, endpoint=True))


def _label(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_name(name: str, index: int, point: dict[str, Any]) -> str:
    """``"<sweep> #003 lr=0.01 units=8"``: the sweep, the point's number and its values by their last path part
    (a float with 4 significant digits, as the dashboard shows numbers: ``lr=0.0008121``)."""
    values = " ".join(f"{path.rsplit('.', 1)[-1]}={_label(value)}" for path, value in point.items())
    return f"{name} #{index + 1:03d} {values}"[:MAX_NAME_LENGTH]


def sweep_project(request: SweepRequest) -> str:
    """The project of the sweep and its runs: the request's, else its base spec's, else ``default``.

    A base spec's ``project`` that is no valid name is left to :func:`expand`, which refuses the spec naming it.
    """
    named = request.spec.get("project")
    return request.project or (named if isinstance(named, str) else DEFAULT_PROJECT)


def expand(request: SweepRequest) -> list[TrainSpec]:
    """The validated spec of every run of the sweep, in order.

    The base spec must be valid itself (it is stored as the sweep's), so must
    every value a ``choice`` lists (drawn or not), and every point: each is
    checked against its built-in dataset's shape (an upload's is checked by
    the caller, which reads the database).

    Raises
    ------
    SweepPointError
        The base spec, a choice or a point is invalid or does not fit its data;
        the first fault is reported (fields ``spec.<path>``,
        ``space.<path>.choice.<i>.<path>`` or ``points.<i>.<path>``), and
        nothing should be created.
    """
    _valid(request.spec, "spec", "the base spec")
    for path, distribution in request.space.items():
        if isinstance(distribution, Choice):
            for index, value in enumerate(distribution.choice):
                _valid(_with(request.spec, {path: value}, f"space.{path}.choice.{index}"),
                       f"space.{path}.choice.{index}", f"{path}={value!r}")
    specs: list[TrainSpec] = []
    project = sweep_project(request)
    for index, point in enumerate(points(request)):
        spec = _with(request.spec, point, f"points.{index}")
        spec["name"] = run_name(request.name, index, point)
        spec["project"] = project
        shown = ", ".join(f"{path}={value!r}" for path, value in point.items())
        specs.append(_valid(spec, f"points.{index}", f"point {index}: {shown}"))
    return specs


def _with(base: dict[str, Any], values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A copy of ``base`` with ``values`` (path -> value) set; a SweepPointError naming ``where`` if a path does not
    fit the base spec."""
    spec = copy.deepcopy(base)
    try:
        for path, value in values.items():
            set_path(spec, path, value)
    except KeyError as exc:
        message = exc.args[0]
        raise SweepPointError(f"{where}: {message}", [{"field": where, "message": message}]) from None
    return spec


def _valid(spec: dict[str, Any], where: str, what: str) -> TrainSpec:
    """``spec`` validated and, on a built-in dataset, checked against its shape; a SweepPointError naming the fields
    under ``where`` otherwise."""
    try:
        valid = TrainSpec.model_validate(spec)
        if not isinstance(valid.dataset, UploadData):
            check(valid)  # the dataset's shape alone: nothing is generated
        return valid
    except ValidationError as exc:
        errors = [(e["field"], e["message"]) for e in validation_fields(exc, TrainSpec)]
    except SpecError as exc:
        errors = [(exc.field, exc.message)]
    fields = [{"field": f"{where}.{field}", "message": message} for field, message in errors]
    raise SweepPointError(f"{fields[0]['field']}: {fields[0]['message']} ({what})", fields)


# --------------------------------------------------------------------------- a sweep's runs


def default_metric(base_spec: Mapping[str, Any]) -> str:
    """``val_loss`` when the base spec's dataset holds data out (its ``held_out``, as the trainer splits: 20 % unless
    ``test_fraction`` says otherwise, none for the logic gates), else ``train_loss``."""
    try:
        held_out = _DATASET.validate_python(base_spec.get("dataset")).held_out
    except ValidationError:  # a sweep stored before its base spec was validated: rank as its runs can be ranked
        held_out = 0.0
    return "val_loss" if held_out > 0 else "train_loss"


_DATASET: TypeAdapter[Any] = TypeAdapter(DataSpec)


def metric_value(run: Run, metric: str) -> float | None:
    """The run's value of a ranking metric (:data:`METRICS`), or None while it has none."""
    value = getattr(run, METRICS[metric][0])
    return None if value is None else float(value)


def ranked(runs: Sequence[Run], metric: str) -> list[Run]:
    """Best first by ``metric`` (ties and runs without a value keep their sweep order, those without last)."""
    higher = METRICS[metric][1]
    scored = [run for run in runs if metric_value(run, metric) is not None]
    scored.sort(key=lambda run: -metric_value(run, metric) if higher else metric_value(run, metric))  # type: ignore[operator]
    return scored + [run for run in runs if metric_value(run, metric) is None]


def best_run(runs: Sequence[Run], metric: str) -> Run | None:
    """The sweep's best run by ``metric``: the first of :func:`ranked` among those that finished training
    (:data:`RANKED_STATUSES`), None while there is none.  ``runs`` come in the sweep's order, the tie-break."""
    return next((run for run in ranked([run for run in runs if run.status in RANKED_STATUSES], metric)
                 if metric_value(run, metric) is not None), None)


def progress(runs: Sequence[Run]) -> dict[str, Any]:
    """Runs in all, by status (``counts``) and finished; epochs done and to do of all runs."""
    counts = Counter(run.status for run in runs)
    return {
        "runs": len(runs),
        "counts": {status: counts.get(status, 0) for status in RUN_STATUSES},
        "finished": sum(1 for run in runs if run.finished),
        "epochs_done": sum(run.epochs_done for run in runs),
        "epochs_total": sum(run.epochs_total for run in runs),
    }
