"""What the runs API reads and writes: the PATCH body model and the JSON of runs and weights."""

from __future__ import annotations

import datetime as dt
import io
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from trainyard.service.storage.models import Dataset, Run
from trainyard.trainer.spec import MAX_NAME_LENGTH, MAX_NOTES_LENGTH, MAX_TAG_LENGTH, MAX_TAGS, TrainSpec

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
Tags = Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_TAG_LENGTH)]], Field(max_length=MAX_TAGS)]
Notes = Annotated[str, Field(max_length=MAX_NOTES_LENGTH)]


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


def run_fields(spec: TrainSpec) -> dict[str, Any]:
    """The arguments of ``repo.create_run`` for a run of ``spec``."""
    return {
        "spec": spec.model_dump(mode="json"),
        "name": spec.name,
        "seed": spec.seed,
        "tags": list(spec.tags),
        "notes": spec.notes,
        "epochs_total": spec.epochs,
    }


def iso(value: dt.datetime | None) -> str | None:
    """An aware datetime as ISO 8601 in UTC (``2026-01-02T03:04:05.123456Z``), or None."""
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def run_json(run: Run) -> dict[str, Any]:
    """A run as the API shows it."""
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
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


def weights_layers(data: bytes) -> list[dict[str, list[Any]]]:
    """The layers of stored ``.npz`` weights (arrays ``W1, b1, W2, b2, ...``) as ``[{"W": ..., "b": ...}, ...]``."""
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        count = sum(1 for name in arrays.files if name.startswith("W"))
        return [{"W": _finite_list(arrays[f"W{i}"]), "b": _finite_list(arrays[f"b{i}"])} for i in range(1, count + 1)]


def dataset_json(dataset: Dataset) -> dict[str, Any]:
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
