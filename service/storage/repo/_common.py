"""What the modules of the package share.

Argument checks raise a ``ValueError`` that names the field, times are aware UTC, and ``_insert`` gives
the dialect's own INSERT (the one with ``ON CONFLICT`` clauses).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from trainyard.service.storage.models import MAX_NAME_LENGTH, UTCDateTime, utcnow

_DIALECT_INSERTS: dict[str, Callable[[Table], Any]] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def _now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return utcnow()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, not {now!r}")
    return now


def _utc(value: dt.datetime) -> ColumnElement[dt.datetime]:
    """A bound datetime with the models' UTC type (a bare literal would skip its conversion)."""
    return literal(value, UTCDateTime())


def _insert(session: Session, table: Table) -> Any:
    """The dialect's own INSERT construct for ``table`` (it has ``on_conflict_do_nothing`` and ``..._do_update``)."""
    dialect = session.get_bind().dialect.name
    try:
        return _DIALECT_INSERTS[dialect](table)
    except KeyError:
        raise ValueError(f"storage supports {', '.join(_DIALECT_INSERTS)}, not {dialect}") from None


def _name(name: str, field: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{field} must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"{field} is longer than {MAX_NAME_LENGTH} characters")
    return name


def _choice(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _finite(value: Any) -> float | None:
    """``value`` as a float, or None for None, NaN and infinities (which neither SQLite nor JSONB can store)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
