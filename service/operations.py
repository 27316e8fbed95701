"""What the API and the dashboard do to runs and sweeps, each in one place (the CLI does it through the API).

Loading: :func:`get_run`, :func:`get_runs` (several, in the order asked),
:func:`get_sweep`.  Creating: :func:`create_run` and :func:`create_sweep`
check what they are given, commit, and only then send the runs to the
workers.  Changing: :func:`cancel_run`, :func:`cancel_sweep`,
:func:`delete_run`.  Reading out: :func:`weights` and :func:`export` (the one
CSV and JSON format of a run's epochs).

Functions that take a ``session`` work in the caller's transaction; the
creating ones open their own (the run must be committed before a worker is
told of it).  A client's mistake is an :class:`~trainyard.service.errors.ApiError`:
404 for no such run or sweep, 409 for a run that has already finished, 422
naming the field at fault; the API sends it as JSON and the dashboard as a page.
"""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from trainyard.service.auth import current_token_id
from trainyard.service.context import services, transaction
from trainyard.service.documents import run_json
from trainyard.service.encoding import dumps
from trainyard.service.errors import ApiError, invalid_field, not_found
from trainyard.service.queue import QueueError
from trainyard.service.storage import repo
from trainyard.service.storage.models import Dataset, Run, Sweep, is_id
from trainyard.service.sweeps import METRICS, SweepPointError, SweepRequest, default_metric, expand, sweep_project
from trainyard.trainer import SpecError, TrainSpec, check
from trainyard.trainer.datasets import Shape
from trainyard.trainer.spec import UploadData

logger = logging.getLogger(__name__)

#: The request header that makes ``POST /api/runs`` safe to repeat.
IDEMPOTENCY_HEADER = "Idempotency-Key"

#: The ``Retry-After`` of a 429 for too many queued runs: about how long a few runs take to start.
QUOTA_RETRY_SECONDS = 30

#: The formats of :func:`export`, with their media types.
EXPORT_TYPES = {"csv": "text/csv", "json": "application/json"}


class AlreadyFinished(ApiError):
    """A run that has already finished cannot be cancelled (409)."""

    def __init__(self, run_id: str):
        super().__init__(409, "already_finished", f"run {run_id} has already finished")


# --------------------------------------------------------------------------- loading


def get_run(session: Session, run_id: str) -> Run:
    """The run ``run_id``; 404 when there is none (an id of the wrong form is not looked up)."""
    run = repo.get_run(session=session, run_id=run_id) if is_id(run_id) else None
    if run is None:
        raise not_found(f"no run {run_id}")
    return run


def get_runs(session: Session, run_ids: Sequence[str]) -> list[Run]:
    """The runs ``run_ids`` in that order, read in one query; 404 naming (field ``runs``) every id that is no run."""
    found = {run.id: run for run in repo.get_runs(session=session, run_ids=[i for i in run_ids if is_id(i)])}
    missing = [run_id for run_id in run_ids if run_id not in found]
    if missing:
        message = f"no run {', '.join(missing)}"
        raise ApiError(404, "not_found", message, [{"field": "runs", "message": message}])
    return [found[run_id] for run_id in run_ids]


def get_sweep(session: Session, sweep_id: str) -> Sweep:
    """The sweep ``sweep_id``; 404 when there is none."""
    sweep = repo.get_sweep(session=session, sweep_id=sweep_id) if is_id(sweep_id) else None
    if sweep is None:
        raise not_found(f"no sweep {sweep_id}")
    return sweep


def sweep_runs(session: Session, sweep_id: str) -> list[Run]:
    """The runs of a sweep, in the order of its points."""
    return repo.sweep_runs(session=session, sweep_ids=[sweep_id])[sweep_id]


@dataclass(frozen=True)
class SweepSummary:
    """What a list shows of a sweep: its progress and its best run by its default metric (None while none has it)."""

    progress: dict[str, Any]
    metric: str
    best_run: str | None
    best_value: float | None


def summarize_sweeps(session: Session, sweeps: Sequence[Sweep]) -> dict[str, SweepSummary]:
    """Each sweep's summary, counted and ranked in the database: a list of sweeps never reads their runs."""
    ids = [sweep.id for sweep in sweeps]
    progresses = repo.sweep_progress(session=session, sweep_ids=ids)
    metrics = {sweep.id: default_metric(sweep.base_spec) for sweep in sweeps}
    best: dict[str, tuple[str, float]] = {}
    for metric in set(metrics.values()):
        field, higher = METRICS[metric]
        chosen = [sweep_id for sweep_id, its in metrics.items() if its == metric]
        best |= repo.sweep_best(session=session, sweep_ids=chosen, field=field, higher_is_better=higher)
    return {
        sweep_id: SweepSummary(progresses[sweep_id], metric, *(best.get(sweep_id) or (None, None)))
        for sweep_id, metric in metrics.items()
    }


# --------------------------------------------------------------------------- creating


def run_fields(spec: TrainSpec) -> dict[str, Any]:
    """The arguments of ``repo.create_run`` for a run of ``spec``."""
    return {
        "spec": spec.model_dump(mode="json"),
        "name": spec.name,
        "project": spec.project,
        "seed": spec.seed,
        "tags": list(spec.tags),
        "notes": spec.notes,
        "epochs_total": spec.epochs,
    }


def check_trainable(session: Session, spec: TrainSpec, *, field: str = "") -> None:
    """422 naming the field (under ``field``, a prefix such as ``points.3.``) if the spec cannot train on its
    dataset: an upload that does not exist, too many parameters for the features, a loss that does not suit the
    task, a held-out split too small.  Refused now rather than failed by a worker.

    Only the dataset's shape is needed: a built-in's is known without building it, an upload's is stored.
    """
    shape = None
    if isinstance(spec.dataset, UploadData):
        dataset = repo.get_dataset(session=session, dataset_id=spec.dataset.upload)
        if dataset is None:
            raise invalid_field(f"{field}dataset.upload", f"no uploaded dataset {spec.dataset.upload}")
        shape = _upload_shape(dataset)
        if shape is None:
            return  # stored before its rows per class were counted: the worker, which reads the file, checks it
    try:
        check(spec, shape)
    except SpecError as exc:
        raise invalid_field(f"{field}{exc.field}", exc.message) from None


def _upload_shape(dataset: Dataset) -> Shape | None:
    """An upload's shape from what was stored of it; None for a classification stored without its rows per class."""
    if dataset.task == "regression":
        return Shape("regression", dataset.n_features, 1, (dataset.n_samples,), (), dataset.name)
    if dataset.class_counts is None:
        return None
    classes = tuple(str(label) for label in dataset.classes or ())
    outputs = 1 if len(classes) == 2 else len(classes)
    return Shape("classification", dataset.n_features, outputs, tuple(dataset.class_counts), classes, dataset.name)


def check_quota(session: Session, new_runs: int) -> None:
    """429 if queueing ``new_runs`` more would take the request's token past ``TRAINYARD_MAX_QUEUED_RUNS``."""
    limit = services().settings.max_queued_runs
    queued = repo.count_queued(session=session, token_id=current_token_id())
    if queued + new_runs > limit:
        raise ApiError(429, "too_many_queued", f"this token has {queued:,} runs queued and may have {limit:,} at "
                       f"once; {new_runs:,} more would pass that: wait for some to start, or cancel some",
                       headers={"Retry-After": str(QUOTA_RETRY_SECONDS)})


def create_run(spec: TrainSpec, *, idempotency_key: str | None = None) -> Run:
    """Store a queued run of ``spec`` and send it to the workers; the run.  422 if it cannot train, 429 past the
    token's quota of queued runs.

    With an ``idempotency_key``, a key already used returns the run it made (nothing is stored or sent), so a
    client may repeat a request whose answer it never got; the key used for another spec is a 422.
    """
    def made() -> Run | None:
        with transaction() as s:
            return repo.get_run_by_idempotency_key(session=s, key=idempotency_key)

    if idempotency_key is not None and (earlier := made()) is not None:
        return _same_run(earlier, spec)
    try:
        with transaction() as s:
            check_trainable(s, spec)
            check_quota(s, 1)
            run = repo.create_run(session=s, idempotency_key=idempotency_key, token_id=current_token_id(),
                                  **run_fields(spec))
    except IntegrityError:
        if idempotency_key is None or (earlier := made()) is None:
            raise
        return _same_run(earlier, spec)  # the same key, sent at the same moment: the other request made the run
    _enqueue([run])
    return run


def _same_run(run: Run, spec: TrainSpec) -> Run:
    """``run``, made by an earlier request with the same idempotency key; 422 if that request sent another spec."""
    if run.spec != spec.model_dump(mode="json"):
        raise _key_reused("spec")
    return run


def _key_reused(what: str) -> ApiError:
    message = f"this key was already used for another {what}: send a new key for a new one"
    return ApiError(422, "idempotency_key_reused", f"{IDEMPOTENCY_HEADER}: {message}",
                    [{"field": IDEMPOTENCY_HEADER, "message": message}])


def create_sweep(request: SweepRequest, *, idempotency_key: str | None = None) -> tuple[Sweep, list[Run]]:
    """Store a sweep and all its runs in one transaction (whole or not at all), then send the runs; 422 naming
    ``spec.<path>``, ``space.<path>...`` or ``points.<i>.<path>`` when the request gives an invalid spec, 429 past
    the token's quota of queued runs.  An ``idempotency_key`` works as for :func:`create_run`.
    """
    stored_space = request.model_dump(mode="json", include={"space", "n", "seed"})

    def made() -> tuple[Sweep, list[Run]] | None:
        with transaction() as s:
            sweep = repo.get_sweep_by_idempotency_key(session=s, key=idempotency_key)
            return None if sweep is None else (sweep, sweep_runs(s, sweep.id))

    if idempotency_key is not None and (earlier := made()) is not None:
        return _same_sweep(earlier, request, stored_space)
    try:
        specs = expand(request)
    except SweepPointError as exc:
        raise ApiError(422, "invalid", str(exc), exc.fields) from None
    try:
        with transaction() as s:
            for index, spec in enumerate(specs):
                if isinstance(spec.dataset, UploadData):  # built-ins were checked by expand
                    check_trainable(s, spec, field=f"points.{index}.")
            check_quota(s, len(specs))
            sweep = repo.create_sweep(session=s, name=request.name, method=request.method, base_spec=request.spec,
                                      space=stored_space, project=sweep_project(request),
                                      idempotency_key=idempotency_key)
            token_id = current_token_id()
            runs = [repo.create_run(session=s, sweep_id=sweep.id, sweep_index=index, token_id=token_id,
                                    **run_fields(spec))
                    for index, spec in enumerate(specs)]
    except IntegrityError:
        if idempotency_key is None or (earlier := made()) is None:
            raise
        return _same_sweep(earlier, request, stored_space)
    _enqueue(runs)
    return sweep, runs


def _same_sweep(earlier: tuple[Sweep, list[Run]], request: SweepRequest, space: dict[str, Any]) -> tuple[
        Sweep, list[Run]]:
    sweep = earlier[0]
    if ((sweep.name, sweep.project, sweep.method, sweep.base_spec, sweep.space)
            != (request.name, sweep_project(request), request.method, request.spec, space)):
        raise _key_reused("sweep")
    return earlier


def _enqueue(runs: Sequence[Run]) -> None:
    """Send committed runs to the workers, in order.

    A broker that is down leaves the rest queued for the workers' reconciler to send: sending stops at the first
    failure, so a request never waits on a dead broker once per run.
    """
    queue = services().queue
    for index, run in enumerate(runs):
        try:
            queue.send(run.id)
        except QueueError:
            after = f" with the {len(runs) - index - 1} after it" if index < len(runs) - 1 else ""
            logger.warning("run %s stays queued%s: the broker is unreachable", run.id, after, exc_info=True)
            return


# --------------------------------------------------------------------------- changing


def cancel_run(session: Session, run_id: str) -> Run:
    """Cancel a queued run at once, or ask a running one to stop at its worker's next flush; the run.  A tracked run
    is cancelled at once: its client's next call is refused (409).

    Raises :class:`AlreadyFinished` for a finished run (one that finishes
    meanwhile is returned unchanged).
    """
    run = get_run(session, run_id)
    if run.finished:
        raise AlreadyFinished(run_id)
    if run.kind == "tracked":
        cancelled = repo.finish_run(session=session, run_id=run_id, status="cancelled",
                                    stop_reason=f"cancelled at epoch {run.epochs_done}")
        return cancelled or get_run(session, run_id)
    return repo.request_cancel(session=session, run_id=run_id)


def cancel_sweep(session: Session, sweep_id: str) -> Sweep:
    """Cancel the sweep's queued runs and ask its running ones to stop; its finished runs stay as they are."""
    sweep = get_sweep(session, sweep_id)
    for run in sweep_runs(session, sweep_id):
        if not run.finished:
            repo.request_cancel(session=session, run_id=run.id)
    session.expire_all()  # the runs as they now are for whoever reads them next in this transaction
    return sweep


def delete_run(session: Session, run_id: str) -> None:
    """Delete a run with its epochs, weights and checkpoint; 404 when there is none."""
    if not (is_id(run_id) and repo.delete_run(session=session, run_id=run_id)):
        raise not_found(f"no run {run_id}")


# --------------------------------------------------------------------------- reading out


def weights(session: Session, run_id: str, epoch: int | None = None) -> tuple[int, bytes]:
    """``(epoch, npz bytes)`` of the weights kept at ``epoch`` (default: the last kept); 404 when there are none."""
    get_run(session, run_id)
    stored = repo.get_weights(session=session, run_id=run_id, epoch=epoch)
    if stored is None:
        raise ApiError(404, "no_weights", f"run {run_id} has no weights" + ("" if epoch is None else f" at {epoch}"))
    return stored


#: Epochs an export reads per query: its memory, whatever the run's length.
EXPORT_PAGE = 10_000


def export(run_id: str, format: Literal["csv", "json"]) -> Iterator[bytes]:
    """A run's every epoch as CSV, or the run and its every epoch as JSON (``{"run": ..., "epochs": [...]}``), as
    chunks to stream: a page of :data:`EXPORT_PAGE` epochs at a time, each read in a short transaction of its own,
    so an export of a million epochs holds one page in memory, never the run.

    The CSV has a header row and one row per epoch: ``epoch``, the metrics
    (``repo.EPOCH_METRICS``), then the per-layer norms as columns of their
    own, ``weight_norm_1`` ... and ``grad_norm_1`` ..., then a tracked run's
    custom metrics by name, in the order first logged; an empty cell where a
    value is missing, floats written so they read back exactly.

    Raises
    ------
    ApiError
        404 for no such run, at once (before the first chunk).
    """
    with transaction(read_only=True) as s:
        run = get_run(s, run_id)
        head = dumps({"run": run_json(run), "epochs": []})[:-2] if format == "json" else None
        layers = repo.epoch_layers(session=s, run_id=run_id)
        custom = list(run.metric_keys or [])
    return _export_chunks(run_id, format, head, layers, custom)


def _export_chunks(run_id: str, format: str, head: bytes | None, layers: int, custom: list[str]) -> Iterator[bytes]:
    fields = [*repo.EPOCH_FIELDS, *custom]  # those the export started with, on every page
    if format == "json":
        yield head or b""
    else:
        norms = [f"{name[:-1]}_{layer}" for name in repo.EPOCH_LISTS for layer in range(1, layers + 1)]
        yield _csv([("epoch", *repo.EPOCH_METRICS, *norms, *custom)])
    after: int | None = 0
    first = True
    while after is not None:
        with transaction(read_only=True) as s:
            rows, after = repo.get_epoch_page(session=s, run_id=run_id, since=after, fields=fields,
                                              limit=EXPORT_PAGE)
        if format == "json":
            if rows:
                yield (b"" if first else b",") + dumps(rows)[1:-1]
                first = False
        else:
            yield _csv([_csv_row(row, layers, custom) for row in rows])
    if format == "json":
        yield b"]}"


def _csv(rows: Iterable[Sequence[Any]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def _csv_row(row: dict[str, Any], layers: int, custom: list[str]) -> list[Any]:
    lists = [_padded(row[name], layers) for name in repo.EPOCH_LISTS]
    return [row["epoch"], *(_cell(row[name]) for name in repo.EPOCH_METRICS), *sum(lists, []),
            *(_cell(row[name]) for name in custom)]


def _padded(values: list[float | None], length: int) -> list[str]:
    return [_cell(value) for value in values] + [""] * (length - len(values))


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)


# --------------------------------------------------------------------------- tracked runs


class NotTracked(ApiError):
    """A tracked run's calls made on a run a worker trains, or on a tracked run that has finished (409)."""

    def __init__(self, message: str):
        super().__init__(409, "not_tracking", message)


#: Largest ``.npz`` of weights a client may send for one epoch.
MAX_WEIGHTS_UPLOAD = 64 * 2**20


def track_run(
    *, name: str, project: str, params: dict[str, Any], tags: list[str], notes: str,
    idempotency_key: str | None = None,
) -> Run:
    """Store a tracked run, ``running`` with ``params`` as its spec; never sent to a worker.

    An ``idempotency_key`` works as for :func:`create_run` (the key used for another run is a 422).
    """
    request = {"name": name, "project": project, "params": params, "tags": list(dict.fromkeys(tags)), "notes": notes}

    def made() -> Run | None:
        with transaction() as s:
            return repo.get_run_by_idempotency_key(session=s, key=idempotency_key)

    if idempotency_key is not None and (earlier := made()) is not None:
        return _same_tracked_run(earlier, request)
    try:
        with transaction() as s:
            return repo.create_tracked_run(session=s, **request, idempotency_key=idempotency_key,
                                           token_id=current_token_id())
    except IntegrityError:
        if idempotency_key is None or (earlier := made()) is None:
            raise
        return _same_tracked_run(earlier, request)


def _same_tracked_run(run: Run, request: dict[str, Any]) -> Run:
    if run.kind != "tracked" or any(getattr(run, "spec" if key == "params" else key) != value
                                    for key, value in request.items()):
        raise _key_reused("run")
    return run


def tracking(session: Session, run_id: str) -> Run:
    """The tracked run ``run_id``, still running, its row locked for the rest of the transaction: 404 for no run,
    409 for a run a worker trains or one that has finished."""
    run = repo.lock_run(session=session, run_id=run_id) if is_id(run_id) else None
    if run is None:
        raise not_found(f"no run {run_id}")
    if run.kind != "tracked":
        raise NotTracked(f"run {run_id} is trained by a worker: only a tracked run (POST /api/runs/track) takes "
                         "epochs, weights and its finish from a client")
    if run.finished:
        raise NotTracked(f"run {run_id} has already finished ({run.status}): it takes nothing more")
    return run


def log_epochs(run_id: str, rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """Store a tracked run's epochs (see ``repo.write_tracked_epochs``); ``(written, epochs_done)``: how many
    distinct epochs the request held, and the highest epoch the run has.

    422 naming the field (``3.bleu``: the fourth epoch's ``bleu``) for a custom metric whose name is reserved or
    malformed, or that takes the run past ``repo.MAX_CUSTOM_METRICS`` names; nothing is written then.  Each row
    holds the fields the client sent (checked by the API's schema): those not sent keep their stored values.
    """
    with transaction() as s:
        run = tracking(s, run_id)
        known = list(run.metric_keys or [])
        for index, row in enumerate(rows):
            for key in [key for key in row if key != "epoch" and key not in repo.EPOCH_METRICS]:  # in order sent
                if not repo.is_metric_name(key):
                    reserved = key in repo.RESERVED_METRIC_NAMES
                    raise invalid_field(f"{index}.{key}", "is a built-in field, no custom metric" if reserved else
                                        f"a custom metric's name must match {repo.METRIC_NAME_PATTERN}")
                if key not in known:
                    known.append(key)
                    if len(known) > repo.MAX_CUSTOM_METRICS:
                        raise invalid_field(f"{index}.{key}", f"a run has at most {repo.MAX_CUSTOM_METRICS} custom "
                                            f"metrics, and this one would be number {len(known)} (it has "
                                            f"{', '.join(known[:-1])})")
        done = repo.write_tracked_epochs(session=s, run_id=run_id, rows=rows)
    return len({row["epoch"] for row in rows}), done


def check_weights(data: bytes) -> None:
    """422 (field ``body``) unless ``data`` is an ``.npz`` of float arrays ``W1, b1, ..., Wk, bk``: each ``W`` of
    shape (fan_in, fan_out), its ``b`` of shape (fan_out,), each layer's fan_in the fan_out of the one before."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            names = set(arrays.files)
            layers = len(names) // 2
            expected = {f"{kind}{i}" for i in range(1, layers + 1) for kind in "Wb"}
            if not layers or names != expected:
                raise ValueError(f"needs arrays W1, b1, ..., Wk, bk and nothing else, not {', '.join(sorted(names))}")
            fan_in = None
            for i in range(1, layers + 1):
                W, b = arrays[f"W{i}"], arrays[f"b{i}"]
                if W.dtype.kind != "f" or b.dtype.kind != "f":
                    raise ValueError(f"layer {i}: W{i} and b{i} must be float arrays, not {W.dtype} and {b.dtype}")
                if W.ndim != 2 or b.shape != (W.shape[1],):
                    raise ValueError(f"layer {i}: W{i} must be (fan_in, fan_out) and b{i} (fan_out,), not "
                                     f"{W.shape} and {b.shape}")
                if fan_in is not None and W.shape[0] != fan_in:
                    raise ValueError(f"layer {i}: W{i} takes {W.shape[0]} inputs where layer {i - 1} gives {fan_in}")
                fan_in = W.shape[1]
    except ValueError as exc:
        raise invalid_field("body", str(exc)) from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError):
        raise invalid_field("body", "is no .npz file (numpy.savez of W1, b1, W2, b2, ...)") from None


def log_weights(run_id: str, epoch: int, data: bytes) -> None:
    """Store a tracked run's weights at ``epoch`` (checked by :func:`check_weights`), replacing any sent before."""
    check_weights(data)
    with transaction() as s:
        tracking(s, run_id)
        repo.delete_weights(session=s, run_id=run_id, epochs=[epoch])
        repo.write_weights_many(session=s, run_id=run_id, snapshots=[(epoch, data)])
        repo.touch_run(session=s, run_id=run_id)


#: ``stop_reason`` of a tracked run its client finished.
FINISHED_BY_CLIENT = "finished by the client"


def finish_tracked(run_id: str, status: Literal["succeeded", "failed"], error: str | None) -> Run:
    """End a tracked run as its client says; the run.  A finish repeated as it was (the same status and error:
    a client retrying a request whose answer it lost) returns the run unchanged; any other call on a finished run
    is a 409.  422 (``error``) for a succeeded run given an error."""
    stop_reason = _tracked_stop_reason(status, error)
    if status == "succeeded" and error is not None:
        raise invalid_field("error", "a succeeded run has no error: send null, or status failed")
    with transaction() as s:
        run = repo.lock_run(session=s, run_id=run_id) if is_id(run_id) else None
        if (run is not None and run.kind == "tracked" and run.finished
                and (run.status, run.error, run.stop_reason) == (status, error, stop_reason)):
            return run
        tracking(s, run_id)
        finished = repo.finish_run(session=s, run_id=run_id, status=status, error=error, stop_reason=stop_reason)
    assert finished is not None  # the row is locked: it is still running
    return finished


def _tracked_stop_reason(status: str, error: str | None) -> str:
    if status == "succeeded":
        return FINISHED_BY_CLIENT
    return f"failed: {error}" if error else "failed by the client"
