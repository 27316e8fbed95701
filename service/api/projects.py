"""The projects API under ``/api``: the projects runs and sweeps are filed under, each with its runs counted.

A project is made by naming it in a run's spec or a sweep (``project``); it
lists while a run or sweep names it.  Its runs and sweeps are
``GET /api/runs?project=`` and ``GET /api/sweeps?project=``.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from typing_extensions import TypedDict

from trainyard.service.api.declare import declare
from trainyard.service.api.schemas import ProjectListQuery
from trainyard.service.auth import requires
from trainyard.service.context import transaction
from trainyard.service.documents import Timestamp, iso
from trainyard.service.errors import invalid_parameter
from trainyard.service.storage import repo

bp = Blueprint("projects", __name__, url_prefix="/api")

TAGS = ("projects",)


class ProjectDocument(TypedDict):
    """A project: its runs in all and by status (``counts``), its sweeps, and when anything in it last happened (a
    run created, started, trained an epoch or finished, or a sweep created; null for none)."""

    name: str
    runs: int
    counts: dict[str, int]
    sweeps: int
    last_activity: Timestamp | None


class ProjectList(TypedDict):
    """A page of projects by name (code point order), and the cursor of the next page (null on the last)."""

    projects: list[ProjectDocument]
    next: str | None


def project_json(project: repo.ProjectSummary) -> ProjectDocument:
    """A project as the API shows it."""
    return {"name": project.name, "runs": project.runs, "counts": project.counts, "sweeps": project.sweeps,
            "last_activity": iso(project.last_activity)}


@bp.get("/projects")
@requires("read")
@declare(query=ProjectListQuery, responses={200: ProjectList}, tags=TAGS,
         summary="List projects by name, a page at a time, with their runs counted by status and their last activity",
         description="Counted in the database: no run is read. A project lists while a run or sweep names it; "
         "there is no call to rename or delete one (change or delete its runs instead).")
def list_projects(query: ProjectListQuery) -> Response:
    with transaction(read_only=True) as s:
        try:
            projects, cursor = repo.list_projects(session=s, limit=query.limit, cursor=query.cursor)
        except ValueError as exc:
            raise invalid_parameter("cursor", str(exc)) from None
    return jsonify(projects=[project_json(project) for project in projects], next=cursor)
