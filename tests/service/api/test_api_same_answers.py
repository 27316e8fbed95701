"""The same requests get the same answers on SQLite and on PostgreSQL.

The PostgreSQL database here orders and folds text by ICU's ``en-US`` rules, as the compose file's ``postgres:17``
(an ``en_US.utf8`` database) does: name sorting, case-insensitive search and the order of compared parameters must
not follow the database's locale or JSONB's key order.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import factories
import pytest
from flask.testing import FlaskClient

from trainyard.service.app import create_app
from trainyard.service.config import Settings
from trainyard.service.queue import CeleryQueue
from trainyard.service.specpaths import flatten
from trainyard.service.storage.migrate import upgrade

#: Names whose code-point order differs from an English collation's (case, accents, digits, punctuation).
NAMES = ["beta", "Alpha", "alpha", "Émile", "émile b", "Zeta", "_under", "10 runs", "9 runs", "éclair", "ÉCOLE",
         "straße", "Eve", "eve"]

#: A database whose default collation and case rules are ICU's English ones (libc's en_US.utf8 is not installed
#: everywhere; ICU is built into Debian's PostgreSQL).
ENGLISH = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8' ENCODING 'UTF8'"


@pytest.fixture
def clients(sqlite_template, postgres_admin, tmp_path, redis_url, queue: CeleryQueue) -> Iterator[list[FlaskClient]]:
    """A test client of an app on SQLite and one of an app on PostgreSQL (English collation), both with auth off."""
    path = tmp_path / "sqlite" / "trainyard.db"
    path.parent.mkdir()
    shutil.copyfile(sqlite_template, path)
    with factories.postgres_database(postgres_admin, options=ENGLISH) as postgres:
        upgrade(postgres)
        apps = [create_app(Settings(data_dir=tmp_path / folder, database_url=url, broker_url=redis_url, auth=False),
                           queue=queue)
                for folder, url in (("sqlite", f"sqlite:///{path}"), ("postgres", postgres))]
        yield [app.test_client() for app in apps]
        for app in apps:
            app.extensions["trainyard"].engine.dispose()


def _arrange(client: FlaskClient) -> list[str]:
    """The same runs, made in the same order; their ids."""
    ids = []
    for index, name in enumerate(NAMES):
        spec = factories.xor(name=name, seed=index)
        if index % 3 == 1:
            spec["lr_schedule"] = {"type": "step", "step_size": 10 + index}
        response = client.post("/api/runs", json=spec)
        assert response.status_code == 201, response.get_json()
        ids.append(response.get_json()["id"])
    return ids


def _answers(client: FlaskClient, ids: list[str]) -> dict[str, Any]:
    """What the requests answer, with ids replaced by names (the databases' ids differ)."""
    name_of = dict(zip(ids, NAMES))

    def names(path: str) -> list[str]:
        body = client.get(path).get_json()
        return [run["name"] for run in body["runs"]]

    def walk(sort: str) -> list[str]:
        shown, cursor = [], None
        while True:
            body = client.get(f"/api/runs?sort={sort}&limit=4" + (f"&cursor={cursor}" if cursor else "")).get_json()
            shown += [run["name"] for run in body["runs"]]
            if (cursor := body["next"]) is None:
                return shown

    compared = client.get(f"/api/compare?runs={','.join(ids[:4])}&max_points=2").get_json()
    return {
        "by name": names("/api/runs?sort=name&limit=500"),
        "by name, descending, paged": walk("-name"),
        **{f"q={q}": names(f"/api/runs?q={q}&sort=name") for q in ("é", "ÉMILE", "STRASSE", "eve", "E")},
        "compared": [name_of[run["id"]] for run in compared["runs"]],
        "same": list(compared["params"]["same"].items()),
        "differ": list(compared["params"]["differ"].items()),
        "absent": list(compared["params"]["absent"].items()),
    }


def test_the_same_requests_get_the_same_answers(clients):
    sqlite, postgres = (_answers(client, _arrange(client)) for client in clients)

    assert sqlite == postgres
    assert sqlite["by name"] == sorted(NAMES)  # by code point: what "C" collation and SQLite's BINARY order agree on
    assert sqlite["by name, descending, paged"] == sorted(NAMES, reverse=True)
    assert sqlite["q=é"] == sorted(["Émile", "émile b", "éclair", "ÉCOLE"])
    assert sqlite["q=ÉMILE"] == ["Émile", "émile b"]
    assert sqlite["q=STRASSE"] == ["straße"]  # Unicode case folding: ß is ss
    assert sqlite["q=eve"] == ["Eve", "eve"]
    order = [path for path, _ in flatten(factories.stored(factories.xor(lr_schedule={"type": "step", "step_size": 1})))]
    for group in ("same", "differ"):  # the spec schema's order, whatever order JSONB keeps
        paths = [path for path, _ in sqlite[group]]
        assert paths == [path for path in order if path in paths]
    assert {path for path, _ in sqlite["differ"]} == {"lr_schedule.type", "lr_schedule.step_size",
                                                      "lr_schedule.gamma", "seed"}
