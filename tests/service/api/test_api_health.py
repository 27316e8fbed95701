"""Probes (no token): /healthz says the process is up, /readyz checks the database and the broker."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import create_engine

from trainyard.service.app import create_app
from trainyard.service.queue import CeleryQueue

#: A broker URL where nothing listens.
DEAD_BROKER = "redis://127.0.0.1:1/0"


def test_healthz(client):
    response = client.get("/healthz")

    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_when_all_is_up(client):
    response = client.get("/readyz")

    assert response.status_code == 200 and response.get_json() == {"database": "ok", "broker": "ok"}


@pytest.fixture
def dead_queue():
    queue = CeleryQueue(DEAD_BROKER)
    yield queue
    queue.close()


@pytest.fixture
def app_without_broker(settings, dead_queue):
    app = create_app(settings, queue=dead_queue)
    yield app
    app.extensions["trainyard"].engine.dispose()


def test_readyz_without_broker_is_503(app_without_broker):
    response = app_without_broker.test_client().get("/readyz")

    assert response.status_code == 503
    body = response.get_json()
    assert (body["database"], body["broker"]) == ("ok", "unavailable")
    assert body["error"]["code"] == "not_ready" and "broker" in body["error"]["message"]


@pytest.fixture
def dead_engine(backend: str):
    """An engine of the test's database kind on a server or file that is not there."""
    if backend == "sqlite":
        engine = create_engine("sqlite:////nonexistent-trainyard-dir/none/trainyard.db")
    else:
        engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    yield engine
    engine.dispose()


def test_readyz_without_database_is_503(app, dead_engine, monkeypatch):
    services = app.extensions["trainyard"]
    monkeypatch.setitem(app.extensions, "trainyard", dataclasses.replace(services, engine=dead_engine))

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.get_json()["database"] == "unavailable" and response.get_json()["broker"] == "ok"


def test_run_is_created_when_the_broker_is_down(app_without_broker, tokens, caplog):
    client = app_without_broker.test_client()

    headers = {"Authorization": f"Bearer {tokens['write']}"}

    response = client.post("/api/runs", json={"dataset": {"name": "xor"}}, headers=headers)

    assert response.status_code == 201
    run_id = response.get_json()["id"]
    assert client.get(f"/api/runs/{run_id}", headers=headers).get_json()["status"] == "queued"
    assert f"run {run_id} stays queued" in caplog.text


def test_a_sweep_is_created_at_once_when_the_broker_is_down(app_without_broker, tokens, caplog, Session):
    """Sending stops at the first run the broker does not take: the others stay queued for the reconciler, and
    the request does not wait on a dead broker once per run."""
    client = app_without_broker.test_client()
    headers = {"Authorization": f"Bearer {tokens['write']}"}
    sweep = {"name": "s", "spec": {"dataset": {"name": "xor"}}, "method": "grid", "space": {"seed": list(range(20))}}

    response = client.post("/api/sweeps", json=sweep, headers=headers)

    assert response.status_code == 201
    first = response.get_json()["runs"][0]["id"]
    warnings = [record.getMessage() for record in caplog.records if "stays queued" in record.getMessage()]
    assert warnings == [f"run {first} stays queued with the 19 after it: the broker is unreachable"]
    assert {run["status"] for run in response.get_json()["runs"]} == {"queued"}
