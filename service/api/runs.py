"""The runs API under ``/api``: create, list, read, change, delete and cancel runs; their epochs, weights, exports."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, stream_with_context, url_for
from typing_extensions import TypedDict
from werkzeug.exceptions import RequestEntityTooLarge

from trainyard.service import operations
from trainyard.service.api.declare import declare
from trainyard.service.api.schemas import (
    MAX_EPOCHS_BODY,
    QUOTA,
    EpochsQuery,
    ExportQuery,
    FinishRequest,
    IdempotencyKey,
    RunListQuery,
    RunPatch,
    TrackedEpochs,
    TrackRequest,
    WeightsQuery,
    WeightsUploadQuery,
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
from trainyard.service.errors import ApiError, invalid_parameter, not_found, too_large
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
        if query.fields is not None:
            known = {*repo.EPOCH_FIELDS, *repo.metric_keys(session=s, run_id=run_id)}
            unknown = [name for name in query.fields if name not in known]
            if unknown:
                raise invalid_parameter("fields", f"run {run_id} has no metric {', '.join(map(repr, unknown))}")
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


# --------------------------------------------------------------------------- tracked runs

#: What a tracked run's calls answer for a run a worker trains, or one that has finished.
NOT_TRACKING = "The run is trained by a worker, or has finished: it takes no epochs, weights or finish from a client."


class Written(TypedDict):
    """What ``POST /api/runs/<id>/epochs`` stored: how many epochs the request held (each once), and the run's
    highest epoch now."""

    written: int
    epochs_done: int


class WeightsStored(TypedDict):
    """The epoch whose weights were stored."""

    epoch: int


@bp.post("/runs/track")
@requires("write")
@declare(body=TrackRequest, headers=(IdempotencyKey,), responses={201: RunDocument}, tags=TAGS,
         summary="Start a tracked run: one a client logs from its own code",
         description="The run is `running` from now, of kind `tracked`, its `params` as its spec; it is never sent "
         "to a worker. The client sends its epochs, weights and finish; a run it leaves silent for "
         "`TRAINYARD_TRACK_TIMEOUT_SECONDS` is failed (`lost contact with the client`). With an `Idempotency-Key` "
         "header, a repeated request gets the run the first one made (a key used for another run is a 422).")
def track_run(body: TrackRequest) -> tuple[Response, int, dict[str, str]]:
    run = operations.track_run(**body.model_dump(), idempotency_key=idempotency_key())
    return jsonify(run_json(run)), 201, {"Location": url_for(".get_run", run_id=run.id)}


@bp.post("/runs/<id:run_id>/epochs")
@requires("write")
@declare(body=TrackedEpochs, upload_limit=MAX_EPOCHS_BODY, responses={200: Written, 409: NOT_TRACKING}, tags=TAGS,
         summary="Log a tracked run's epochs, with built-in and custom metrics",
         description="Each epoch: `epoch` (1 to 1,000,000) and any of the built-in metrics and custom ones by name "
         f"(matching `{repo.METRIC_NAME_PATTERN}`, at most {repo.MAX_CUSTOM_METRICS} names per run), finite numbers "
         "or null; the body up to 16 MiB. Idempotent per epoch: an epoch sent again keeps one row, the fields sent "
         "again take the new values, the others keep theirs. The run's `epochs_done` becomes its highest epoch and "
         "its summary is brought up to date.")
def log_epochs(run_id: str, body: TrackedEpochs) -> Response:
    written, done = operations.log_epochs(run_id, [epoch.model_dump(exclude_unset=True) for epoch in body.root])
    answer: Written = {"written": written, "epochs_done": done}
    return jsonify(answer)


@bp.post("/runs/<id:run_id>/weights")
@requires("write")
@declare(query=WeightsUploadQuery, raw_body="application/octet-stream",
         responses={201: WeightsStored, 409: NOT_TRACKING}, tags=TAGS,
         summary="Store a tracked run's weights at an epoch: an .npz of W1, b1, W2, b2, ...",
         description="The body is the `.npz` file (`numpy.savez`) of float arrays `W1` (fan_in, fan_out), `b1` "
         f"(fan_out,), ...: at most {operations.MAX_WEIGHTS_UPLOAD // 2**20} MiB. Weights sent again for an epoch "
         "replace those sent before.")
def log_weights(run_id: str, query: WeightsUploadQuery) -> tuple[Response, int]:
    if request.mimetype != "application/octet-stream":
        raise ApiError(415, "unsupported_media_type", "send the .npz file as the body, with 'Content-Type: "
                       "application/octet-stream'")
    request.max_content_length = operations.MAX_WEIGHTS_UPLOAD
    try:
        data = request.get_data()
    except RequestEntityTooLarge:
        message = too_large("body", request.content_length, operations.MAX_WEIGHTS_UPLOAD)
        raise ApiError(413, "too_large", f"body: {message}", [{"field": "body", "message": message}]) from None
    operations.log_weights(run_id, query.epoch, data)
    stored: WeightsStored = {"epoch": query.epoch}
    return jsonify(stored), 201


@bp.post("/runs/<id:run_id>/finish")
@requires("write")
@declare(body=FinishRequest, responses={200: RunDocument, 409: NOT_TRACKING}, tags=TAGS,
         summary="Finish a tracked run: succeeded, or failed with its error",
         description="The run gets `finished_at` and a `stop_reason` (`finished by the client`, or `failed: "
         "<error>`). The same finish sent again answers the run as it is (a client may retry); any other call on "
         "a finished run is a 409.")
def finish_run(run_id: str, body: FinishRequest) -> Response:
    return jsonify(run_json(operations.finish_tracked(run_id, body.status, body.error)))
