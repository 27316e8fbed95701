"""The runs API under ``/api``: create, list, read, change, delete and cancel runs; their epochs, weights, exports."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, url_for
from sqlalchemy.orm import Session

from trainyard.service import operations
from trainyard.service.api.requests import choice_param, int_param, json_body, list_param, str_param
from trainyard.service.api.schemas import RunPatch
from trainyard.service.auth import requires
from trainyard.service.context import transaction
from trainyard.service.documents import attachment, run_json, weights_layers
from trainyard.service.errors import invalid_parameter, not_found
from trainyard.service.storage import repo
from trainyard.service.storage.models import RUN_STATUSES, Run
from trainyard.trainer import TrainSpec

bp = Blueprint("runs", __name__, url_prefix="/api")

#: Largest ``max_points`` of the epochs endpoint.
MAX_POINTS = 100_000


@bp.post("/runs")
@requires("write")
def create_run() -> tuple[Response, int, dict[str, str]]:
    run = operations.create_run(json_body(TrainSpec))
    return jsonify(run_json(run)), 201, {"Location": url_for(".get_run", run_id=run.id)}


def _list_arguments() -> dict[str, Any]:
    """``repo.list_runs``'s arguments from the query string; 400 naming a bad parameter."""
    arguments = {
        "status": choice_param("status", RUN_STATUSES),
        "tag": str_param("tag"),
        "sweep_id": str_param("sweep"),
        "q": str_param("q"),
        "sort": str_param("sort"),
        "limit": int_param("limit", minimum=1),
        "cursor": str_param("cursor"),
    }
    sort = arguments["sort"]
    if sort is not None and sort.removeprefix("-") not in repo.SORT_FIELDS:
        raise invalid_parameter("sort", f"use one of {', '.join(repo.SORT_FIELDS)}, with '-' for descending")
    return {name: value for name, value in arguments.items() if value is not None}


def _page(s: Session, arguments: dict[str, Any]) -> tuple[list[Run], str | None]:
    """``repo.list_runs``; 400 for a bad cursor (status and sort were checked already)."""
    try:
        return repo.list_runs(session=s, **arguments)
    except ValueError as exc:
        raise invalid_parameter("cursor", str(exc)) from None


@bp.get("/runs")
@requires("read")
def list_runs() -> Response:
    arguments = _list_arguments()
    with transaction() as s:
        runs, cursor = _page(s, arguments)
    return jsonify(runs=[run_json(run) for run in runs], next=cursor)


@bp.get("/runs/<id:run_id>")
@requires("read")
def get_run(run_id: str) -> Response:
    with transaction() as s:
        run = operations.get_run(s, run_id)
    return jsonify(run_json(run))


@bp.patch("/runs/<id:run_id>")
@requires("write")
def update_run(run_id: str) -> Response:
    patch = json_body(RunPatch)
    with transaction() as s:
        run = repo.update_run(session=s, run_id=run_id, **patch.model_dump(exclude_unset=True))
    if run is None:
        raise not_found(f"no run {run_id}")
    return jsonify(run_json(run))


@bp.delete("/runs/<id:run_id>")
@requires("write")
def delete_run(run_id: str) -> tuple[str, int]:
    with transaction() as s:
        operations.delete_run(s, run_id)
    return "", 204


@bp.post("/runs/<id:run_id>/cancel")
@requires("write")
def cancel_run(run_id: str) -> Response:
    with transaction() as s:
        run = operations.cancel_run(s, run_id)
    return jsonify(run_json(run))


@bp.get("/runs/<id:run_id>/epochs")
@requires("read")
def get_epochs(run_id: str) -> Response:
    since = int_param("since") or 0
    fields = list_param("fields", repo.EPOCH_FIELDS)
    max_points = int_param("max_points", minimum=2, maximum=MAX_POINTS)
    with transaction() as s:
        operations.get_run(s, run_id)
        epochs = repo.get_epochs(session=s, run_id=run_id, since=since, fields=fields, max_points=max_points)
    return jsonify(epochs=epochs)


@bp.get("/runs/<id:run_id>/weights")
@requires("read")
def get_weights(run_id: str) -> Response:
    epoch = int_param("epoch")
    as_npz = choice_param("format", ("json", "npz")) == "npz"
    with transaction() as s:
        epoch, data = operations.weights(s, run_id, epoch)
    if as_npz:
        return attachment(data, "application/octet-stream", f"{run_id}-epoch{epoch}.npz")
    return jsonify(epoch=epoch, layers=weights_layers(data))


@bp.get("/runs/<id:run_id>/export")
@requires("read")
def export_run(run_id: str) -> Response:
    """Every epoch as CSV, or the run and every epoch as JSON (see :func:`trainyard.service.operations.export`)."""
    form = choice_param("format", tuple(operations.EXPORT_TYPES)) or "csv"
    with transaction() as s:
        body = operations.export(s, run_id, form)  # type: ignore[arg-type]
    return attachment(body, operations.EXPORT_TYPES[form], f"{run_id}-epochs.{form}")
