"""What the API reads: query strings, JSON bodies and the upload form, as pydantic models.

Each is declared on its view (:func:`.declare.declare`), which parses the
request with it and documents it; the job spec itself is
:class:`trainyard.trainer.TrainSpec` and a sweep :class:`trainyard.service.sweeps.SweepRequest`.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from flask import request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, field_validator

from trainyard.service.api.declare import MAX_INT_PARAMETER, Header, QueryInt, comma_list
from trainyard.service.comparison import MAX_RUNS
from trainyard.service.errors import invalid_parameter
from trainyard.service.groups import GROUPINGS
from trainyard.service.operations import IDEMPOTENCY_HEADER
from trainyard.service.storage import repo
from trainyard.service.storage.models import ID_PATTERN, MAX_IDEMPOTENCY_KEY_LENGTH, MAX_NAME_LENGTH, RUN_STATUSES
from trainyard.service.sweeps import METRICS
from trainyard.trainer.spec import DEFAULT_PROJECT, MAX_EPOCHS, MAX_NOTES_LENGTH, MAX_TAG_LENGTH, MAX_TAGS, Name

#: Largest ``max_points`` of a curve.
MAX_POINTS = 100_000
#: Epochs one page of ``GET /api/runs/<id>/epochs`` holds at most, and by default.
MAX_EPOCH_PAGE = 10_000
DEFAULT_EPOCH_PAGE = 1000
#: Points per curve of a comparison when ``max_points`` is not given.
DEFAULT_MAX_POINTS = 1000
#: The curves a comparison returns when ``fields`` is not given.
DEFAULT_COMPARE_FIELDS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
#: Most sweeps one listing returns, and how many when ``limit`` is not given.
MAX_SWEEP_LIST = 500
DEFAULT_SWEEP_LIST = 100
#: What an upload's ``task`` may say.
TASKS = ("auto", "classification", "regression")

#: The sort keys of the runs list, ascending and (``-``) descending.
SORTS = tuple(key for field in repo.SORT_FIELDS for key in (field, f"-{field}"))

Tags = Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_TAG_LENGTH)]], Field(max_length=MAX_TAGS)]
Notes = Annotated[str, Field(max_length=MAX_NOTES_LENGTH)]
Id = Annotated[str, Field(pattern=f"^{ID_PATTERN}$")]
Points = Annotated[QueryInt, Field(ge=2, le=MAX_POINTS)]


def _numeric_field(name: str) -> str:
    if name in repo.EPOCH_LISTS or name in ("epoch", "recorded_at"):
        raise ValueError(f"{name!r} is no numeric metric: use {', '.join(repo.EPOCH_METRICS)} or a custom metric's "
                         "name")
    return name


def _epoch_field(name: str) -> str:
    if name in ("epoch", "recorded_at"):
        raise ValueError(f"{name!r} is no field to ask for: use {', '.join(repo.EPOCH_FIELDS)} or a custom "
                         "metric's name")
    return name


#: A built-in epoch field, or a custom metric's name (a name no run has is refused by the view).
EpochField = Annotated[str, Field(pattern=repo.METRIC_NAME_PATTERN), AfterValidator(_epoch_field)]
#: A numeric epoch field: a built-in metric, or a custom metric's name.
MetricField = Annotated[str, Field(pattern=repo.METRIC_NAME_PATTERN), AfterValidator(_numeric_field)]
#: Most custom metric names one query may ask for besides the built-in fields.
MAX_QUERY_FIELDS = len(repo.EPOCH_FIELDS) + repo.MAX_CUSTOM_METRICS


class _Query(BaseModel):
    """A query string: parameters it does not name are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RunListQuery(_Query):
    """``GET /api/runs``: filters, sort and page."""

    status: Literal[RUN_STATUSES] | None = Field(None, description="Only runs in this status.")  # type: ignore[valid-type]
    tag: Annotated[str, Field(min_length=1, max_length=MAX_TAG_LENGTH)] | None = Field(
        None, description="Only runs with this tag.")
    sweep: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)] | None = Field(
        None, description="Only runs of this sweep: its id, or its name (the runs of every sweep so named).")
    q: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)] | None = Field(
        None, description="Only runs whose name contains this (case-insensitive).")
    project: Name | None = Field(None, description="Only the runs of this project (its exact name).")
    sort: Literal[SORTS] | None = Field(  # type: ignore[valid-type]
        None, description="The order; '-' for descending (default -created_at: the newest first). Walking the pages "
        "is stable sorted by created_at or name; status, epochs_done and the summary metrics change while runs train, "
        "so a walk sorted by one of them may miss a run that changed meanwhile, or show it twice.")
    limit: Annotated[QueryInt, Field(ge=1, le=MAX_INT_PARAMETER)] | None = Field(
        None, description=f"Runs per page (default {repo.DEFAULT_LIST_LIMIT}, at most {repo.MAX_LIST_LIMIT}).")
    cursor: Annotated[str, Field(min_length=1, max_length=1000)] | None = Field(
        None, description="The `next` of the previous page.")


class EpochsQuery(_Query):
    """``GET /api/runs/<id>/epochs``."""

    since: Annotated[QueryInt, Field(ge=0, le=MAX_INT_PARAMETER)] = Field(0, description="Only epochs after this.")
    fields: comma_list(EpochField, max_length=MAX_QUERY_FIELDS) | None = Field(  # type: ignore
        None, description=f"The fields to return, comma-separated: {', '.join(repo.EPOCH_FIELDS)} and the run's "
        "custom metrics by name (default: all).")
    max_points: Points | None = Field(
        None, description="At most this many epochs: each bucket keeps its minimum and maximum, so spikes stay.")
    limit: Annotated[QueryInt, Field(ge=1, le=MAX_EPOCH_PAGE)] = Field(
        DEFAULT_EPOCH_PAGE, description="Without max_points: at most this many epochs; `next` is the `since` of "
        "the next page (null on the last).")


class WeightsQuery(_Query):
    """``GET /api/runs/<id>/weights``."""

    epoch: Annotated[QueryInt, Field(ge=0, le=MAX_INT_PARAMETER)] | None = Field(
        None, description="The epoch (default: the latest with weights).")
    format: Literal["json", "npz"] = Field("json", description="JSON, or the `.npz` file.")


class ExportQuery(_Query):
    """``GET /api/runs/<id>/export``."""

    format: Literal["csv", "json"] = Field("csv", description="CSV, or the run and its epochs as JSON.")


class CompareQuery(_Query):
    """``GET /api/compare``."""

    runs: comma_list(Annotated[str, Field(min_length=1, max_length=64)], max_length=MAX_RUNS) = Field(  # type: ignore
        description=f"The runs, comma-separated (1 to {MAX_RUNS}, each once).")
    fields: comma_list(MetricField, max_length=MAX_QUERY_FIELDS) | None = Field(  # type: ignore
        None, description=f"The curves, comma-separated: {', '.join(repo.EPOCH_METRICS)} and custom metrics by name "
        f"(default {', '.join(DEFAULT_COMPARE_FIELDS)}).")
    max_points: Points = Field(DEFAULT_MAX_POINTS, description="Points per curve.")
    group: Literal[GROUPINGS] | None = Field(  # type: ignore[valid-type]
        None, description="Also group the runs whose parameters are equal but for this one (`seed`): each group's "
        "curves as the mean, standard deviation, min and max at each epoch over its runs, and its summary as mean "
        "and standard deviation.")

    @field_validator("runs")
    @classmethod
    def _each_once(cls, runs: list[str]) -> list[str]:
        repeated = sorted({run_id for run_id in runs if runs.count(run_id) > 1})
        if repeated:
            raise ValueError(f"each run may be named once; repeated: {', '.join(repeated)}")
        return runs


class SweepListQuery(_Query):
    """``GET /api/sweeps``."""

    project: Name | None = Field(None, description="Only the sweeps of this project (its exact name).")
    limit: Annotated[QueryInt, Field(ge=1, le=MAX_SWEEP_LIST)] = Field(
        DEFAULT_SWEEP_LIST, description="Sweeps per page, the newest first.")
    cursor: Annotated[str, Field(min_length=1, max_length=1000)] | None = Field(
        None, description="The `next` of the previous page.")


class ProjectListQuery(_Query):
    """``GET /api/projects``."""

    limit: Annotated[QueryInt, Field(ge=1, le=repo.MAX_PROJECT_LIMIT)] = Field(
        repo.DEFAULT_PROJECT_LIMIT, description="Projects per page, by name.")
    cursor: Annotated[str, Field(min_length=1, max_length=1000)] | None = Field(
        None, description="The `next` of the previous page.")


class SweepQuery(_Query):
    """``GET /api/sweeps/<id>``."""

    metric: Literal[tuple(METRICS)] | None = Field(  # type: ignore[valid-type]
        None, description="Ranks the runs (default val_loss with held-out data, else train_loss).")


#: What a 429 to a request that queues runs means.
QUOTA = "The token has as many runs queued as it may (`TRAINYARD_MAX_QUEUED_RUNS`); Retry-After says when to try."

#: The ``Idempotency-Key`` header: any printable ASCII text, up to 200 characters (a UUID, say).
IdempotencyKey = Header(
    IDEMPOTENCY_HEADER, "A key of the client's choosing: a request repeated with it makes no second run.",
    {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH, "pattern": "^[\\x21-\\x7e]+$"},
)
_IDEMPOTENCY_KEY = re.compile(f"[\\x21-\\x7e]{{1,{MAX_IDEMPOTENCY_KEY_LENGTH}}}")


def idempotency_key() -> str | None:
    """The request's ``Idempotency-Key``, or None; 400 naming the header when it is not 1 to 200 printable
    ASCII characters."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise invalid_parameter(IDEMPOTENCY_HEADER, f"must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII "
                                "characters, without spaces")
    return key


class DatasetForm(BaseModel):
    """The text fields of ``POST /api/datasets`` (the CSV itself is the file part ``file``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name | None = Field(None, description="A label (default: the file's name without its extension).")
    target: Name | None = Field(None, description="The column to predict (default: the last).")
    task: Literal[TASKS] = Field("auto", description="What the target is; auto: decided from its values.")  # type: ignore


class RunPatch(BaseModel):
    """The body of ``PATCH /api/runs/<id>``: any of ``name``, ``tags``, ``notes``, with the spec's limits."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name | None = None
    tags: Tags | None = None
    notes: Notes | None = None

    @field_validator("name", "tags", "notes", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null (leave the field out to keep it)")
        return value


# --------------------------------------------------------------------------- tracked runs

#: Largest ``params`` of a tracked run, as compact JSON.
MAX_PARAMS_BYTES = 64 * 1024
#: Most epochs one ``POST /api/runs/<id>/epochs`` takes.
MAX_EPOCH_BATCH = 10_000
#: Largest body of ``POST /api/runs/<id>/epochs``: 10,000 epochs of every built-in metric and 32 custom ones fit.
MAX_EPOCHS_BODY = 16 * 2**20

#: A metric's value: a finite float, or null.
MetricValue = Annotated[float, Field(allow_inf_nan=False)] | None


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(json.dumps(params, separators=(",", ":"), allow_nan=False).encode())
    except ValueError:
        raise ValueError("must hold JSON values only: no NaN or infinities") from None
    if size > MAX_PARAMS_BYTES:
        raise ValueError(f"is {size:,} bytes as JSON; at most {MAX_PARAMS_BYTES:,}")
    return params


class TrackRequest(BaseModel):
    """The body of ``POST /api/runs/track``: a run a client logs from its own code."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name = Field(description="The run's name.")
    project: Name = Field(DEFAULT_PROJECT, description="The project to file the run under.")
    params: Annotated[dict[str, Any], AfterValidator(_json_params)] = Field(
        default_factory=dict, description="The run's parameters: any JSON object (nested allowed), at most 64 KiB "
        "as JSON. The run's `spec`, compared with other runs' by dotted path.")
    tags: Tags = Field(default_factory=list)
    notes: Notes = ""


class TrackedEpoch(BaseModel):
    """One epoch a client logged: ``epoch`` and any of the built-in metrics and custom ones by name
    (``{"epoch": 3, "train_loss": 0.4, "bleu": 21.3}``); values finite floats or null."""

    model_config = ConfigDict(extra="allow", strict=True)

    epoch: Annotated[int, Field(ge=1, le=MAX_EPOCHS)]
    train_loss: MetricValue = None
    val_loss: MetricValue = None
    train_accuracy: MetricValue = None
    val_accuracy: MetricValue = None
    lr: MetricValue = None
    seconds: MetricValue = None
    __pydantic_extra__: dict[str, MetricValue] = Field(init=False)  # type: ignore[assignment]


class TrackedEpochs(RootModel[Annotated[list[TrackedEpoch], Field(min_length=1, max_length=MAX_EPOCH_BATCH)]]):
    """The body of ``POST /api/runs/<id>/epochs``: 1 to 10,000 epochs."""


class WeightsUploadQuery(_Query):
    """``POST /api/runs/<id>/weights``."""

    epoch: Annotated[QueryInt, Field(ge=1, le=MAX_EPOCHS)] = Field(description="The epoch the weights are of.")


class FinishRequest(BaseModel):
    """The body of ``POST /api/runs/<id>/finish``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    status: Literal["succeeded", "failed"] = Field(description="How the run ended.")
    error: Annotated[str, Field(max_length=MAX_NOTES_LENGTH)] | None = Field(
        None, description="What went wrong, for a failed run (null for a succeeded one).")
