"""The sweeps API under ``/api``: create a sweep and all its runs at once; read, list and cancel sweeps.

``POST /api/sweeps`` creates the sweep whole or not at all
(:func:`trainyard.service.operations.create_sweep`).
"""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Response, jsonify, url_for
from sqlalchemy.orm import Session
from typing_extensions import NotRequired, TypedDict

from trainyard.service import operations
from trainyard.service.api.declare import declare
from trainyard.service.api.schemas import QUOTA, IdempotencyKey, SweepListQuery, SweepQuery, idempotency_key
from trainyard.service.auth import requires
from trainyard.service.context import transaction
from trainyard.service.documents import Id, RunDocument, Timestamp, iso, run_json
from trainyard.service.errors import invalid_parameter
from trainyard.service.storage import repo
from trainyard.service.storage.models import RANKED_STATUSES, SWEEP_METHODS, Run, Sweep
from trainyard.service.sweeps import SweepRequest, best_run, default_metric, metric_value, progress

bp = Blueprint("sweeps", __name__, url_prefix="/api")

TAGS = ("sweeps",)


class Progress(TypedDict):
    """Runs in all, by status (``counts``) and finished; epochs done and to do of all runs."""

    runs: int
    counts: dict[str, int]
    finished: int
    epochs_done: int
    epochs_total: int


class Best(TypedDict):
    """The run with the best value of ``metric`` among the runs that finished training (``among``: their statuses;
    a cancelled or failed run stopped early, so its value is not comparable), null while none has one."""

    metric: str
    value: float | None
    run: Id | None
    among: list[str]


class SweepDocument(TypedDict):
    """A sweep: its request, its progress, its best run and (not in a listing) its runs."""

    id: Id
    name: str
    project: str
    method: Literal[SWEEP_METHODS]  # type: ignore[valid-type]
    space: dict[str, Any]
    n: int | None
    seed: int | None
    spec: dict[str, Any]
    created_at: Timestamp
    progress: Progress
    best: Best
    runs: NotRequired[list[RunDocument]]


class SweepList(TypedDict):
    """A page of sweeps, newest first, without their runs, and the cursor of the next page (null on the last)."""

    sweeps: list[SweepDocument]
    next: str | None


def _best(runs: list[Run], metric: str) -> Best:
    """The best run by ``metric`` (ties: the first in the sweep)."""
    best = best_run(runs, metric)
    return {"metric": metric, "value": None if best is None else metric_value(best, metric),
            "run": None if best is None else best.id, "among": list(RANKED_STATUSES)}


def sweep_json(sweep: Sweep, runs: list[Run], *, metric: str | None = None) -> SweepDocument:
    """A sweep as the API shows it: its request, progress, best run by ``metric`` and its runs."""
    metric = metric or default_metric(sweep.base_spec)
    return _document(sweep, progress(runs), _best(runs, metric)) | {"runs": [run_json(run) for run in runs]}


def _document(sweep: Sweep, shown_progress: Progress, best: Best) -> SweepDocument:
    return {
        "id": sweep.id,
        "name": sweep.name,
        "project": sweep.project,
        "method": sweep.method,
        "space": sweep.space.get("space"),
        "n": sweep.space.get("n"),
        "seed": sweep.space.get("seed"),
        "spec": sweep.base_spec,
        "created_at": iso(sweep.created_at),
        "progress": shown_progress,
        "best": best,
    }


def sweep_summaries(s: Session, sweeps: list[Sweep]) -> list[SweepDocument]:
    """Sweeps without their runs: progress and best run, counted in the database."""
    found = operations.summarize_sweeps(s, sweeps)
    return [_document(sweep, found[sweep.id].progress, {"metric": found[sweep.id].metric,
                                                        "value": found[sweep.id].best_value,
                                                        "run": found[sweep.id].best_run,
                                                        "among": list(RANKED_STATUSES)}) for sweep in sweeps]


@bp.post("/sweeps")
@requires("write")
@declare(body=SweepRequest, headers=(IdempotencyKey,), responses={201: SweepDocument, 429: QUOTA}, tags=TAGS,
         summary="Create a sweep: a base spec and a grid or random search space, all its runs queued at once",
         description="The base spec, every value a choice lists and every run's spec are checked first: one "
         "invalid refuses the whole sweep (fields `spec.<path>`, `space.<path>.choice.<i>.<path>`, "
         "`points.<i>.<path>`). With an `Idempotency-Key` header, a repeated request gets the sweep the first one "
         "made.")
def create_sweep(body: SweepRequest) -> tuple[Response, int, dict[str, str]]:
    sweep, runs = operations.create_sweep(body, idempotency_key=idempotency_key())
    return jsonify(sweep_json(sweep, runs)), 201, {"Location": url_for(".get_sweep", sweep_id=sweep.id)}


@bp.get("/sweeps/<id:sweep_id>")
@requires("read")
@declare(query=SweepQuery, responses={200: SweepDocument}, tags=TAGS,
         summary="A sweep: its progress, its runs and the best run by a metric")
def get_sweep(sweep_id: str, query: SweepQuery) -> Response:
    with transaction(read_only=True) as s:
        sweep = operations.get_sweep(s, sweep_id)
        body = sweep_json(sweep, operations.sweep_runs(s, sweep_id), metric=query.metric)
    return jsonify(body)


@bp.get("/sweeps")
@requires("read")
@declare(query=SweepListQuery, responses={200: SweepList}, tags=TAGS,
         summary="List sweeps, newest first, a page at a time, with their progress (all, or a project's)")
def list_sweeps(query: SweepListQuery) -> Response:
    with transaction(read_only=True) as s:
        try:
            sweeps, cursor = repo.list_sweeps(session=s, project=query.project, limit=query.limit,
                                              cursor=query.cursor)
        except ValueError as exc:
            raise invalid_parameter("cursor", str(exc)) from None
        body = sweep_summaries(s, sweeps)
    return jsonify(sweeps=body, next=cursor)


@bp.post("/sweeps/<id:sweep_id>/cancel")
@requires("write")
@declare(responses={200: SweepDocument}, tags=TAGS, summary="Cancel a sweep's queued and running runs",
         description="Its queued runs are cancelled at once, its running ones asked to stop; finished runs stay.")
def cancel_sweep(sweep_id: str) -> Response:
    with transaction() as s:
        sweep = operations.cancel_sweep(s, sweep_id)
        body = sweep_json(sweep, operations.sweep_runs(s, sweep_id))
    return jsonify(body)
