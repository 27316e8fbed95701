"""What the dashboard shows of a sweep: its runs ranked by a metric, their swept values, its progress.

The pages (:mod:`.pages`) render it; the sweep page's script gets the same
dict from ``/ui/data/sweeps/<id>`` (:mod:`.data`) while the sweep has queued
or running runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from trainyard.service import sweeps as shared
from trainyard.service.dashboard.views import duration_seconds, format_duration
from trainyard.service.specpaths import get_path
from trainyard.service.storage.models import Run, Sweep
from trainyard.service.sweeps import METRICS


def default_metric(sweep: Sweep) -> str:
    """``val_loss`` when the base spec holds data out, else ``train_loss`` (as the API ranks)."""
    return shared.default_metric(sweep.base_spec)


def swept_paths(sweep: Sweep) -> list[str]:
    return list((sweep.space or {}).get("space") or {})


def space_text(sweep: Sweep) -> list[tuple[str, str]]:
    """Each swept path with what it takes: the grid's values or the distribution, as short text."""
    rows = []
    for path, values in ((sweep.space or {}).get("space") or {}).items():
        if isinstance(values, list):
            text = ", ".join(short_value(value) for value in values)
        elif isinstance(values, dict) and len(values) == 1:
            kind, arg = next(iter(values.items()))
            shown = ", ".join(short_value(value) for value in arg) if isinstance(arg, list) else short_value(arg)
            text = f"{kind.replace('_', '-')} [{shown}]" if kind != "choice" else f"choice of {shown}"
        else:
            text = short_value(values)
        rows.append((path, text))
    return rows


def short_value(value: Any) -> str:
    """A swept value as the sweep page shows it: a float with 4 significant digits, a string as it is, else JSON."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def sweep_view(sweep: Sweep, runs: Sequence[Run], metric: str) -> dict[str, Any]:
    """The sweep as its page and its script show it: runs ranked by ``metric``, each with its swept values."""
    paths = swept_paths(sweep)
    order = shared.ranked(runs, metric)
    best = shared.best_run(runs, metric)
    rows = [
        {
            "id": run.id,
            "name": run.name,
            "status": run.status,
            "cancel_requested": run.cancel_requested,
            "epochs_done": run.epochs_done,
            "epochs_total": run.epochs_total,
            "duration": format_duration(duration_seconds(run)),
            "value": shared.metric_value(run, metric),
            "params": [get_path(run.spec, path) for path in paths],
        }
        for run in order
    ]
    return {
        "id": sweep.id,
        "name": sweep.name,
        "method": sweep.method,
        "metric": metric,
        "higher_is_better": METRICS[metric][1],
        "paths": paths,
        "progress": shared.progress(runs),
        "active": any(not run.finished for run in runs),
        "best": None if best is None else {"run": best.id, "value": shared.metric_value(best, metric)},
        "runs": rows,
    }
