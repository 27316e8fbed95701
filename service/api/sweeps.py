"""The sweeps API under ``/api``: create a sweep and all its runs at once; read, list and cancel sweeps.

``POST /api/sweeps`` creates the sweep whole or not at all
(:func:`trainyard.service.operations.create_sweep`).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, url_for

from trainyard.service import operations
from trainyard.service.api.requests import choice_param, int_param, json_body
from trainyard.service.auth import requires
from trainyard.service.context import transaction
from trainyard.service.documents import iso, run_json
from trainyard.service.storage import repo
from trainyard.service.storage.models import Run, Sweep
from trainyard.service.sweeps import METRICS, SweepRequest, default_metric, metric_value, progress, ranked

bp = Blueprint("sweeps", __name__, url_prefix="/api")

#: Most sweeps one listing returns.
MAX_LIST = 500


def _best(runs: list[Run], metric: str) -> dict[str, Any]:
    """The run with the best value of ``metric`` among those that have one (ties: the first)."""
    order = ranked(runs, metric)
    value = metric_value(order[0], metric) if order else None
    return {"metric": metric, "value": value, "run": None if value is None else order[0].id}


def sweep_json(sweep: Sweep, runs: list[Run], *, metric: str | None = None, with_runs: bool = True) -> dict[str, Any]:
    """A sweep as the API shows it: its request, progress, best run by ``metric`` and (optionally) its runs."""
    metric = metric or default_metric(sweep.base_spec)
    body: dict[str, Any] = {
        "id": sweep.id,
        "name": sweep.name,
        "method": sweep.method,
        "space": sweep.space.get("space"),
        "n": sweep.space.get("n"),
        "seed": sweep.space.get("seed"),
        "spec": sweep.base_spec,
        "created_at": iso(sweep.created_at),
        "progress": progress(runs),
        "best": _best(runs, metric),
    }
    if with_runs:
        body["runs"] = [run_json(run) for run in runs]
    return body


@bp.post("/sweeps")
@requires("write")
def create_sweep() -> tuple[Response, int, dict[str, str]]:
    sweep, runs = operations.create_sweep(json_body(SweepRequest))
    return jsonify(sweep_json(sweep, runs)), 201, {"Location": url_for(".get_sweep", sweep_id=sweep.id)}


@bp.get("/sweeps/<id:sweep_id>")
@requires("read")
def get_sweep(sweep_id: str) -> Response:
    metric = choice_param("metric", tuple(METRICS))
    with transaction() as s:
        sweep = operations.get_sweep(s, sweep_id)
        body = sweep_json(sweep, operations.sweep_runs(s, sweep_id), metric=metric)
    return jsonify(body)


@bp.get("/sweeps")
@requires("read")
def list_sweeps() -> Response:
    limit = int_param("limit", minimum=1, maximum=MAX_LIST) or 100
    with transaction() as s:
        sweeps = repo.list_sweeps(session=s, limit=limit)
        by_sweep = repo.sweep_runs(session=s, sweep_ids=[sweep.id for sweep in sweeps])
        body = [sweep_json(sweep, by_sweep[sweep.id], with_runs=False) for sweep in sweeps]
    return jsonify(sweeps=body)


@bp.post("/sweeps/<id:sweep_id>/cancel")
@requires("write")
def cancel_sweep(sweep_id: str) -> Response:
    """Cancel the sweep's queued runs at once and flag its running ones; finished runs stay as they are."""
    with transaction() as s:
        sweep = operations.cancel_sweep(s, sweep_id)
        body = sweep_json(sweep, operations.sweep_runs(s, sweep_id))
    return jsonify(body)
