"""Projects: runs and sweeps filed under them, listed with their runs counted by status, and existing databases
migrated with every run and sweep in ``default``."""

from __future__ import annotations

import datetime as dt

import pytest
from factories import xor
from sqlalchemy import BigInteger, Boolean, Integer, String, column, event, insert, inspect, select, table

from trainyard.service.storage import repo
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.service.storage.migrate import upgrade
from trainyard.service.storage.models import RUN_STATUSES, PortableJSON, Run, Sweep, UTCDateTime

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)

#: The tables as revision 0006 left them (the columns these tests fill), without ``project``.
SWEEPS_0006 = table("sweeps", column("id", String), column("name", String), column("method", String),
                    column("base_spec", PortableJSON), column("space", PortableJSON),
                    column("created_at", UTCDateTime()))
RUNS_0006 = table("runs", *(column(name, String) for name in ("id", "name", "name_folded", "status", "sweep_id",
                                                                 "notes")),
                  column("spec", PortableJSON), column("tags", PortableJSON), column("seed", BigInteger),
                  column("sweep_index", Integer), column("created_at", UTCDateTime()),
                  column("updated_at", UTCDateTime()), column("attempts", Integer),
                  column("cancel_requested", Boolean), column("epochs_done", Integer),
                  column("epochs_total", Integer))


def _sweep(Session, project: str, *, name: str = "grid", created_at: dt.datetime = T0) -> Sweep:
    with Session() as s, s.begin():
        sweep = repo.create_sweep(session=s, name=name, method="grid", base_spec={}, space={}, project=project)
        sweep.created_at = created_at
        return sweep


def test_runs_and_sweeps_are_in_default_unless_they_name_a_project(Session, make_run):
    run = make_run()
    with Session() as s, s.begin():
        sweep = repo.create_sweep(session=s, name="grid", method="grid", base_spec={}, space={})
    assert (run.project, sweep.project) == ("default", "default")
    assert make_run(project="vision").project == "vision"


@pytest.mark.parametrize("project", ["", "   ", "x" * 201])
def test_a_project_needs_a_name(make_run, project):
    with pytest.raises(ValueError, match="project"):
        make_run(project=project)


def test_list_runs_keeps_the_runs_of_a_project(Session, make_run):
    vision = [make_run(name=f"v{i}", project="vision") for i in range(3)]
    others = [make_run(name="d"), make_run(name="t", project="Vision"), make_run(name="u", project="vision 2")]
    with Session() as s:
        found, _ = repo.list_runs(session=s, project="vision", sort="name")
        everything, _ = repo.list_runs(session=s)
        combined, _ = repo.list_runs(session=s, project="vision", q="v1")
    assert [run.id for run in found] == [run.id for run in vision]
    assert len(everything) == len(vision) + len(others)
    assert [run.name for run in combined] == ["v1"]


def test_list_runs_walks_a_project_page_by_page(Session, make_run):
    made = [make_run(name=f"a{i:02d}", project="audio") for i in range(7)]
    make_run(name="a99", project="default")
    pages, cursor = [], None
    while True:
        with Session() as s:
            page, cursor = repo.list_runs(session=s, project="audio", sort="name", limit=3, cursor=cursor)
        pages.append([run.name for run in page])
        if cursor is None:
            break
    assert pages == [["a00", "a01", "a02"], ["a03", "a04", "a05"], ["a06"]]
    assert len(made) == 7


def test_list_sweeps_keeps_the_sweeps_of_a_project(Session):
    vision = [_sweep(Session, "vision", name=f"v{i}", created_at=T0 + dt.timedelta(seconds=i)) for i in range(3)]
    _sweep(Session, "default")
    with Session() as s:
        first, cursor = repo.list_sweeps(session=s, project="vision", limit=2)
        rest, end = repo.list_sweeps(session=s, project="vision", limit=2, cursor=cursor)
        everything, _ = repo.list_sweeps(session=s)
    assert [sweep.name for sweep in first + rest] == ["v2", "v1", "v0"]
    assert end is None
    assert len(everything) == 4
    assert [sweep.id for sweep in first + rest] == [sweep.id for sweep in reversed(vision)]


def test_list_projects_counts_runs_by_status_and_sweeps(Session, make_run):
    statuses = {"vision": ["queued", "running", "succeeded", "succeeded", "failed"], "default": ["cancelled"]}
    for project, wanted in statuses.items():
        for status in wanted:
            run = make_run(project=project)
            with Session() as s, s.begin():
                row = s.get(Run, run.id)
                row.status = status
                row.updated_at = T0
    _sweep(Session, "vision", created_at=T0 + dt.timedelta(hours=1))
    _sweep(Session, "sweeps only", created_at=T0 + dt.timedelta(hours=1))  # its runs deleted: not listed
    with Session() as s:
        projects, cursor = repo.list_projects(session=s)
    assert cursor is None
    assert [project.name for project in projects] == ["default", "vision"]
    by_name = {project.name: project for project in projects}
    vision = by_name["vision"]
    assert vision.runs == 5 and vision.sweeps == 1
    assert vision.counts == {"queued": 1, "running": 1, "succeeded": 2, "failed": 1, "cancelled": 0}
    assert list(vision.counts) == list(RUN_STATUSES)
    assert vision.last_activity == T0 + dt.timedelta(hours=1)
    assert by_name["default"].counts["cancelled"] == 1 and by_name["default"].sweeps == 0
    assert by_name["default"].last_activity == T0


def test_list_projects_reads_no_run(Session, make_run, engine):
    """Three aggregate queries a page, whatever the number of runs; none selects a run's columns."""
    for i in range(12):
        make_run(project=f"p{i % 4}")
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with Session() as s:
        projects, _ = repo.list_projects(session=s)
    assert [project.runs for project in projects] == [3, 3, 3, 3]
    assert len([statement for statement in statements if statement.startswith("SELECT")]) == 3
    assert not any("runs.spec" in statement for statement in statements)


def test_list_projects_pages_by_name_in_code_point_order(Session, make_run):
    names = ["b", "B", "a", "é", "a b", "Z"]
    for name in names:
        make_run(project=name)
    pages, cursor = [], None
    while True:
        with Session() as s:
            page, cursor = repo.list_projects(session=s, limit=4, cursor=cursor)
        pages.append([project.name for project in page])
        if cursor is None:
            break
    assert pages == [["B", "Z", "a", "a b"], ["b", "é"]]


@pytest.mark.parametrize("cursor", ["nope", "W10", "WyIiXQ", "eyJ4IjoxfQ"])
def test_list_projects_refuses_a_bad_cursor(Session, cursor):
    with Session() as s, pytest.raises(ValueError, match="cursor"):
        repo.list_projects(session=s, cursor=cursor)


def test_migrating_puts_existing_runs_and_sweeps_in_default(database_url):
    """A database at 0006 with runs and a sweep: after the upgrade every one is in ``default``, and the new index
    serves a project's listing."""
    upgrade(database_url, "0006")
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(insert(SWEEPS_0006).values(
                id="a" * 32, name="old sweep", method="grid", base_spec={}, space={}, created_at=T0))
            for i in range(3):
                connection.execute(insert(RUNS_0006).values(
                    id=f"{i:032x}", name=f"old {i}", name_folded=f"old {i}", status="succeeded", spec=xor(),
                    seed=0, sweep_id="a" * 32 if i else None, sweep_index=i - 1 if i else None, tags=[], notes="",
                    created_at=T0, updated_at=T0, attempts=1, cancel_requested=False, epochs_done=1,
                    epochs_total=1))
        upgrade(database_url)
        Session = make_sessionmaker(engine)
        with Session() as s:
            assert set(s.scalars(select(Run.project))) == {"default"}
            assert list(s.scalars(select(Sweep.project))) == ["default"]
            found, _ = repo.list_runs(session=s, project="default")
            projects, _ = repo.list_projects(session=s)
        assert len(found) == 3
        assert [(p.name, p.runs, p.sweeps, p.counts["succeeded"]) for p in projects] == [("default", 3, 1, 3)]
        indexes = {index["name"]: index["column_names"] for index in inspect(engine).get_indexes("runs")}
        assert indexes["ix_runs_project_created_at"] == ["project", "created_at", "id"]
    finally:
        engine.dispose()
