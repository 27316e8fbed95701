"""Runs remember the idempotency key they were created with.

``POST /api/runs`` with an ``Idempotency-Key`` header creates one run per
key: a retried request (its first answer lost, or a ``503`` while the
database restarted) gets the run the first one made.  A unique index allows
any number of runs without a key on both databases.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("idempotency_key", sa.String(200), nullable=True))
    op.create_index("ix_runs_idempotency_key", "runs", ["idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_runs_idempotency_key", table_name="runs")
    with op.batch_alter_table("runs") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("idempotency_key")
