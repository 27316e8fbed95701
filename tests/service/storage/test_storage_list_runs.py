"""Listing runs: filters, every sort key both ways with NULLs last, keyset pages, bad input."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math

import pytest
from sqlalchemy import select

from trainyard.service.storage import repo
from trainyard.service.storage.models import RUN_STATUSES, SUMMARY_FIELDS, Run

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
N_RUNS = 25


@pytest.fixture
def runs(Session, make_run) -> list[Run]:
    """25 runs with ties and NULLs in every sort key."""
    tags = [["blue"] if i % 3 == 0 else ["blueberry", "x"] for i in range(N_RUNS)]
    made = [make_run(name=f"net-{i % 9:02d}", tags=tags[i]) for i in range(N_RUNS)]
    with Session() as s, s.begin():
        for i, run in enumerate(made):
            row = s.get(Run, run.id)
            row.created_at = T0 + dt.timedelta(seconds=i // 3)  # ties in threes
            row.status = RUN_STATUSES[i % len(RUN_STATUSES)]
            row.epochs_done = i % 6
            for j, field in enumerate(SUMMARY_FIELDS):
                if (i + j) % 4 == 0:
                    value = None
                elif field == "best_epoch":
                    value = (i + j) % 5
                else:
                    value = ((i * 7 + j) % 5) / 10
                    if i % 2:  # values only float64 tells apart from the ties
                        value = math.nextafter(value, 1.0)
                setattr(row, field, value)
    with Session() as s:
        return list(s.scalars(select(Run)))


def _expected(runs: list[Run], key: str, descending: bool) -> list[str]:
    with_value = sorted((r for r in runs if getattr(r, key) is not None), key=lambda r: (getattr(r, key), r.id))
    without = sorted((r for r in runs if getattr(r, key) is None), key=lambda r: r.id)
    if descending:
        with_value.reverse()
        without.reverse()
    return [r.id for r in with_value + without]


def _walk(Session, limit: int = 7, **filters) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        with Session() as s:
            page, cursor = repo.list_runs(session=s, limit=limit, cursor=cursor, **filters)
        pages.append([r.id for r in page])
        if cursor is None:
            return pages
        assert len(pages) <= N_RUNS, "pagination does not end"


SORTS = [(key, descending) for key in repo.SORT_FIELDS for descending in (False, True)]


def test_every_sort_key_pages_through_every_run_once(Session, runs):
    """Every sort key, both ways (one database for all 22 orders: a fresh one costs more than the walks)."""
    for key, descending in SORTS:
        sort = f"-{key}" if descending else key
        pages = _walk(Session, sort=sort)
        assert [len(p) for p in pages] == [7, 7, 7, 4], sort
        walked = [run_id for page in pages for run_id in page]
        assert walked == _expected(runs, key, descending), sort
        with Session() as s:
            whole, cursor = repo.list_runs(session=s, sort=sort, limit=500)
        assert [r.id for r in whole] == walked and cursor is None, sort


def test_default_is_newest_first(Session, runs):
    with Session() as s:
        page, _ = repo.list_runs(session=s, limit=500)
    assert [r.id for r in page] == _expected(runs, "created_at", descending=True)


def test_pages_are_stable_while_runs_are_added(Session, runs, make_run):
    with Session() as s:
        first, cursor = repo.list_runs(session=s, limit=10)
    newer = make_run(name="newer")
    with Session() as s, s.begin():
        s.get(Run, newer.id).created_at = T0 + dt.timedelta(days=1)  # belongs before the pages already seen
    older = make_run(name="older")  # created now, years before T0: belongs at the end
    rest = []
    while cursor:
        with Session() as s:
            page, cursor = repo.list_runs(session=s, limit=10, cursor=cursor)
        rest += [r.id for r in page]
    assert [r.id for r in first] + rest == _expected([*runs, older], "created_at", descending=True)


def test_filters(Session, runs, make_run):
    with Session() as s, s.begin():
        sweep = repo.create_sweep(session=s, name="grid", method="grid", base_spec={}, space={})
    in_sweep = [make_run(name=name, sweep_id=sweep.id).id for name in ("Sweep-Point_1", "sweep point 2")]
    make_run(name="50%_off", tags=['quo"te'])
    make_run(name="500 off")
    by_name = {r.id: r for r in runs}

    def ids(**filters) -> set[str]:
        with Session() as s:
            page, cursor = repo.list_runs(session=s, limit=500, **filters)
        assert cursor is None
        return {r.id for r in page}

    assert ids(status="failed") == {r.id for r in runs if r.status == "failed"}
    assert ids(tag="blue") == {r.id for r in runs if "blue" in r.tags}  # not "blueberry"
    assert ids(tag="blueberry") == {r.id for r in runs if "blueberry" in r.tags}
    assert ids(tag="blu") == set()
    assert len(ids(tag='quo"te')) == 1
    assert ids(sweep=sweep.id) == set(in_sweep)
    assert ids(sweep="grid") == set(in_sweep)  # a sweep's name works as its id does
    assert ids(sweep="gri") == set()
    assert ids(q="SWEEP") == set(in_sweep)  # case is ignored
    assert ids(q="net-0") == set(by_name)
    assert len(ids(q="50%_")) == 1  # % and _ are literal characters
    assert len(ids(q="%")) == 1
    assert ids(q="") == ids()
    both = ids(status="queued", tag="blue")
    assert both and both == {r.id for r in runs if r.status == "queued" and "blue" in r.tags}


def test_filters_and_pages_together(Session, runs):
    pages = _walk(Session, limit=2, tag="blueberry", sort="-final_val_loss")
    walked = [run_id for page in pages for run_id in page]
    expected = _expected([r for r in runs if "blueberry" in r.tags], "final_val_loss", descending=True)
    assert walked == expected and len(walked) == 16


def test_limit_is_clamped(Session, runs):
    with Session() as s:
        one, cursor = repo.list_runs(session=s, limit=0)
        assert len(one) == 1 and cursor is not None
        many, cursor = repo.list_runs(session=s, limit=10**6)
        assert len(many) == N_RUNS and cursor is None


def _cursor(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_bad_sort(Session):
    for sort in ["id", "spec", "-", "--name", "created_at,name", "", "-Name"]:
        with Session() as s:
            with pytest.raises(ValueError, match="cannot sort by"):
                repo.list_runs(session=s, sort=sort)


BAD_CURSORS = [
    ("not a cursor!", "name"),
    ("", "name"),
    ("e30", "name"),  # {}
    (_cursor(["name", "a"]), "name"),
    (_cursor(["name", 5, "0" * 32]), "name"),
    (_cursor(["name", "a", 5]), "name"),
    (_cursor(["epochs_done", 1.5, "0" * 32]), "epochs_done"),
    (_cursor(["epochs_done", True, "0" * 32]), "epochs_done"),
    (_cursor(["epochs_done", None, "0" * 32]), "epochs_done"),
    (_cursor(["-final_val_loss", "0.5", "0" * 32]), "-final_val_loss"),
    (_cursor(["created_at", "yesterday", "0" * 32]), "created_at"),
    (_cursor(["created_at", "2030-01-01T00:00:00", "0" * 32]), "created_at"),  # no time zone
    (base64.urlsafe_b64encode(b"\xff\xfe").decode(), "name"),
]


def test_bad_cursor(Session):
    for cursor, sort in BAD_CURSORS:
        with Session() as s:
            with pytest.raises(ValueError, match="invalid cursor"):
                repo.list_runs(session=s, sort=sort, cursor=cursor)


def test_a_cursor_belongs_to_its_sort(Session, runs):
    with Session() as s:
        _, cursor = repo.list_runs(session=s, sort="name", limit=3)
        with pytest.raises(ValueError, match="belongs to sort='name'"):
            repo.list_runs(session=s, sort="-name", cursor=cursor)


def test_bad_status(Session):
    with Session() as s:
        with pytest.raises(ValueError, match="status must be one of"):
            repo.list_runs(session=s, status="done")
