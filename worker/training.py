"""Training one run: the plain function behind the Celery task.

:func:`train_run` claims a run, trains it with :func:`trainyard.trainer.fit` and
streams what it learns into the database, then finishes it.  It knows
nothing of Celery: the task passes it a :class:`Context` (a session factory,
the worker's name, the timings) and tests call it directly.

Every write happens in a *flush*: one transaction that renews the lease
(which locks the run's row and says whether the worker still holds the run and
whether a cancel was asked for), then writes the buffered epoch rows and
weights and the checkpoint of the latest epoch.  A flush happens at most every
``flush_seconds`` and once at the end, so a crash loses at most that much
work, and the run resumes from a checkpoint that matches its epoch rows
exactly (they are committed together).  Writes are idempotent, so an epoch
replayed after a crash is not a second row.
Between flushes a thread of the process (:class:`_LeaseKeeper`) keeps the
lease alive through epochs longer than the lease.

A claim or a flush is retried while the database is unreachable or busy
(:func:`retrying`), and a retry may follow a COMMIT that happened although
its acknowledgement was lost.  So each claim holds the run under a name of
its own (the process's name and a random part): the retried claim finds the
run held under that name and gets it as the first did, and nothing else can
pass for it.  A retried flush that finds the run no longer held reads whether
the try that committed finished it.  A release is not retried (the worker is
shutting down), so when it fails the run is sent to the queue anyway: if the
release did commit, that message is all that gets the run trained again soon;
if not, it is a harmless duplicate (the claim decides).

Weights are kept by a :class:`SnapshotPlan`: every epoch's while the run
stays within its byte budget, otherwise every k-th, and always the first,
the best (by validation loss, else training loss) and the last.  The best so
far is written at each flush and the one it supersedes deleted (unless the
stride keeps it anyway), so the budget holds at every moment, not only at the
end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydantic
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from trainyard.service.storage import repo
from trainyard.service.storage.db import busy, unreachable
from trainyard.trainer import (
    STOP,
    Checkpoint,
    Dataset,
    EpochRecord,
    SpecError,
    TrainingDiverged,
    TrainSpec,
    fit,
    load_csv,
)
from trainyard.trainer.spec import UploadData
from trainyard.worker.npz import npz_bytes

logger = logging.getLogger(__name__)

#: A run on a later attempt than this (its worker was lost this many times: killed, or out of touch past its
#: lease; a graceful hand-over is no new attempt, see ``repo.claim_run``) is failed instead of tried again.
MAX_ATTEMPTS = 5
GAVE_UP = f"gave up after {MAX_ATTEMPTS} attempts"

#: How long a worker keeps retrying a write while the database is unreachable or busy before it gives the run up
#: (the lease then expires and the reconciler hands the run out again once the database is back).
DB_RETRY_SECONDS = 60.0


@dataclass(frozen=True)
class Context:
    """What :func:`train_run` needs from the worker process it runs in.

    Attributes
    ----------
    Session : sessionmaker
        Sessions on the run database.
    worker : str
        This process's name, unique per process (``host:pid:random``); each claim holds its run under this name
        and a random part of its own (``host:pid:random:claim``).
    lease_seconds : float
        Lease length; each flush renews it.
    flush_seconds : float
        Most time between two flushes.
    weights_budget_bytes : int
        Bytes of weights to keep per run.
    should_release : callable, optional
        Polled at every epoch; True when the worker is shutting down: the run is
        flushed, given back to the queue and :attr:`requeue` is called.
    requeue : callable, optional
        ``requeue(run_id)`` sends the run to the queue again (after a release).
    db_retry_seconds : float
        How long a claim or flush retries while the database is unreachable or busy (see :func:`retrying`).
    """

    Session: sessionmaker[Session]
    worker: str
    lease_seconds: float
    flush_seconds: float
    weights_budget_bytes: int
    should_release: Callable[[], bool] = field(default=lambda: False)
    requeue: Callable[[str], None] | None = None
    db_retry_seconds: float = DB_RETRY_SECONDS


def retrying(ctx: Context, what: str, transaction: Callable[[], Any]) -> Any:
    """``transaction()``, called again with a growing pause while the database is unreachable or busy.

    A restarted or failed-over database, or a SQLite write lock held past the
    busy timeout, costs the run a pause, not its buffered epochs.  After
    ``ctx.db_retry_seconds``, or once the worker is shutting down, the error
    propagates: the run's lease then expires and the reconciler sends it out
    again.  ``transaction`` must be safe to repeat, also after a try whose
    COMMIT happened but whose acknowledgement was lost (every write of a
    flush is idempotent; see the module's note for the claim and a release).
    """
    deadline = time.monotonic() + ctx.db_retry_seconds
    pause = 0.1
    while True:
        try:
            return transaction()
        except SQLAlchemyError as exc:
            state = "busy" if busy(exc) else "unreachable" if unreachable(exc) else None
            if state is None or time.monotonic() + pause > deadline or ctx.should_release():
                raise
            logger.warning("%s: the database is %s, trying again in %.1f s: %s", what, state, pause, exc.orig or exc)
        time.sleep(pause)
        pause = min(2 * pause, 2.0)


# --------------------------------------------------------------------------- weights


def weights_npz(weights: list[np.ndarray]) -> bytes:
    """``[W1, b1, W2, b2, ...]`` as the ``.npz`` bytes the API reads (arrays ``W1, b1, ...``), uncompressed.

    Compression saves about 7% on weights and costs time on every epoch; :func:`worker.npz.npz_bytes` writes
    the file directly, a few times faster than :func:`numpy.savez`.
    """
    return npz_bytes({f"{'Wb'[i % 2]}{i // 2 + 1}": array for i, array in enumerate(weights)})


@dataclass(frozen=True)
class SnapshotPlan:
    """Which epochs' weights a run keeps besides its first, best and last.

    Attributes
    ----------
    stride : int
        Epochs that are a multiple of ``stride`` are kept (1: every epoch).
    """

    stride: int

    @classmethod
    def for_run(cls, *, epochs: int, snapshot_bytes: int, budget_bytes: int, every: int | None) -> SnapshotPlan:
        """The plan of a run of ``epochs`` epochs whose weights take ``snapshot_bytes`` each.

        ``every`` (the spec's ``snapshot_every``) wins when given.  Otherwise
        every epoch if all fit in ``budget_bytes``, else the smallest stride
        ``k`` with ``floor(epochs / k) + 3`` snapshots (the strided ones, first,
        best and last) within the budget.  A budget too small even for three
        keeps just the first, best and last.
        """
        if every is not None:
            return cls(every)
        if epochs * snapshot_bytes <= budget_bytes:
            return cls(1)
        slots = budget_bytes // max(1, snapshot_bytes) - 3
        return cls(math.ceil(epochs / slots) if slots > 0 else epochs + 1)

    def keeps(self, epoch: int) -> bool:
        """Whether ``epoch`` is kept whatever the best turns out to be (the first, or on the stride)."""
        return epoch == 1 or epoch % self.stride == 0


# --------------------------------------------------------------------------- summary


@dataclass
class Summary:
    """The run's final and best metrics, kept up to date epoch by epoch (``SUMMARY_FIELDS``).

    "Best" is by validation loss when the run holds data out, else by training
    loss; ``best_epoch`` is that epoch (ties: the earliest).
    """

    last: dict[str, Any] = field(default_factory=dict)
    best_loss: float = math.inf
    best_epoch: int | None = None
    best_val_loss: float | None = None
    best_val_accuracy: float | None = None

    def add(self, row: dict[str, Any]) -> bool:
        """Account for one epoch's metrics; whether it is the new best."""
        self.last = row
        val_loss, val_accuracy = row.get("val_loss"), row.get("val_accuracy")
        if val_loss is not None and (self.best_val_loss is None or val_loss < self.best_val_loss):
            self.best_val_loss = val_loss
        if val_accuracy is not None and (self.best_val_accuracy is None or val_accuracy > self.best_val_accuracy):
            self.best_val_accuracy = val_accuracy
        loss = row["train_loss"] if val_loss is None else val_loss
        if loss is not None and loss < self.best_loss:
            self.best_loss, self.best_epoch = loss, row["epoch"]
            return True
        return False

    def fields(self) -> dict[str, float | int | None]:
        last = self.last
        return {
            "final_train_loss": last.get("train_loss"),
            "final_val_loss": last.get("val_loss"),
            "final_train_accuracy": last.get("train_accuracy"),
            "final_val_accuracy": last.get("val_accuracy"),
            "best_val_loss": self.best_val_loss,
            "best_val_accuracy": self.best_val_accuracy,
            "best_epoch": self.best_epoch,
        }


# --------------------------------------------------------------------------- the run


@dataclass
class _Loaded:
    """What the claim transaction read: the spec, the data and where to resume."""

    spec: TrainSpec
    data: Dataset | None
    checkpoint: Checkpoint | None
    history: list[dict[str, Any]]


class _Tracker:
    """Buffers a run's epochs and weights and writes them, with the checkpoint and lease, in flushes."""

    def __init__(
        self, run_id: str, spec: TrainSpec, ctx: Context, history: list[dict[str, Any]], *, resumed: bool = False
    ):
        self.run_id, self.spec, self.ctx = run_id, spec, ctx
        self.has_checkpoint = resumed  # whether the database holds a checkpoint of the run
        self.summary = Summary()
        for row in history:  # a resumed run: the epochs already stored
            self.summary.add(row)
        self.stored_best = self.summary.best_epoch  # the best whose weights are in the database
        self.plan: SnapshotPlan | None = None
        self.rows: list[dict[str, Any]] = []
        self.snapshots: dict[int, bytes] = {}
        self.best: tuple[int, bytes | None] | None = None  # a new best not yet written (None: strided anyway)
        self.last: tuple[int, list[np.ndarray]] | None = None
        self.flushed_at = time.monotonic()
        self.outcome: str | None = None  # "cancelled", "lost" or "released" once training must stop

    # ----------------------------------------------------------------- on_epoch

    def on_epoch(self, record: EpochRecord) -> object:
        """``fit``'s callback: buffer the epoch, flush when due, and ask ``fit`` to stop when the run must."""
        row = record.metrics()
        weights = record.weights
        snapshot = None
        if self.plan is None:
            snapshot = weights_npz(weights)
            self.plan = SnapshotPlan.for_run(
                epochs=self.spec.epochs,
                snapshot_bytes=len(snapshot),
                budget_bytes=self.ctx.weights_budget_bytes,
                every=self.spec.snapshot_every,
            )
        self.rows.append(row)
        if self.plan.keeps(record.epoch):
            self.snapshots[record.epoch] = snapshot or weights_npz(weights)
        if self.summary.add(row):  # a new best: its weights are already on their way if the stride keeps them
            self.best = (record.epoch, None if self.plan.keeps(record.epoch) else snapshot or weights_npz(weights))
        self.last = (record.epoch, weights)
        release = self.ctx.should_release()
        if release or time.monotonic() - self.flushed_at >= self.ctx.flush_seconds:
            self.flush(checkpoint=record.checkpoint(), release=release)
        return STOP if self.outcome is not None else None

    # ----------------------------------------------------------------- flushes

    def flush(
        self,
        *,
        checkpoint: Checkpoint | None = None,
        release: bool = False,
        finish: Finish | None = None,
    ) -> None:
        """Write what is buffered and ``checkpoint`` in one transaction, after renewing the lease.

        ``release`` gives the run back to the queue afterwards; ``finish``
        ends it, with the last epoch's weights.  A requested cancel ends it as
        ``cancelled`` whatever was asked.  Sets
        :attr:`outcome` when training must stop.  The checkpoint is taken by
        the caller at the last buffered epoch (it copies the whole training
        state, so not at every epoch).  While the database is unreachable the
        transaction is tried again (:func:`retrying`), the buffer kept.
        """
        ctx, run_id = self.ctx, self.run_id
        data = None if checkpoint is None else checkpoint.to_bytes()
        tries = 0

        def transaction() -> str | None:
            nonlocal tries
            tries += 1
            with ctx.Session() as s, s.begin():
                lease = repo.renew_lease(
                    session=s, run_id=run_id, worker=ctx.worker, lease_seconds=ctx.lease_seconds
                )
                if not lease.held:  # after a try whose COMMIT may have happened unseen, that COMMIT may be why
                    return _unheld(s, run_id) if tries > 1 else "lost"
                repo.write_epochs(session=s, run_id=run_id, rows=self.rows)
                snapshots, superseded = self._weight_writes(last=finish is not None or lease.cancel_requested)
                if superseded:
                    repo.delete_weights(session=s, run_id=run_id, epochs=superseded)
                repo.write_weights_many(session=s, run_id=run_id, snapshots=snapshots)
                if checkpoint is not None:
                    repo.save_checkpoint(session=s, run_id=run_id, epoch=checkpoint.epoch, data=data)
                end = self._cancelled() if lease.cancel_requested else finish
                if end is not None:
                    status = end.status
                    repo.finish_run(
                        session=s, run_id=run_id, status=status, error=end.error,
                        stop_reason=end.reason(s, run_id) if callable(end.reason) else end.reason,
                        summary=self.summary.fields(), worker=ctx.worker,
                    )
                    # A finished run is never resumed: its training state is dead weight.
                    if status == "succeeded" and (self.has_checkpoint or checkpoint is not None):
                        repo.delete_checkpoint(session=s, run_id=run_id)
                    return status
                if release:
                    repo.release_run(session=s, run_id=run_id, worker=ctx.worker)
                    return "released"
                return None

        try:
            self.outcome = retrying(ctx, f"run {run_id}: flush", transaction)
        except SQLAlchemyError:
            # A worker shutting down does not wait for the database: whether the release committed is unknown.
            # If it did, only this message gets the run trained before the reconciler's next look at the queue;
            # if not, the claim it brings finds the run still leased, and the lease's expiry hands it on.
            if release and ctx.requeue is not None:
                logger.warning("run %s: the release may have failed; sending the run to the queue anyway", run_id)
                ctx.requeue(run_id)
            raise
        if self.outcome == "lost":
            return
        self.has_checkpoint = self.has_checkpoint or checkpoint is not None
        if self.best is not None:
            self.stored_best, self.best = self.best[0], None
        self.rows, self.snapshots = [], {}
        self.flushed_at = time.monotonic()
        if self.outcome == "released" and ctx.requeue is not None:
            ctx.requeue(run_id)

    def _cancelled(self) -> Finish:
        epoch = self.last[0] if self.last is not None else None
        return Finish("cancelled", None, "cancelled before its first epoch" if epoch is None
                      else f"cancelled at epoch {epoch}")

    def _weight_writes(self, *, last: bool) -> tuple[list[tuple[int, bytes]], list[int]]:
        """The snapshots a flush writes and the stored best it supersedes (to delete); changes nothing."""
        snapshots = dict(self.snapshots)
        superseded: list[int] = []
        if self.best is not None:
            epoch, data = self.best
            if data is not None:
                snapshots[epoch] = data
            if self.stored_best is not None and self.stored_best != epoch and not self.plan.keeps(self.stored_best):
                superseded.append(self.stored_best)
        if last and self.last is not None:
            epoch, weights = self.last
            if epoch not in snapshots:  # the plan keeps every epoch while the budget allows: usually it is
                snapshots[epoch] = weights_npz(weights)
        return sorted(snapshots.items()), superseded


def _unheld(session: Session, run_id: str) -> str:
    """The outcome of a retried flush that finds the run no longer held, when an earlier try may have committed:
    the run's status if it is finished (that try finished it, or it was cancelled), else ``"lost"`` (another
    worker holds it, or it was deleted)."""
    run = repo.get_run(session=session, run_id=run_id)
    return run.status if run is not None and run.finished else "lost"


class _LeaseKeeper:
    """Renews the lease of every run this process trains, every third of the lease, from one thread.

    Flushes renew a lease too, but only between epochs: without this, an
    epoch longer than the lease (a large network) would let the reconciler
    hand the run to another worker while this one still trains it.  One
    thread serves the process for its life, started with its first run
    (starting a thread per run was a visible part of a short run's cost);
    :meth:`keeping` registers a run while it trains.  A renewal that races
    the run's end changes nothing: it only extends a lease the worker still
    holds on a running run.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child has none of its parent's threads

    def _reset(self) -> None:
        self._changed = threading.Condition()
        self._due: dict[str, tuple[Context, float]] = {}  # run -> (its context, when its lease is next renewed)
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def keeping(self, run_id: str, ctx: Context) -> Iterator[None]:
        """Renew the run's lease while the ``with`` block runs."""
        with self._changed:
            self._due[run_id] = (ctx, time.monotonic() + ctx.lease_seconds / 3)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="lease-keeper", daemon=True)
                self._thread.start()
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._due.pop(run_id, None)

    def _serve(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [(run_id, ctx) for run_id, (ctx, at) in self._due.items() if at <= now]
                if not due:
                    self._changed.wait(min((at for _, at in self._due.values()), default=now + 60.0) - now)
                    continue
                for run_id, ctx in due:
                    self._due[run_id] = (ctx, now + ctx.lease_seconds / 3)
            for run_id, ctx in due:
                if not self._renew(run_id, ctx):
                    with self._changed:
                        self._due.pop(run_id, None)

    @staticmethod
    def _renew(run_id: str, ctx: Context) -> bool:
        """Extend the lease; False once the worker no longer holds the run (stop renewing it)."""
        try:
            with ctx.Session() as s, s.begin():
                return repo.renew_lease(
                    session=s, run_id=run_id, worker=ctx.worker, lease_seconds=ctx.lease_seconds
                ).held
        except Exception:  # the next flush will meet the same trouble and report it; the thread carries on
            logger.warning("run %s: could not renew the lease", run_id, exc_info=True)
            return True


_LEASES = _LeaseKeeper()


def train_run(run_id: str, *, ctx: Context) -> str:
    """Claim the run ``run_id``, train it and finish it; returns what became of it.

    Returns
    -------
    str
        ``"not_claimed"`` (another worker holds it, or it is finished or
        cancelled: a duplicate message), ``"succeeded"``, ``"failed"``,
        ``"cancelled"``, ``"released"`` (the worker is shutting down: the run
        is back in the queue, to resume from its checkpoint), ``"requeued"``
        (the message came while shutting down: sent again, run untouched) or
        ``"lost"`` (the lease was taken over or the run deleted while training).

    Failures of the run itself (divergence, a spec that does not fit its
    data, a missing upload, a bug in training) end it as ``failed`` with a
    readable ``error``; only a failure to reach the database propagates,
    leaving the lease to expire and the reconciler to try again.
    """
    if ctx.should_release():  # a message received while shutting down: pass it on untouched
        if ctx.requeue is not None:
            ctx.requeue(run_id)
        return "requeued"
    ctx = dataclasses.replace(ctx, worker=f"{ctx.worker}:{secrets.token_hex(3)}")  # this claim's own name
    loaded = _claim(run_id, ctx)
    if loaded is None:
        return "not_claimed"
    if isinstance(loaded, str):
        return _fail(run_id, ctx, loaded)
    if loaded.checkpoint is not None:
        logger.info("run %s: resuming from the checkpoint of epoch %d", run_id, loaded.checkpoint.epoch)
    tracker = _Tracker(run_id, loaded.spec, ctx, loaded.history, resumed=loaded.checkpoint is not None)
    with _LEASES.keeping(run_id, ctx):
        return _train(loaded, tracker)


@dataclass(frozen=True)
class Finish:
    """How a flush ends a run: its status, its error and why it stopped (``stop_reason``; a callable reads what it
    needs in the flush's transaction, after the flush's epochs are written)."""

    status: str
    error: str | None
    reason: str | Callable[[Session, str], str]


def _train(loaded: _Loaded, tracker: _Tracker) -> str:
    """Run ``fit`` with the tracker and end the run by what happened."""
    try:
        result = fit(loaded.spec, data=loaded.data, on_epoch=tracker.on_epoch, checkpoint=loaded.checkpoint)
    except SQLAlchemyError:  # the database, not the run, failed: let the lease expire and the run be retried
        raise
    except TrainingDiverged as exc:
        return _end(tracker, Finish("failed", str(exc), f"diverged at epoch {exc.epoch}"))
    except (SpecError, pydantic.ValidationError) as exc:
        unfit = "the spec does not fit the data"
        return _end(tracker, Finish("failed", f"{unfit}: {exc}", unfit))
    except Exception as exc:
        if tracker.outcome is not None:  # the failure came from a flush that already ended the run
            raise
        logger.exception("run %s failed", tracker.run_id)
        return _end(tracker, Finish("failed", f"training failed: {type(exc).__name__}: {exc}", "an error in training"))
    return _end(tracker, Finish("succeeded", None, _stop_reason(loaded.spec, result.stop_reason, result.best_epoch,
                                                                  tracker.last[0] if tracker.last else None)))


def _stop_reason(
    spec: TrainSpec, how: str, best_epoch: int | None, last_epoch: int | None
) -> str | Callable[[Session, str], str]:
    """Why a run that trained to its end stopped: ``completed: all 30 epochs``, or early stopping with the monitored
    metric's best (read from the database: the best epoch may be from before a resume)."""
    es = spec.early_stopping
    if how != "early_stopping" or es is None or best_epoch is None or last_epoch is None:
        return f"completed: all {spec.epochs} epochs"

    def reason(session: Session, run_id: str) -> str:
        best = repo.epoch_value(session=session, run_id=run_id, epoch=best_epoch, field=es.monitor)
        shown = "no value" if best is None else f"{best:.4g}"
        return (f"early stopping at epoch {last_epoch} of {spec.epochs}: {es.monitor} did not improve on its best, "
                f"{shown} at epoch {best_epoch}, for {last_epoch - best_epoch} epochs (patience {es.patience})")

    return reason


def _end(tracker: _Tracker, finish: Finish) -> str:
    """The final flush: buffered epochs, the last weights and the final status, in one transaction.

    A succeeded run keeps no checkpoint (its weights are stored; nothing resumes a finished run); a
    failed or cancelled one keeps that of its last flush, to look at.
    """
    if tracker.outcome is not None:  # a flush already ended it (cancelled, released or lost)
        return tracker.outcome
    tracker.flush(finish=finish)
    return tracker.outcome or finish.status


def _claim(run_id: str, ctx: Context) -> _Loaded | str | None:
    """Claim the run and read what training needs; None if not claimed, a message if it cannot be trained.

    Retried like a flush: a claim repeated after its COMMIT went through finds the run held under this
    claim's name, which ``repo.claim_run`` takes as the same claim.
    """
    return retrying(ctx, f"run {run_id}: claim", lambda: _claim_once(run_id, ctx))


def _claim_once(run_id: str, ctx: Context) -> _Loaded | str | None:
    with ctx.Session() as s, s.begin():
        run = repo.claim_run(session=s, run_id=run_id, worker=ctx.worker, lease_seconds=ctx.lease_seconds)
        if run is None:
            return None
        if run.attempts > MAX_ATTEMPTS:
            return f"{GAVE_UP}: each time, the worker training it was lost (killed, or out of touch past its lease)"
        try:
            spec = TrainSpec.model_validate(run.spec)
        except pydantic.ValidationError as exc:
            return f"invalid spec: {exc}"
        data = None
        if isinstance(spec.dataset, UploadData):
            dataset = repo.get_dataset(session=s, dataset_id=spec.dataset.upload, with_content=True)
            if dataset is None:
                return f"dataset.upload: no uploaded dataset {spec.dataset.upload} (deleted?)"
            content, target, task, name = dataset.content, dataset.target, dataset.task, dataset.name
        # A checkpoint is written with epochs, in one flush: none while the run has none.
        stored = repo.get_checkpoint(session=s, run_id=run_id) if run.epochs_done > 0 else None
        history = []
        if stored is not None:
            history = repo.get_epochs(
                session=s, run_id=run_id, fields=["train_loss", "val_loss", "train_accuracy", "val_accuracy"]
            )
            history = [row for row in history if row["epoch"] <= stored[0]]
    if isinstance(spec.dataset, UploadData):
        try:
            data = load_csv(content, target=target, task=task, name=name)
        except ValueError as exc:
            return f"dataset.upload: the uploaded dataset cannot be read: {exc}"
    checkpoint = None
    if stored is not None:
        try:
            checkpoint = Checkpoint.from_bytes(stored[1])
        except ValueError as exc:
            return f"the run's checkpoint cannot be read: {exc}"
    return _Loaded(spec=spec, data=data, checkpoint=checkpoint, history=history)


def _fail(run_id: str, ctx: Context, error: str) -> str:
    """End a claimed run that cannot be trained as ``failed``, saying why."""
    reason = GAVE_UP if error.startswith(GAVE_UP) else "could not start training"

    def transaction() -> None:
        with ctx.Session() as s, s.begin():
            repo.finish_run(session=s, run_id=run_id, status="failed", error=error, stop_reason=reason,
                            worker=ctx.worker)

    retrying(ctx, f"run {run_id}: fail", transaction)
    return "failed"
