"""A sweep's order, why each run stopped, and one case-insensitive search on every database.

- ``runs.sweep_index``: the run's point in its sweep (from 0), the sweep's
  order and its tie-break; before, runs were ordered by name, which a rename
  or a long sweep name changed. Runs of existing sweeps are numbered by
  their name (what ordered them until now), then creation.
- ``runs.stop_reason``: why training ended (completed, early stopping,
  cancelled, diverged, ...); null for runs that ended before this revision.
- ``runs.name_folded``: the name case-folded in Python, what ``q=`` searches,
  so ``q=é`` finds ``Émile`` on SQLite as on PostgreSQL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

#: Runs updated per statement while existing runs are numbered and their names folded.
BATCH = 1000


def upgrade() -> None:
    op.add_column("runs", sa.Column("sweep_index", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("stop_reason", sa.Text(), nullable=True))
    op.add_column("runs", sa.Column("name_folded", sa.Text(), nullable=False, server_default=""))
    op.drop_index("ix_runs_sweep_id", table_name="runs")
    op.create_index("ix_runs_sweep_id_sweep_index", "runs", ["sweep_id", "sweep_index"])

    connection = op.get_bind()
    runs = sa.table("runs", sa.column("id", sa.String), sa.column("name", sa.String),
                    sa.column("name_folded", sa.Text), sa.column("sweep_id", sa.String),
                    sa.column("sweep_index", sa.Integer), sa.column("created_at", sa.DateTime))
    rows = connection.execute(
        sa.select(runs.c.id, runs.c.name, runs.c.sweep_id).order_by(runs.c.sweep_id, runs.c.name, runs.c.created_at,
                                                                    runs.c.id)
    ).all()
    values, position = [], {}
    for run_id, name, sweep_id in rows:
        index = None
        if sweep_id is not None:
            index = position[sweep_id] = position.get(sweep_id, -1) + 1
        values.append({"run_id": run_id, "folded": name.casefold(), "index": index})
    update = (runs.update().where(runs.c.id == sa.bindparam("run_id"))
              .values(name_folded=sa.bindparam("folded"), sweep_index=sa.bindparam("index")))
    for start in range(0, len(values), BATCH):
        connection.execute(update, values[start : start + BATCH])


def downgrade() -> None:
    op.drop_index("ix_runs_sweep_id_sweep_index", table_name="runs")
    op.create_index("ix_runs_sweep_id", "runs", ["sweep_id"])
    with op.batch_alter_table("runs") as batch:  # SQLite drops a column by copying the table
        for column in ("name_folded", "stop_reason", "sweep_index"):
            batch.drop_column(column)
