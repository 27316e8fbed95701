"""Dashboard logins get a server-side identity: the ``browser_sessions`` table.

The browser's cookie holds a random secret; the row, keyed by its SHA-256,
says which token it acts for and when it ends.  Logging out deletes the row,
so a copy of the cookie kept from before stops working; expired rows are
deleted at the next login.  Sessions signed before this revision hold no such
secret: every browser logs in again once.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "browser_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["api_tokens.id"], name=op.f("fk_browser_sessions_token_id_api_tokens"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_browser_sessions")),
    )
    op.create_index("ix_browser_sessions_expires_at", "browser_sessions", ["expires_at"])
    op.create_index("ix_browser_sessions_token_id_created_at", "browser_sessions", ["token_id", "created_at"])


def downgrade() -> None:
    op.drop_table("browser_sessions")  # its indexes go with it
