"""Uploaded datasets (content deferred) and sweeps."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import event
from sqlalchemy.exc import InvalidRequestError

from trainyard.service.storage import repo

CSV = b"x1,x2,label\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n"


def _create(Session, **overrides):
    arguments = (
        dict(
            name="xor table",
            filename="xor.csv",
            content=CSV,
            target="label",
            task="classification",
            n_samples=4,
            n_features=2,
            classes=[0, 1],
        )
        | overrides
    )
    with Session() as s, s.begin():
        return repo.create_dataset(session=s, **arguments)


def test_create_and_get(Session):
    dataset = _create(Session)
    assert dataset.sha256 == hashlib.sha256(CSV).hexdigest() and dataset.size_bytes == len(CSV)
    with Session() as s:
        got = repo.get_dataset(session=s, dataset_id=dataset.id)
        assert (got.name, got.filename, got.target, got.task) == ("xor table", "xor.csv", "label", "classification")
        assert (got.n_samples, got.n_features, got.classes) == (4, 2, [0, 1])
        with pytest.raises(InvalidRequestError):
            _ = got.content  # deferred: reading it without asking for it raises instead of loading the blob
        assert repo.get_dataset(session=s, dataset_id="0" * 32) is None
    with Session() as s:
        assert repo.get_dataset(session=s, dataset_id=dataset.id, with_content=True).content == CSV


def test_list_leaves_the_content_out(Session, engine):
    first = _create(Session, name="first")
    second = _create(Session, name="second", task="regression", classes=None, content=b"x,y\n1,2\n")
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with Session() as s:
        listed = repo.list_datasets(session=s)
    assert [d.id for d in listed] == [second.id, first.id]  # newest first
    assert listed[0].classes is None
    assert all(".content" not in statement for statement in statements) and statements


def test_bad_dataset(Session):
    for bad in (dict(task="clustering"), dict(name="")):
        with pytest.raises(ValueError):
            _create(Session, **bad)
    with Session() as s:
        assert repo.list_datasets(session=s) == []


def test_sweeps(Session, make_run):
    space = {"optimizer.lr": [0.01, 0.1], "model.hidden.0.units": [4, 8]}
    with Session() as s, s.begin():
        sweep = repo.create_sweep(session=s, name="lr x units", method="grid", base_spec={"epochs": 10}, space=space)
    runs = [make_run(sweep_id=sweep.id) for _ in range(4)]
    with Session() as s:
        got = repo.get_sweep(session=s, sweep_id=sweep.id)
        assert (got.name, got.method, got.base_spec, got.space) == ("lr x units", "grid", {"epochs": 10}, space)
        assert repo.get_sweep(session=s, sweep_id="0" * 32) is None
        members, _ = repo.list_runs(session=s, sweep=sweep.id)
    assert {r.id for r in members} == {r.id for r in runs}
    with Session() as s, s.begin():
        with pytest.raises(ValueError, match="method must be one of grid, random"):
            repo.create_sweep(session=s, name="x", method="bayes", base_spec={}, space={})
