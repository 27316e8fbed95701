"""Weights and checkpoints stored uncompressed on PostgreSQL.

Float arrays barely compress (about 7 % for weights), so PostgreSQL's TOAST
compression only costs CPU on every flush of a training run.  ``STORAGE
EXTERNAL`` keeps large values out of line without compressing them.  SQLite
has no such setting: nothing changes there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

BLOBS = (("weights", "data"), ("checkpoints", "data"))


def _set_storage(storage: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in BLOBS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE {storage}")


def upgrade() -> None:
    _set_storage("EXTERNAL")


def downgrade() -> None:
    _set_storage("EXTENDED")  # bytea's default
