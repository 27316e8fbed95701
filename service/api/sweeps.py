"""The sweeps API under ``/api``: create a sweep and all its runs at once; read, list and cancel sweeps.

``POST /api/sweeps`` expands the request (:mod:`trainyard.service.sweeps`), validates
every run's spec, then stores the sweep and all its runs in one transaction
and sends the runs to the workers after the commit: a sweep is created whole
or not at all.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, url_for
from sqlalchemy.orm import Session
from trainyard.service.api.requests import choice_param, int_param, json_body
from trainyard.service.api.runs import check_dataset, enqueue
from trainyard.service.api.schemas import iso, run_fields, run_json
from trainyard.service.auth import requires
from trainyard.service.context import transaction
from trainyard.service.errors import ApiError, not_found
from trainyard.service.storage import repo
from trainyard.service.storage.models import Run, Sweep
from trainyard.service.sweeps import (
    METRICS,
    SweepPointError,
    SweepRequest,
    default_metric,
    expand,
    metric_value,
    progress,
    ranked,
)

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


def _runs(s: Session, sweep_id: str) -> list[Run]:
    return repo.sweep_runs(session=s, sweep_ids=[sweep_id])[sweep_id]


def _sweep_or_404(s: Session, sweep_id: str) -> Sweep:
    sweep = repo.get_sweep(session=s, sweep_id=sweep_id)
    if sweep is None:
        raise not_found(f"no sweep {sweep_id}")
    return sweep


@bp.post("/sweeps")
@requires("write")
def create_sweep() -> tuple[Response, int, dict[str, str]]:
    request = json_body(SweepRequest)
    try:
        specs = expand(request)
    except SweepPointError as exc:
        raise ApiError(422, "invalid", str(exc), exc.fields) from None
    stored_space = request.model_dump(mode="json", include={"space", "n", "seed"})
    with transaction() as s:
        for spec in {spec.dataset: spec for spec in specs}.values():  # each dataset once
            check_dataset(s, spec)
        sweep = repo.create_sweep(
            session=s, name=request.name, method=request.method, base_spec=request.spec, space=stored_space
        )
        runs = [repo.create_run(session=s, sweep_id=sweep.id, **run_fields(spec)) for spec in specs]
        body = sweep_json(sweep, runs)
    for run in runs:
        enqueue(run.id)
    return jsonify(body), 201, {"Location": url_for(".get_sweep", sweep_id=sweep.id)}


@bp.get("/sweeps/<id:sweep_id>")
@requires("read")
def get_sweep(sweep_id: str) -> Response:
    metric = choice_param("metric", tuple(METRICS))
    with transaction() as s:
        sweep = _sweep_or_404(s, sweep_id)
        body = sweep_json(sweep, _runs(s, sweep_id), metric=metric)
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
        sweep = _sweep_or_404(s, sweep_id)
        for run in _runs(s, sweep_id):
            if not run.finished:
                repo.request_cancel(session=s, run_id=run.id)
        s.expire_all()
        body = sweep_json(sweep, _runs(s, sweep_id))
    return jsonify(body)
