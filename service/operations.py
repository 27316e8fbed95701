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
from collections.abc import Sequence
from typing import Any, Literal

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from trainyard.service.context import services, transaction
from trainyard.service.documents import run_json
from trainyard.service.encoding import OPTIONS
from trainyard.service.errors import ApiError, invalid_field, not_found
from trainyard.service.queue import QueueError
from trainyard.service.storage import repo
from trainyard.service.storage.models import Run, Sweep, is_id
from trainyard.service.sweeps import SweepPointError, SweepRequest, expand
from trainyard.trainer import SpecError, TrainSpec, check
from trainyard.trainer.spec import UploadData

logger = logging.getLogger(__name__)

#: The request header that makes ``POST /api/runs`` safe to repeat.
IDEMPOTENCY_HEADER = "Idempotency-Key"

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


# --------------------------------------------------------------------------- creating


def run_fields(spec: TrainSpec) -> dict[str, Any]:
    """The arguments of ``repo.create_run`` for a run of ``spec``."""
    return {
        "spec": spec.model_dump(mode="json"),
        "name": spec.name,
        "seed": spec.seed,
        "tags": list(spec.tags),
        "notes": spec.notes,
        "epochs_total": spec.epochs,
    }


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


def check_dataset(session: Session, spec: TrainSpec) -> None:
    """422 naming ``dataset.upload`` if the spec names an upload that does not exist."""
    upload = spec.dataset.upload if isinstance(spec.dataset, UploadData) else None
    if upload is not None and repo.get_dataset(session=session, dataset_id=upload) is None:
        raise invalid_field("dataset.upload", f"no uploaded dataset {upload}")


def create_run(spec: TrainSpec, *, idempotency_key: str | None = None) -> Run:
    """Store a queued run of ``spec`` and send it to the workers; the run.  422 if it cannot train.

    With an ``idempotency_key``, a key already used returns the run it made (nothing is stored or sent), so a
    client may repeat a request whose answer it never got; the key used for another spec is a 422.
    """
    check_trainable(spec)
    if idempotency_key is not None:
        with transaction() as s:
            made = repo.get_run_by_idempotency_key(session=s, key=idempotency_key)
        if made is not None:
            return _same_request(made, spec)
    try:
        with transaction() as s:
            check_dataset(s, spec)
            run = repo.create_run(session=s, idempotency_key=idempotency_key, **run_fields(spec))
    except IntegrityError:
        if idempotency_key is None:
            raise
        with transaction() as s:  # the same key, sent at the same moment: the other request made the run
            made = repo.get_run_by_idempotency_key(session=s, key=idempotency_key)
        if made is None:
            raise
        return _same_request(made, spec)
    _enqueue([run])
    return run


def _same_request(run: Run, spec: TrainSpec) -> Run:
    """``run``, made by an earlier request with the same idempotency key; 422 if that request sent another spec."""
    if run.spec != spec.model_dump(mode="json"):
        message = "this key was already used for another spec: send a new key for a new run"
        raise ApiError(422, "idempotency_key_reused", f"{IDEMPOTENCY_HEADER}: {message}",
                       [{"field": IDEMPOTENCY_HEADER, "message": message}])
    return run


def create_sweep(request: SweepRequest) -> tuple[Sweep, list[Run]]:
    """Store a sweep and all its runs in one transaction (whole or not at all), then send the runs; 422 naming
    ``points.<i>.<path>`` when a point gives an invalid spec."""
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
    _enqueue(runs)
    return sweep, runs


def _enqueue(runs: Sequence[Run]) -> None:
    """Send committed runs to the workers; a broker that is down leaves them queued for the reconciler."""
    queue = services().queue
    for run in runs:
        try:
            queue.send(run.id)
        except QueueError:
            logger.warning("run %s stays queued: the broker is unreachable", run.id, exc_info=True)


# --------------------------------------------------------------------------- changing


def cancel_run(session: Session, run_id: str) -> Run:
    """Cancel a queued run at once, or ask a running one to stop at its worker's next flush; the run.

    Raises :class:`AlreadyFinished` for a finished run (one that finishes
    meanwhile is returned unchanged).
    """
    if get_run(session, run_id).finished:
        raise AlreadyFinished(run_id)
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


def export(session: Session, run_id: str, format: Literal["csv", "json"]) -> bytes:
    """A run's every epoch as CSV, or the run and its every epoch as JSON (``{"run": ..., "epochs": [...]}``).

    The CSV has a header row and one row per epoch: ``epoch``, the metrics
    (``repo.EPOCH_METRICS``), then the per-layer norms as columns of their
    own, ``weight_norm_1`` ... and ``grad_norm_1`` ...; an empty cell where a
    value is missing, floats written so they read back exactly.
    """
    run = get_run(session, run_id)
    rows = repo.get_epochs(session=session, run_id=run_id)
    if format == "json":
        return orjson.dumps({"run": run_json(run), "epochs": rows}, option=OPTIONS)
    return _csv(rows).encode()


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    layers = max((len(row[name]) for row in rows for name in repo.EPOCH_LISTS), default=0)
    norms = [f"{name[:-1]}_{layer}" for name in repo.EPOCH_LISTS for layer in range(1, layers + 1)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("epoch", *repo.EPOCH_METRICS, *norms))
    for row in rows:
        lists = [_padded(row[name], layers) for name in repo.EPOCH_LISTS]
        writer.writerow([row["epoch"], *(_cell(row[name]) for name in repo.EPOCH_METRICS), *sum(lists, [])])
    return out.getvalue()


def _padded(values: list[float | None], length: int) -> list[str]:
    return [_cell(value) for value in values] + [""] * (length - len(values))


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)
