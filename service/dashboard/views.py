"""What the dashboard shows of a run: its status for the live updates, key parameters, timing."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from trainyard.service.storage.models import Run, utcnow

#: Statuses whose pages keep polling.
ACTIVE_STATUSES = ("queued", "running")

#: The runs table's sortable columns: (label, sort key).
METRIC_COLUMNS = (
    ("final train loss", "final_train_loss"),
    ("final val loss", "final_val_loss"),
    ("final val acc", "final_val_accuracy"),
    ("best val loss", "best_val_loss"),
    ("best val acc", "best_val_accuracy"),
)


def duration_seconds(run: Run, now: dt.datetime | None = None) -> float | None:
    """Seconds from start to finish (to now while running); None before it starts."""
    if run.started_at is None:
        return None
    end = run.finished_at or (now or utcnow())
    return max(0.0, (end - run.started_at).total_seconds())


def format_duration(seconds: float | None) -> str:
    """``"4.2 s"``, ``"3 min 05 s"``, ``"2 h 01 min"``; ``"–"`` for None."""
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_number(value: Any) -> str:
    """A metric with 4 significant digits; ``"–"`` for None or NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def status_json(run: Run) -> dict[str, Any]:
    """What the live updates need of a run: status, progress, summary, duration, error, why it stopped."""
    return {
        "id": run.id,
        "status": run.status,
        "epochs_done": run.epochs_done,
        "epochs_total": run.epochs_total,
        "cancel_requested": run.cancel_requested,
        "error": run.error,
        "stop_reason": run.stop_reason,
        "summary": run.summary,
        "duration": format_duration(duration_seconds(run)),
    }


class Param(NamedTuple):
    """One of the runs table's key parameters: its label, its text, and the full value on hover (or None)."""

    label: str
    text: str
    full: str | None = None


def key_params(spec: Mapping[str, Any]) -> list[Param]:
    """The few parameters the runs table shows: dataset, model, optimizer, lr (4 significant digits), batch size.

    A tracked run's params are any JSON: what is not shaped as a spec's shows as ``?``.
    """
    dataset, model, optimizer = (_mapping(spec.get(key)) for key in ("dataset", "model", "optimizer"))
    lr = optimizer.get("lr")
    if not isinstance(lr, int | float) or isinstance(lr, bool):
        lr = None
    return [
        Param("data", str(dataset.get("name") or dataset.get("upload") or "?")),
        Param("model", model_text(model)),
        Param("opt", str(optimizer.get("name", "?"))),
        Param("lr", "?" if lr is None else format_number(lr), None if lr is None else json.dumps(lr)),
        Param("batch", str(spec.get("batch_size"))),
    ]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def model_text(model: Mapping[str, Any]) -> str:
    """``"31 sigmoid · 16 relu"``: each hidden layer's units and activation; ``"linear"`` without hidden layers."""
    if model.get("type") == "perceptron":
        return "perceptron"
    hidden = model.get("hidden")
    layers = [f"{layer.get('units')} {layer.get('activation') or ''}".strip()
              for layer in (hidden if isinstance(hidden, list) else []) if isinstance(layer, Mapping)]
    return " · ".join(layers) or "linear"


def columns(rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> dict[str, list[Any]]:
    """``get_epochs``'s rows as columns ``{"epoch": [...], field: [...]}`` (what the charts take)."""
    return {name: [row.get(name) for row in rows] for name in ("epoch", *fields)}


def elapsed_at(epochs: np.ndarray, all_epochs: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """Wall-clock seconds of training at the end of each of ``epochs``, from every epoch's ``seconds``.

    ``all_epochs`` and ``seconds`` are the run's full, not downsampled, series;
    a missing duration counts as 0.
    """
    if len(all_epochs) == 0 or len(epochs) == 0:
        return np.zeros(len(epochs))
    total = np.cumsum(np.nan_to_num(seconds, nan=0.0))
    index = np.clip(np.searchsorted(all_epochs, epochs), 0, len(all_epochs) - 1)
    return total[index]
