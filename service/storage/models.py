"""The database schema as SQLAlchemy 2 typed models.

The schema itself changes only through the Alembic revisions in
``migrations/versions``; a test checks that autogenerate finds no difference
between these models and the migrations on SQLite and PostgreSQL.

Portable types:

- datetimes are timezone-aware UTC in Python on both databases
  (:class:`UTCDateTime`: SQLite keeps naive UTC text, PostgreSQL ``timestamptz``);
- floats are 64-bit (``DOUBLE PRECISION`` on PostgreSQL, ``REAL`` on SQLite), so
  float64 metrics round-trip exactly;
- JSON is ``JSON`` on SQLite and ``JSONB`` on PostgreSQL;
- blobs are ``LargeBinary`` (``BLOB`` / ``BYTEA``), kept in their own tables
  (``weights``, ``checkpoints``) or deferred (``datasets.content``) so listing
  or reading runs never loads them.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION, JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from trainyard.trainer.spec import DEFAULT_PROJECT  # a run or sweep that names no project (and those made before)

#: Constraint and index names (Alembic needs names to alter constraints, on SQLite above all).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
#: ``trained``: a worker trains the run from its spec; ``tracked``: a client logs it from its own code over the API.
RUN_KINDS = ("trained", "tracked")
#: Statuses a run never leaves.
FINISHED_STATUSES = ("succeeded", "failed", "cancelled")
#: The statuses of runs that finished training, what a sweep's best is chosen from: a cancelled or failed run
#: stopped before its spec said, so its metrics are not comparable.
RANKED_STATUSES = ("succeeded",)
TOKEN_SCOPES = ("read", "write", "admin")
SWEEP_METHODS = ("grid", "random")
DATASET_TASKS = ("classification", "regression")

#: The run's summary columns (final and best metrics), nullable, all sortable.
SUMMARY_FIELDS = (
    "final_train_loss",
    "final_val_loss",
    "final_train_accuracy",
    "final_val_accuracy",
    "best_val_loss",
    "best_val_accuracy",
    "best_epoch",
)

MAX_NAME_LENGTH = 200
MAX_IDEMPOTENCY_KEY_LENGTH = 200


def fold(text: str) -> str:
    """``text`` as a case-insensitive search compares it: Unicode case folding (``Émile`` and ``éMILE`` match)."""
    return text.casefold()


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.timezone.utc)


#: What every id (runs, sweeps, datasets, tokens) looks like, as :func:`new_id` makes them: a regular expression.
ID_PATTERN = "[0-9a-f]{32}"
_ID = re.compile(ID_PATTERN)


def new_id() -> str:
    """A new random id: 32 lowercase hex digits of a uuid4."""
    return uuid.uuid4().hex


def is_id(value: object) -> bool:
    """Whether ``value`` has the form of an id (anything else is no row, and never reaches the database)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[dt.datetime]):
    """``DateTime(timezone=True)`` that takes aware datetimes and gives back aware UTC datetimes on every database.

    SQLite has no time zone type: values are stored as naive UTC text (in one
    fixed format, so comparisons in SQL are correct) and read back with UTC
    attached.  A naive datetime is refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


#: JSON on SQLite, JSONB on PostgreSQL (containment with ``@>`` and no duplicate keys); Python None is SQL NULL.
PortableJSON = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
#: 64-bit float on every database.
Float64 = Double().with_variant(DOUBLE_PRECISION(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base: one metadata with the naming convention, and the annotation to column type map."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dt.datetime: UTCDateTime(),
        float: Float64,
        dict[str, Any]: PortableJSON,
        list[Any]: PortableJSON,
        list[str]: PortableJSON,
        list[float]: PortableJSON,
        bytes: LargeBinary(),
        str: Text(),
    }


class Sweep(Base):
    """A hyper-parameter search: a base spec and a space; its runs point at it with ``runs.sweep_id``."""

    __tablename__ = "sweeps"
    __table_args__ = (
        CheckConstraint(_in("method", SWEEP_METHODS), name="method"),
        Index("ix_sweeps_idempotency_key", "idempotency_key", unique=True),
        Index("ix_sweeps_project_created_at", "project", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    #: The project the sweep and all its runs belong to.
    project: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), default=DEFAULT_PROJECT,
                                         server_default=DEFAULT_PROJECT)
    method: Mapped[str] = mapped_column(String(16))
    base_spec: Mapped[dict[str, Any]]
    space: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: The ``Idempotency-Key`` of the request that created the sweep, if it sent one: one sweep per key.
    idempotency_key: Mapped[str | None] = mapped_column(String(MAX_IDEMPOTENCY_KEY_LENGTH))


class Run(Base):
    """A training job: its spec, its state in the queue and a summary of its metrics.

    The lifecycle is ``queued → running → succeeded | failed | cancelled``; a
    run whose worker died goes back from ``running`` to ``running`` under a new
    worker once its lease expires, and one a worker gave back (a graceful
    shutdown) to ``queued``.  ``attempts`` is the attempt the run is on: 0
    until first claimed, then one more each time a worker lost it (its lease
    expired), never for a worker that gave it back.
    """

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        CheckConstraint(_in("kind", RUN_KINDS), name="kind"),
        Index("ix_runs_created_at", "created_at", "id"),
        Index("ix_runs_status_created_at", "status", "created_at", "id"),
        Index("ix_runs_sweep_id_sweep_index", "sweep_id", "sweep_index"),
        Index("ix_runs_status_lease_expires_at", "status", "lease_expires_at"),
        Index("ix_runs_idempotency_key", "idempotency_key", unique=True),
        Index("ix_runs_token_id_status", "token_id", "status"),
        Index("ix_runs_project_created_at", "project", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    #: The project the run belongs to (its spec's ``project``; a sweep's run, the sweep's).
    project: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), default=DEFAULT_PROJECT,
                                         server_default=DEFAULT_PROJECT)
    #: ``name.casefold()``, what ``q=`` searches: one case-insensitive match on every database (SQLite's LIKE and
    #: ``lower`` fold ASCII letters only, PostgreSQL's follow the database's locale).
    name_folded: Mapped[str] = mapped_column(default="")
    status: Mapped[str] = mapped_column(String(16), default="queued")
    #: ``trained`` (by a worker, from ``spec``) or ``tracked`` (logged by a client; ``spec`` holds its ``params``).
    kind: Mapped[str] = mapped_column(String(16), default="trained", server_default="trained")
    spec: Mapped[dict[str, Any]]
    seed: Mapped[int] = mapped_column(BigInteger)  # a spec's seed goes up to 2**32 - 1
    sweep_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("sweeps.id", ondelete="SET NULL"))
    #: The run's point in its sweep, from 0: the sweep's order, and its tie-break (never the name).
    sweep_index: Mapped[int | None]
    tags: Mapped[list[str]] = mapped_column(default=list)
    notes: Mapped[str] = mapped_column(default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    worker: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(default=0)
    lease_expires_at: Mapped[dt.datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None]
    #: Why training ended, for a finished run: ``completed``, early stopping, cancelled, diverged, ... (None before).
    stop_reason: Mapped[str | None]
    epochs_done: Mapped[int] = mapped_column(default=0)
    epochs_total: Mapped[int] = mapped_column(default=0)
    final_train_loss: Mapped[float | None]
    final_val_loss: Mapped[float | None]
    final_train_accuracy: Mapped[float | None]
    final_val_accuracy: Mapped[float | None]
    best_val_loss: Mapped[float | None]
    best_val_accuracy: Mapped[float | None]
    best_epoch: Mapped[int | None]
    #: The ``Idempotency-Key`` of the request that created the run, if it sent one: one run per key.
    idempotency_key: Mapped[str | None] = mapped_column(String(MAX_IDEMPOTENCY_KEY_LENGTH))
    #: The API token that created the run (None with auth off): its queued runs count against its quota.
    token_id: Mapped[str | None] = mapped_column(String(32))
    #: A tracked run's custom metric names, in the order first logged (None: none); their values are in ``metrics``.
    metric_keys: Mapped[list[str] | None]

    @property
    def summary(self) -> dict[str, float | int | None]:
        """The summary columns as a dict, keyed as in :data:`SUMMARY_FIELDS`."""
        return {field: getattr(self, field) for field in SUMMARY_FIELDS}

    @property
    def finished(self) -> bool:
        """Whether the run has reached a final status."""
        return self.status in FINISHED_STATUSES

    @validates("name")
    def _fold(self, _key: str, name: str) -> str:
        self.name_folded = fold(name)
        return name

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r}, status={self.status!r})"


class Epoch(Base):
    """The metrics of one epoch of one run; one row per ``(run_id, epoch)``."""

    __tablename__ = "epochs"

    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    train_loss: Mapped[float | None]
    val_loss: Mapped[float | None]
    train_accuracy: Mapped[float | None]
    val_accuracy: Mapped[float | None]
    lr: Mapped[float | None]
    seconds: Mapped[float | None]
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    weight_norms: Mapped[list[float]] = mapped_column(default=list)
    grad_norms: Mapped[list[float]] = mapped_column(default=list)


class Metric(Base):
    """One value of a tracked run's custom metric (``bleu``, ``val/f1``) at one epoch; one row per
    ``(run_id, key, epoch)``, null where the client sent null."""

    __tablename__ = "metrics"

    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    epoch: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    value: Mapped[float | None]


class Weights(Base):
    """The weights of a run at one epoch, as ``.npz`` bytes; read only on request."""

    __tablename__ = "weights"

    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    data: Mapped[bytes]
    size_bytes: Mapped[int]


class Checkpoint(Base):
    """The latest resumable state of a run (one row per run, overwritten)."""

    __tablename__ = "checkpoints"

    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int]
    data: Mapped[bytes]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    """An uploaded CSV: its bytes (deferred, and raising if read without being asked for) and what it holds."""

    __tablename__ = "datasets"
    __table_args__ = (CheckConstraint(_in("task", DATASET_TASKS), name="task"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    filename: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    content: Mapped[bytes] = mapped_column(deferred=True, deferred_raiseload=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int]
    target: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    task: Mapped[str] = mapped_column(String(16))
    n_samples: Mapped[int]
    n_features: Mapped[int]
    classes: Mapped[list[Any] | None]
    #: Rows per class, in the order of ``classes`` (None for a regression, and for uploads stored before it was).
    class_counts: Mapped[list[Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """An API token: only the SHA-256 of the secret is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint(_in("scope", TOKEN_SCOPES), name="scope"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str | None] = mapped_column(String(MAX_NAME_LENGTH))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]

    @property
    def active(self) -> bool:
        """Whether the token is not revoked."""
        return self.revoked_at is None


class BrowserSession(Base):
    """A dashboard login.  The browser's signed cookie holds a random secret; only its SHA-256 is kept, as ``id``,
    so a copy of the database gives no usable session.

    Logging out deletes the row.  It acts with its token's scope while the token
    is not revoked, until ``expires_at`` (``TRAINYARD_SESSION_HOURS`` after the
    login, however it is used).  Rows past it are deleted at the next login.
    """

    __tablename__ = "browser_sessions"
    __table_args__ = (
        Index("ix_browser_sessions_expires_at", "expires_at"),
        Index("ix_browser_sessions_token_id_created_at", "token_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[str] = mapped_column(String(32), ForeignKey("api_tokens.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
