"""What the API and the dashboard send: runs, uploaded datasets and weights as JSON, and downloads."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable
from typing import Annotated, Any, Literal

import numpy as np
from flask import Response
from pydantic import Field
from typing_extensions import NotRequired, TypedDict  # pydantic reads TypedDicts from here before Python 3.12

from trainyard.service.storage.models import DATASET_TASKS, ID_PATTERN, RUN_KINDS, RUN_STATUSES, Dataset, Run
from trainyard.trainer import TrainSpec

Id = Annotated[str, Field(pattern=f"^{ID_PATTERN}$")]
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class Summary(TypedDict):
    """A run's final and best metrics, null until known; ``best_epoch`` is the epoch of ``best_val_loss``."""

    final_train_loss: float | None
    final_val_loss: float | None
    final_train_accuracy: float | None
    final_val_accuracy: float | None
    best_val_loss: float | None
    best_val_accuracy: float | None
    best_epoch: int | None


class RunDocument(TypedDict):
    """A run: its spec, where it is (``epochs_done`` of ``epochs_total``), its summary and error.

    ``kind`` is ``trained`` for a run a worker trains from its spec, ``tracked`` for one a client logs from its own
    code (``POST /api/runs/track``): its ``spec`` is the client's ``params``, any JSON object, its
    ``epochs_total`` 0 (not known in advance), its ``attempts`` 0.

    ``attempts`` is the attempt the run is on: 0 until a worker first takes it, 1 once one does, and one more
    each time the worker training it is lost (killed, or out of touch past its lease) and another takes over. A
    worker stopped gracefully (SIGTERM) hands the run on within the same attempt. A run is failed rather than
    started on a sixth attempt.

    ``stop_reason`` says why a finished run stopped, e.g. ``completed: all 30 epochs``, ``early stopping at epoch
    20 of 30: val_loss did not improve on its best, 0.0812 at epoch 12, for 8 epochs (patience 8)``, ``cancelled at
    epoch 14``, ``diverged at epoch 9`` (null while it trains, and for runs that ended before it was recorded).
    """

    id: Id
    name: str
    project: str
    status: Literal[RUN_STATUSES]  # type: ignore[valid-type]
    kind: Literal[RUN_KINDS]  # type: ignore[valid-type]
    spec: TrainSpec | dict[str, Any]
    tags: list[str]
    notes: str
    sweep_id: Id | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    epochs_done: int
    epochs_total: int
    cancel_requested: bool
    attempts: int
    error: str | None
    stop_reason: str | None
    summary: Summary


class CreatedRun(RunDocument):
    """A run just created, and ``defaults``: the training settings its spec left out, with the values they took
    (``{"epochs": 100, "batch_size": 32}``), so that nothing is chosen silently."""

    defaults: dict[str, Any]


#: The top-level spec fields that shape training, reported in ``defaults`` when a spec leaves them out.
DEFAULTED_FIELDS = ("dataset", "model", "loss", "optimizer", "lr_schedule", "epochs", "batch_size", "shuffle",
                    "dtype", "seed", "early_stopping", "snapshot_every")


def defaults(spec: TrainSpec) -> dict[str, Any]:
    """The fields of :data:`DEFAULTED_FIELDS` that ``spec`` was not given, with their default values."""
    dumped = spec.model_dump(mode="json", include=set(DEFAULTED_FIELDS) - spec.model_fields_set)
    return {name: dumped[name] for name in DEFAULTED_FIELDS if name in dumped}


class RunPage(TypedDict):
    """A page of runs, and the cursor of the next page (null on the last)."""

    runs: list[RunDocument]
    next: str | None


class Epoch(TypedDict):
    """One epoch's metrics (those asked for), null where an epoch has no value; the norms one per layer.  A tracked
    run's epochs also carry its custom metrics by name (``"bleu": 21.3``)."""

    epoch: int
    train_loss: NotRequired[float | None]
    val_loss: NotRequired[float | None]
    train_accuracy: NotRequired[float | None]
    val_accuracy: NotRequired[float | None]
    lr: NotRequired[float | None]
    seconds: NotRequired[float | None]
    weight_norms: NotRequired[list[float | None]]
    grad_norms: NotRequired[list[float | None]]


class Epochs(TypedDict):
    """A page of a run's epochs, in order, and the ``since`` of the next page (null on the last, and when
    downsampled: ``max_points`` bounds the answer instead)."""

    epochs: list[Epoch]
    next: int | None


class RunExport(TypedDict):
    """A run and its every epoch."""

    run: RunDocument
    epochs: list[Epoch]


class LayerWeights(TypedDict):
    """One layer's weights: ``W`` of shape (fan_in, fan_out) and ``b`` of shape (fan_out,); null for NaN."""

    W: list[list[float | None]]
    b: list[float | None]


class Weights(TypedDict):
    """The weights kept at an epoch."""

    epoch: int
    layers: list[LayerWeights]


class DatasetDocument(TypedDict):
    """An uploaded CSV as it was read (never its content)."""

    id: Id
    name: str
    filename: str
    target: str
    task: Literal[DATASET_TASKS]  # type: ignore[valid-type]
    n_samples: int
    n_features: int
    classes: list[Any] | None
    size_bytes: int
    sha256: str
    created_at: Timestamp


def iso(value: dt.datetime | None) -> str | None:
    """An aware datetime as ISO 8601 in UTC (``2026-01-02T03:04:05.123456Z``), or None."""
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def run_json(run: Run) -> RunDocument:
    """A run as the API shows it."""
    return {
        "id": run.id,
        "name": run.name,
        "project": run.project,
        "status": run.status,
        "kind": run.kind,
        "spec": run.spec,
        "tags": run.tags,
        "notes": run.notes,
        "sweep_id": run.sweep_id,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "epochs_done": run.epochs_done,
        "epochs_total": run.epochs_total,
        "cancel_requested": run.cancel_requested,
        "attempts": run.attempts,
        "error": run.error,
        "stop_reason": run.stop_reason,
        "summary": run.summary,
    }


def _finite_list(array: np.ndarray) -> list[Any]:
    """``array.tolist()``, with NaN and infinities as None (JSON has neither)."""
    finite = np.isfinite(array)
    if finite.all():
        return array.tolist()
    values = array.astype(object)
    values[~finite] = None
    return values.tolist()


def weight_arrays(data: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(W1, b1), (W2, b2), ...]`` of stored ``.npz`` weights (arrays named ``W1, b1, W2, b2, ...``)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        count = sum(1 for name in arrays.files if name.startswith("W"))
        return [(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(1, count + 1)]


def weights_layers(data: bytes) -> list[LayerWeights]:
    """The layers of stored ``.npz`` weights as ``[{"W": ..., "b": ...}, ...]``, NaN and infinities as None."""
    return [{"W": _finite_list(W), "b": _finite_list(b)} for W, b in weight_arrays(data)]


def dataset_json(dataset: Dataset) -> DatasetDocument:
    """An uploaded dataset as the API shows it (never its content)."""
    return {
        "id": dataset.id,
        "name": dataset.name,
        "filename": dataset.filename,
        "target": dataset.target,
        "task": dataset.task,
        "n_samples": dataset.n_samples,
        "n_features": dataset.n_features,
        "classes": dataset.classes,
        "size_bytes": dataset.size_bytes,
        "sha256": dataset.sha256,
        "created_at": iso(dataset.created_at),
    }


def attachment(body: bytes | Iterable[bytes], mimetype: str, filename: str) -> Response:
    """A download named ``filename``: its bytes, or chunks to stream."""
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{filename}"'})
