"""Projects: every run and sweep belongs to one.

- ``runs.project`` and ``sweeps.project``: a name (up to 200 characters),
  ``default`` for every row made before this revision and for any that names
  none; a sweep's runs are in the sweep's project.
- ``ix_runs_project_created_at`` and ``ix_sweeps_project_created_at``: a
  project's runs and sweeps listed newest first, a page at a time, and the
  projects themselves (their names are the index's first column).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

TABLES = ("runs", "sweeps")


def upgrade() -> None:
    for table in TABLES:  # the server default fills the existing rows, on SQLite as on PostgreSQL
        op.add_column(table, sa.Column("project", sa.String(200), nullable=False, server_default="default"))
        op.create_index(f"ix_{table}_project_created_at", table, ["project", "created_at", "id"])


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_project_created_at", table_name=table)
        with op.batch_alter_table(table) as batch:  # SQLite drops a column by copying the table
            batch.drop_column("project")
