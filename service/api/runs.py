"""The runs API under ``/api``: create, list, read, change, delete and cancel runs; their epochs, weights, exports."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, stream_with_context, url_for

from trainyard.service import operations
from trainyard.service.api.declare import declare
from trainyard.service.api.schemas import (
    QUOTA,
    EpochsQuery,
    ExportQuery,
    IdempotencyKey,
    RunListQuery,
    RunPatch,
    WeightsQuery,
    idempotency_key,
)
from trainyard.service.auth import requires
from trainyard.service.context import transaction
from trainyard.service.documents import (
    CreatedRun,
    Epochs,
    RunDocument,
    RunExport,
    RunPage,
    Weights,
    attachment,
    defaults,
    run_json,
    weights_layers,
)
from trainyard.service.errors import ApiError, invalid_parameter, not_found
from trainyard.service.storage import repo
from trainyard.trainer import TrainSpec

bp = Blueprint("runs", __name__, url_prefix="/api")

#: Largest weights (their ``.npz``, 8 bytes a value) answered as JSON; larger ones only as the ``.npz`` file.
MAX_WEIGHTS_JSON_BYTES = 8 * 2**20

TAGS = ("runs",)


@bp.post("/runs")
@requires("write")
@declare(body=TrainSpec, headers=(IdempotencyKey,), responses={201: CreatedRun, 429: QUOTA}, tags=TAGS,
         summary="Create a run from a job spec and queue it",
         description="The spec is checked against its dataset too (a 422 names the field); the run is sent to the "
         "workers after it is stored. `defaults` names the training settings the spec left out and the values they "
         "took. With an `Idempotency-Key` header, a repeated request gets the run the first one made (a key used for "
         "another spec is a 422).")
def create_run(body: TrainSpec) -> tuple[Response, int, dict[str, str]]:
    run = operations.create_run(body, idempotency_key=idempotency_key())
    created: CreatedRun = {**run_json(run), "defaults": defaults(body)}
    return jsonify(created), 201, {"Location": url_for(".get_run", run_id=run.id)}


@bp.get("/runs")
@requires("read")
@declare(query=RunListQuery, responses={200: RunPage}, tags=TAGS,
         summary="List runs: filtered, sorted, a page at a time")
def list_runs(query: RunListQuery) -> Response:
    arguments = {"status": query.status, "tag": query.tag, "sweep": query.sweep, "q": query.q,
                 "project": query.project, "sort": query.sort, "limit": query.limit, "cursor": query.cursor}
    with transaction(read_only=True) as s:
        try:
            runs, cursor = repo.list_runs(session=s, **{name: value for name, value in arguments.items() if value})
        except ValueError as exc:  # status and sort are checked already: the cursor is at fault
            raise invalid_parameter("cursor", str(exc)) from None
    return jsonify(runs=[run_json(run) for run in runs], next=cursor)


@bp.get("/runs/<id:run_id>")
@requires("read")
@declare(responses={200: RunDocument}, tags=TAGS, summary="A run")
def get_run(run_id: str) -> Response:
    with transaction(read_only=True) as s:
        run = operations.get_run(s, run_id)
    return jsonify(run_json(run))


@bp.patch("/runs/<id:run_id>")
@requires("write")
@declare(body=RunPatch, responses={200: RunDocument}, tags=TAGS, summary="Rename a run, or change its tags or notes")
def update_run(run_id: str, body: RunPatch) -> Response:
    with transaction() as s:
        run = repo.update_run(session=s, run_id=run_id, **body.model_dump(exclude_unset=True))
    if run is None:
        raise not_found(f"no run {run_id}")
    return jsonify(run_json(run))


@bp.delete("/runs/<id:run_id>")
@requires("write")
@declare(responses={204: None}, tags=TAGS, summary="Delete a run with its epochs, weights and checkpoint")
def delete_run(run_id: str) -> tuple[str, int]:
    with transaction() as s:
        operations.delete_run(s, run_id)
    return "", 204


@bp.post("/runs/<id:run_id>/cancel")
@requires("write")
@declare(responses={200: RunDocument, 409: "The run has already finished."}, tags=TAGS,
         summary="Cancel a run: a queued run at once, a running one at its worker's next flush")
def cancel_run(run_id: str) -> Response:
    with transaction() as s:
        run = operations.cancel_run(s, run_id)
    return jsonify(run_json(run))


@bp.get("/runs/<id:run_id>/epochs")
@requires("read")
@declare(query=EpochsQuery, responses={200: Epochs}, tags=TAGS,
         summary="A run's epochs since an epoch: a page at a time, or downsampled to max_points")
def get_epochs(run_id: str, query: EpochsQuery) -> Response:
    with transaction(read_only=True) as s:
        operations.get_run(s, run_id)
        if query.max_points is not None:
            epochs, after = repo.get_epochs(session=s, run_id=run_id, since=query.since, fields=query.fields,
                                            max_points=query.max_points), None
        else:
            epochs, after = repo.get_epoch_page(session=s, run_id=run_id, since=query.since, fields=query.fields,
                                                limit=query.limit)
    body: Epochs = {"epochs": epochs, "next": after}
    return jsonify(body)


@bp.get("/runs/<id:run_id>/weights")
@requires("read")
@declare(query=WeightsQuery, responses={200: {"application/json": Weights, "application/octet-stream": bytes},
                                        413: "The weights are over 8 MiB: ask for format=npz."},
         tags=TAGS, summary="A run's weights at an epoch (default: the latest kept), as JSON or the .npz file")
def get_weights(run_id: str, query: WeightsQuery) -> Response:
    with transaction(read_only=True) as s:
        epoch, data = operations.weights(s, run_id, query.epoch)
    if query.format == "npz":
        return attachment(data, "application/octet-stream", f"{run_id}-epoch{epoch}.npz")
    if len(data) > MAX_WEIGHTS_JSON_BYTES:
        message = (f"the weights of epoch {epoch} are {len(data) / 2**20:.1f} MiB of float64; as JSON they would be "
                   f"several times that. Answers in JSON hold up to {MAX_WEIGHTS_JSON_BYTES // 2**20} MiB of them: ask "
                   "for format=npz")
        raise ApiError(413, "too_large", message, [{"field": "format", "message": message}])
    return jsonify(epoch=epoch, layers=weights_layers(data))


@bp.get("/runs/<id:run_id>/export")
@requires("read")
@declare(query=ExportQuery, responses={200: {"text/csv": str, "application/json": RunExport}}, tags=TAGS,
         summary="A run's every epoch as CSV, or the run and every epoch as JSON (a download)",
         description="CSV: a header row, then one row per epoch: epoch, the metrics, then weight_norm_<i> and "
         "grad_norm_<i> per layer; an empty cell where a value is missing.")
def export_run(run_id: str, query: ExportQuery) -> Response:
    chunks = operations.export(run_id, query.format)
    return attachment(stream_with_context(chunks), operations.EXPORT_TYPES[query.format],
                      f"{run_id}-epochs.{query.format}")
