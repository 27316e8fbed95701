"""Who queued each run, one sweep per idempotency key, and each upload's rows per class.

- ``runs.token_id``: the API token that created the run (null with auth off,
  and for runs made before this revision), so a token's queued runs can be
  counted against ``TRAINYARD_MAX_QUEUED_RUNS``; indexed with the status.
- ``sweeps.idempotency_key``: ``POST /api/sweeps`` makes one sweep per key,
  as ``POST /api/runs`` makes one run (0003).
- ``datasets.class_counts``: an upload's rows per class, so a spec is checked
  against the upload's shape without reading the file (null for regression,
  and for uploads made before this revision).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("runs", sa.Column("token_id", sa.String(32), nullable=True))
    op.create_index("ix_runs_token_id_status", "runs", ["token_id", "status"])
    op.add_column("sweeps", sa.Column("idempotency_key", sa.String(200), nullable=True))
    op.create_index("ix_sweeps_idempotency_key", "sweeps", ["idempotency_key"], unique=True)
    op.add_column("datasets", sa.Column("class_counts", JSON, nullable=True))


def downgrade() -> None:
    op.drop_index("ix_sweeps_idempotency_key", table_name="sweeps")
    op.drop_index("ix_runs_token_id_status", table_name="runs")
    for table, column in (("datasets", "class_counts"), ("sweeps", "idempotency_key"), ("runs", "token_id")):
        with op.batch_alter_table(table) as batch:  # SQLite drops a column by copying the table
            batch.drop_column(column)
