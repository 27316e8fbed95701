"""What the API and the dashboard send: runs, uploaded datasets and weights as JSON, and downloads."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import numpy as np
from flask import Response

from trainyard.service.storage.models import Dataset, Run


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


def weight_arrays(data: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(W1, b1), (W2, b2), ...]`` of stored ``.npz`` weights (arrays named ``W1, b1, W2, b2, ...``)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        count = sum(1 for name in arrays.files if name.startswith("W"))
        return [(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(1, count + 1)]


def weights_layers(data: bytes) -> list[dict[str, list[Any]]]:
    """The layers of stored ``.npz`` weights as ``[{"W": ..., "b": ...}, ...]``, NaN and infinities as None."""
    return [{"W": _finite_list(W), "b": _finite_list(b)} for W, b in weight_arrays(data)]


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


def attachment(body: bytes, mimetype: str, filename: str) -> Response:
    """A download named ``filename``."""
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{filename}"'})
