"""Tracked runs: runs logged from the user's own code, beside the runs a worker trains.

- ``runs.kind``: ``trained`` (a worker trains it from its spec: every run made
  before this revision) or ``tracked`` (a client logs its epochs over the API;
  its ``spec`` holds the client's free ``params``).
- ``runs.metric_keys``: the names of a tracked run's custom metrics, in the
  order first logged (null: none), so the 32-name limit and the columns of a
  chart or an export cost no scan of the metrics.
- ``metrics``: one row per ``(run_id, key, epoch)`` of a custom metric's
  value, deleted with its run; the primary key serves the reads, one metric's
  epochs in order.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

FLOAT64 = sa.Double().with_variant(postgresql.DOUBLE_PRECISION(), "postgresql")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:  # SQLite adds a CHECK constraint by copying the table
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="trained"))
        batch.add_column(sa.Column("metric_keys", JSON, nullable=True))
        batch.create_check_constraint(op.f("ck_runs_kind"), "kind IN ('trained', 'tracked')")
    op.create_table(
        "metrics",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("epoch", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", FLOAT64, nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_metrics_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "key", "epoch", name=op.f("pk_metrics")),
    )


def downgrade() -> None:
    op.drop_table("metrics")
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint(op.f("ck_runs_kind"), type_="check")
        batch.drop_column("metric_keys")
        batch.drop_column("kind")
