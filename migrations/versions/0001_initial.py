"""The initial schema: runs, their epochs, weights and checkpoints; sweeps, datasets, API tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | None = None
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

# The models' portable types, spelled out here so that this revision never changes when the models do.
UTC_DATETIME = sa.DateTime(timezone=True)
FLOAT64 = sa.Double().with_variant(postgresql.DOUBLE_PRECISION(), "postgresql")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _id(name: str = "id") -> sa.Column:
    return sa.Column(name, sa.String(32), nullable=False)


def _floats(*names: str) -> list[sa.Column]:
    return [sa.Column(name, FLOAT64, nullable=True) for name in names]


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        _id(),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("last_used_at", UTC_DATETIME, nullable=True),
        sa.Column("revoked_at", UTC_DATETIME, nullable=True),
        sa.CheckConstraint("scope IN ('read', 'write', 'admin')", name=op.f("ck_api_tokens_scope")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "datasets",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("n_samples", sa.Integer(), nullable=False),
        sa.Column("n_features", sa.Integer(), nullable=False),
        sa.Column("classes", JSON, nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint("task IN ('classification', 'regression')", name=op.f("ck_datasets_task")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
    )
    op.create_table(
        "sweeps",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("base_spec", JSON, nullable=False),
        sa.Column("space", JSON, nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint("method IN ('grid', 'random')", name=op.f("ck_sweeps_method")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
    )
    op.create_table(
        "runs",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("sweep_id", sa.String(32), nullable=True),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("started_at", UTC_DATETIME, nullable=True),
        sa.Column("finished_at", UTC_DATETIME, nullable=True),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", UTC_DATETIME, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("epochs_done", sa.Integer(), nullable=False),
        sa.Column("epochs_total", sa.Integer(), nullable=False),
        *_floats(
            "final_train_loss",
            "final_val_loss",
            "final_train_accuracy",
            "final_val_accuracy",
            "best_val_loss",
            "best_val_accuracy",
        ),
        sa.Column("best_epoch", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name=op.f("ck_runs_status")
        ),
        sa.ForeignKeyConstraint(["sweep_id"], ["sweeps.id"], name=op.f("fk_runs_sweep_id_sweeps"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at", "id"])
    op.create_index("ix_runs_status_created_at", "runs", ["status", "created_at", "id"])
    op.create_index("ix_runs_status_lease_expires_at", "runs", ["status", "lease_expires_at"])
    op.create_index("ix_runs_sweep_id", "runs", ["sweep_id"])
    op.create_table(
        "checkpoints",
        _id("run_id"),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_checkpoints_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_checkpoints")),
    )
    op.create_table(
        "epochs",
        _id("run_id"),
        sa.Column("epoch", sa.Integer(), autoincrement=False, nullable=False),
        *_floats("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "seconds"),
        sa.Column("recorded_at", UTC_DATETIME, nullable=False),
        sa.Column("weight_norms", JSON, nullable=False),
        sa.Column("grad_norms", JSON, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_epochs_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "epoch", name=op.f("pk_epochs")),
    )
    op.create_table(
        "weights",
        _id("run_id"),
        sa.Column("epoch", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_weights_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "epoch", name=op.f("pk_weights")),
    )


def downgrade() -> None:
    for table in ("weights", "epochs", "checkpoints", "runs", "sweeps", "datasets", "api_tokens"):
        op.drop_table(table)  # a table's indexes go with it
