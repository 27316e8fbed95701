"""Weights and checkpoints: the only functions that read or write these blobs, so no other query loads them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from trainyard.service.storage.models import Checkpoint, Weights, utcnow
from trainyard.service.storage.repo._common import _insert


def write_weights_many(*, session: Session, run_id: str, snapshots: Sequence[tuple[int, bytes]]) -> int:
    """Store the weights (``.npz`` bytes) of a run at several epochs in one batch; how many were new.

    A flush's worth of ``(epoch, npz_bytes)`` snapshots goes in one batch of
    ``INSERT ... ON CONFLICT DO NOTHING``: an epoch already stored keeps its
    first weights (a replayed flush changes nothing).
    """
    if not snapshots:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        return _write_weights_binary(session, run_id, snapshots)
    table = Weights.__table__
    values = [{"run_id": run_id, "epoch": epoch, "data": data, "size_bytes": len(data)} for epoch, data in snapshots]
    insert = _insert(session, table).on_conflict_do_nothing(index_elements=["run_id", "epoch"])
    return len(session.execute(insert.returning(table.c.epoch), values).all())


#: ``write_weights_many``'s statement on PostgreSQL: ``%b`` sends the bytes as they are.
_WEIGHTS_INSERT = (
    "INSERT INTO weights (run_id, epoch, data, size_bytes) VALUES (%s, %s, %b, %s) "
    "ON CONFLICT (run_id, epoch) DO NOTHING RETURNING epoch"
)


def _write_weights_binary(session: Session, run_id: str, snapshots: Sequence[tuple[int, bytes]]) -> int:
    """The insert of :func:`write_weights_many` on PostgreSQL, on the DBAPI cursor of the session's connection.

    SQLAlchemy sends ``bytea`` as hex text, twice the bytes, for the server
    to decode; psycopg's ``executemany`` sends one prepared statement per
    snapshot, pipelined, with the bytes in binary (``benchmarks/weights_insert.py``
    compares the two).
    """
    rows = [(run_id, epoch, data, len(data)) for epoch, data in snapshots]
    new = 0
    with contextlib.closing(session.connection().connection.cursor()) as cursor:
        cursor.executemany(_WEIGHTS_INSERT, rows, returning=True)
        while True:
            new += len(cursor.fetchall())
            if not cursor.nextset():
                return new


def delete_weights(*, session: Session, run_id: str, epochs: Iterable[int]) -> int:
    """Delete the weights of a run at these epochs (a superseded "best so far"); how many were deleted."""
    epochs = list(epochs)
    if not epochs:
        return 0
    return session.execute(delete(Weights).where(Weights.run_id == run_id, Weights.epoch.in_(epochs))).rowcount


def get_weights(*, session: Session, run_id: str, epoch: int | None = None) -> tuple[int, bytes] | None:
    """``(epoch, npz_bytes)`` of the given epoch, or of the latest when ``epoch`` is None; None if not stored."""
    query = select(Weights.epoch, Weights.data).where(Weights.run_id == run_id)
    query = query.order_by(Weights.epoch.desc()).limit(1) if epoch is None else query.where(Weights.epoch == epoch)
    row = session.execute(query).first()
    return None if row is None else (row.epoch, row.data)


def list_weight_epochs(*, session: Session, run_id: str) -> list[int]:
    """The epochs of a run that have stored weights, ascending (no blob is read)."""
    return list(session.scalars(select(Weights.epoch).where(Weights.run_id == run_id).order_by(Weights.epoch)))


def save_checkpoint(*, session: Session, run_id: str, epoch: int, data: bytes) -> bool:
    """Store a run's resumable state, replacing an older one; whether it was stored.

    The checkpoint never moves backwards: one for an epoch older than the
    stored one is ignored (False); the same epoch again overwrites.
    """
    table = Checkpoint.__table__
    insert = _insert(session, table).values(run_id=run_id, epoch=epoch, data=data, updated_at=utcnow())
    upsert = insert.on_conflict_do_update(
        index_elements=["run_id"],
        set_={"epoch": insert.excluded.epoch, "data": insert.excluded.data, "updated_at": insert.excluded.updated_at},
        where=insert.excluded.epoch >= table.c.epoch,
    )
    return session.execute(upsert.returning(table.c.epoch)).first() is not None


def delete_checkpoint(*, session: Session, run_id: str) -> bool:
    """Drop a run's checkpoint; whether there was one."""
    return session.execute(delete(Checkpoint).where(Checkpoint.run_id == run_id)).rowcount == 1


def get_checkpoint(*, session: Session, run_id: str) -> tuple[int, bytes] | None:
    """``(epoch, bytes)`` of a run's checkpoint, or None."""
    row = session.execute(select(Checkpoint.epoch, Checkpoint.data).where(Checkpoint.run_id == run_id)).first()
    return None if row is None else (row.epoch, row.data)
