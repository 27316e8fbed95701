"""The runs API under ``/api``: create, list, read, change, delete and cancel runs; their epochs and weights."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, url_for
from sqlalchemy.orm import Session
from trainyard.service.api.requests import choice_param, int_param, json_body, list_param, str_param
from trainyard.service.api.schemas import RunPatch, run_fields, run_json, weights_layers
from trainyard.service.auth import requires
from trainyard.service.context import services, transaction
from trainyard.service.errors import ApiError, invalid_field, invalid_parameter, not_found
from trainyard.service.queue import QueueError
from trainyard.service.storage import repo
from trainyard.service.storage.models import RUN_STATUSES, Run
from trainyard.trainer import SpecError, TrainSpec, check
from trainyard.trainer.spec import UploadData

bp = Blueprint("runs", __name__, url_prefix="/api")

#: Largest ``max_points`` of the epochs endpoint.
MAX_POINTS = 100_000


def _run_or_404(s: Session, run_id: str) -> Run:
    run = repo.get_run(session=s, run_id=run_id)
    if run is None:
        raise not_found(f"no run {run_id}")
    return run


def check_dataset(s: Session, spec: TrainSpec) -> None:
    """422 if the spec names an upload that does not exist."""
    if isinstance(spec.dataset, UploadData) and repo.get_dataset(session=s, dataset_id=spec.dataset.upload) is None:
        raise invalid_field("dataset.upload", f"no uploaded dataset {spec.dataset.upload}")


def check_trainable(spec: TrainSpec) -> None:
    """422 naming the field if the spec cannot train on its built-in dataset (a network with too many parameters
    for its features, a loss that does not suit the task): refused now rather than failed by a worker.

    Called outside any transaction (it loads the data).  An upload's fit is left to the worker, which reads the
    file anyway; the API would otherwise parse up to 16 MiB per request.
    """
    if isinstance(spec.dataset, UploadData):
        return
    try:
        check(spec)
    except SpecError as exc:
        raise invalid_field(exc.field, exc.message) from None


def enqueue(run_id: str) -> None:
    """Send the committed run to the workers; a broker that is down leaves it queued for the reconciler."""
    try:
        services().queue.send(run_id)
    except QueueError:
        current_app.logger.warning("run %s stays queued: the broker is unreachable", run_id, exc_info=True)


@bp.post("/runs")
@requires("write")
def create_run() -> tuple[Response, int, dict[str, str]]:
    spec = json_body(TrainSpec)
    check_trainable(spec)
    with transaction() as s:
        check_dataset(s, spec)
        run = repo.create_run(session=s, **run_fields(spec))
    enqueue(run.id)
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
        run = _run_or_404(s, run_id)
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
        if not repo.delete_run(session=s, run_id=run_id):
            raise not_found(f"no run {run_id}")
    return "", 204


@bp.post("/runs/<id:run_id>/cancel")
@requires("write")
def cancel_run(run_id: str) -> Response:
    with transaction() as s:
        if _run_or_404(s, run_id).finished:
            raise ApiError(409, "already_finished", f"run {run_id} has already finished")
        run = repo.request_cancel(session=s, run_id=run_id)  # if it finished meanwhile, it is returned unchanged
    return jsonify(run_json(run))


@bp.get("/runs/<id:run_id>/epochs")
@requires("read")
def get_epochs(run_id: str) -> Response:
    since = int_param("since") or 0
    fields = list_param("fields", repo.EPOCH_FIELDS)
    max_points = int_param("max_points", minimum=2, maximum=MAX_POINTS)
    with transaction() as s:
        _run_or_404(s, run_id)
        epochs = repo.get_epochs(session=s, run_id=run_id, since=since, fields=fields, max_points=max_points)
    return jsonify(epochs=epochs)


@bp.get("/runs/<id:run_id>/weights")
@requires("read")
def get_weights(run_id: str) -> Response:
    epoch = int_param("epoch")
    as_npz = choice_param("format", ("json", "npz")) == "npz"
    with transaction() as s:
        _run_or_404(s, run_id)
        stored = repo.get_weights(session=s, run_id=run_id, epoch=epoch)
    if stored is None:
        raise ApiError(404, "no_weights", f"run {run_id} has no weights" + ("" if epoch is None else f" at {epoch}"))
    epoch, data = stored
    if as_npz:
        filename = f"{run_id}-epoch{epoch}.npz"
        return Response(data, mimetype="application/octet-stream", headers=_attachment(filename))
    return jsonify(epoch=epoch, layers=weights_layers(data))


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}
