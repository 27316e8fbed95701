"""Projects: the names runs and sweeps are filed under, each with its runs counted by status.

A project is no row of its own: it is listed while a run names it, so it is
made by naming it and goes once its runs are deleted (its sweeps, which keep
no run then, do not hold it in the list).  Everything here is counted in the
database, a page of projects at a time; no run is read.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, func, literal, select
from sqlalchemy.orm import Session

from trainyard.service.storage.models import MAX_NAME_LENGTH, RUN_STATUSES, Run, Sweep

#: ``list_projects``'s page size when the caller gives none, and the largest it returns.
DEFAULT_PROJECT_LIMIT = 100
MAX_PROJECT_LIMIT = 500


class ProjectSummary(NamedTuple):
    """A project: its runs in all and by status, its sweeps, and its last activity.

    ``last_activity`` is the latest change to any of its runs (created, claimed, an epoch written, finished,
    cancelled) or the creation of its newest sweep.
    """

    name: str
    runs: int
    counts: dict[str, int]
    sweeps: int
    last_activity: dt.datetime | None


def list_projects(
    *, session: Session, limit: int = DEFAULT_PROJECT_LIMIT, cursor: str | None = None
) -> tuple[list[ProjectSummary], str | None]:
    """A page of the projects that have runs, by name (code point order, the same on every database), and the cursor
    of the next page (None on the last).  Three aggregate queries: the page's names, then its runs and its sweeps
    counted.

    Raises
    ------
    ValueError
        For a cursor that is not the ``next`` of an earlier page.
    """
    limit = max(1, min(int(limit), MAX_PROJECT_LIMIT))
    name = _ordered(session, Run.project)
    query = select(name.label("project")).group_by(name).order_by(name).limit(limit + 1)
    if cursor is not None:
        query = query.where(name > _ordered(session, literal(_decode(cursor), Run.project.type)))
    page = list(session.scalars(query))
    more = len(page) > limit
    page = page[:limit]
    found = _summaries(session, page)
    return [found[project] for project in page], _encode(page[-1]) if more else None


def _summaries(session: Session, projects: Sequence[str]) -> dict[str, ProjectSummary]:
    """Each of ``projects`` with its runs counted by status and its sweeps: two grouped queries."""
    counts: dict[str, dict[str, int]] = {project: dict.fromkeys(RUN_STATUSES, 0) for project in projects}
    latest: dict[str, list[dt.datetime]] = {project: [] for project in projects}
    sweeps: dict[str, int] = dict.fromkeys(projects, 0)
    if projects:
        runs = (select(Run.project, Run.status, func.count(), func.max(Run.updated_at))
                .where(Run.project.in_(list(projects))).group_by(Run.project, Run.status))
        for project, status, count, updated in session.execute(runs):
            counts[project][status] = count
            latest[project].append(updated)
        made = (select(Sweep.project, func.count(), func.max(Sweep.created_at))
                .where(Sweep.project.in_(list(projects))).group_by(Sweep.project))
        for project, count, created in session.execute(made):
            sweeps[project] = count
            latest[project].append(created)
    return {
        project: ProjectSummary(project, sum(counts[project].values()), counts[project], sweeps[project],
                                max((moment for moment in latest[project] if moment is not None), default=None))
        for project in projects
    }


def _ordered(session: Session, column: ColumnElement[Any]) -> ColumnElement[Any]:
    """``column`` compared by code point: SQLite's BINARY order, PostgreSQL's "C" collation."""
    return column.collate("C") if session.get_bind().dialect.name == "postgresql" else column


def _encode(name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([name]).encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _INVALID_CURSOR from None
    if not isinstance(decoded, list) or len(decoded) != 1:
        raise _INVALID_CURSOR
    (name,) = decoded
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH or "\x00" in name:
        raise _INVALID_CURSOR
    return name


_INVALID_CURSOR = ValueError("invalid cursor: pass the 'next' value of the previous page unchanged")
