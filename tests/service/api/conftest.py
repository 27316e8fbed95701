"""Fixtures of the API tests: a fresh database per test (SQLite and PostgreSQL), a real queue on Redis, an app.

The database fixtures (``database_url``, ``url``) are in ``tests/conftest.py``.  The queue is a
real :class:`~trainyard.service.queue.CeleryQueue` on Redis (``TRAINYARD_TEST_REDIS_URL``,
default ``redis://127.0.0.1:6379/0``), sending to a queue named for the test
alone; ``sent()`` reads the messages off that Redis list, and the test's keys
are deleted after it.  Unreachable servers skip with the reason (which fails
a run under ``CI=true``).
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from factories import xor
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from trainyard.service.app import create_app
from trainyard.service.config import Settings
from trainyard.service.queue import CeleryQueue
from trainyard.service.storage.models import Run

#: A small valid spec.
SPEC: dict[str, Any] = xor(name="xor-tanh", tags=["seed-example"], notes="first try")


# --------------------------------------------------------------------------- databases


# --------------------------------------------------------------------------- queue


@pytest.fixture
def queue_name(redis_client: redis.Redis) -> Iterator[str]:
    """A queue of this test's own; its Redis keys are deleted after the test."""
    name = f"trainyard-test-{secrets.token_hex(6)}"
    yield name
    redis_client.delete(name, f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")


@pytest.fixture
def queue(redis_url: str, queue_name: str) -> Iterator[CeleryQueue]:
    """The real queue the app sends to."""
    queue = CeleryQueue(redis_url, queue_name=queue_name)
    yield queue
    queue.close()


@pytest.fixture
def sent(redis_client: redis.Redis, queue_name: str) -> Callable[[], list[tuple[str, list[Any]]]]:
    """``sent()``: the ``(task name, args)`` of the messages waiting in the test's queue, oldest first."""

    def messages() -> list[tuple[str, list[Any]]]:
        out = []
        for raw in reversed(redis_client.lrange(queue_name, 0, -1)):  # kombu LPUSHes and consumers BRPOP
            message = json.loads(raw)
            assert message["properties"]["body_encoding"] == "base64"
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            out.append((message["headers"]["task"], args))
        return out

    return messages


# --------------------------------------------------------------------------- app


@pytest.fixture
def auth_on() -> bool:
    """Whether the app checks tokens (override in a test module to change it)."""
    return True


@pytest.fixture
def settings(url: str, redis_url: str, tmp_path, auth_on: bool) -> Settings:
    return Settings(data_dir=tmp_path, database_url=url, broker_url=redis_url, auth=auth_on)


@pytest.fixture
def app(settings: Settings, queue: CeleryQueue) -> Iterator[Flask]:
    app = create_app(settings, queue=queue)
    yield app
    app.extensions["trainyard"].engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Api:
    """A test client that sends a token of the given scope with every request."""

    def __init__(self, client: FlaskClient, token: str | None):
        self.client = client
        self.headers = bearer(token) if token else {}

    def open(self, path: str, method: str, headers: dict[str, str] | None = None, **kwargs: Any):
        return self.client.open(path, method=method, headers=self.headers | (headers or {}), **kwargs)

    def get(self, path: str, **kwargs: Any):
        return self.open(path, "GET", **kwargs)

    def post(self, path: str, **kwargs: Any):
        return self.open(path, "POST", **kwargs)

    def patch(self, path: str, **kwargs: Any):
        return self.open(path, "PATCH", **kwargs)

    def delete(self, path: str, **kwargs: Any):
        return self.open(path, "DELETE", **kwargs)

    def create_run(self, spec: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.post("/api/runs", json=SPEC if spec is None else spec)
        assert response.status_code == 201, response.get_json()
        return response.get_json()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def api(client: FlaskClient, tokens: dict[str, str]) -> Api:
    """A client with a write token."""
    return Api(client, tokens["write"])


@pytest.fixture
def reader(client: FlaskClient, tokens: dict[str, str]) -> Api:
    """A client with a read token."""
    return Api(client, tokens["read"])


@pytest.fixture
def run_count(Session: sessionmaker[OrmSession]) -> Callable[[], int]:
    """``run_count()``: how many runs the database holds."""

    def count() -> int:
        with Session() as s:
            return s.scalar(select(func.count()).select_from(Run))

    return count


def _assert_error(response, status: int, code: str | None = None, field: str | None = None) -> dict[str, Any]:
    """Check an error response's status and shape (and its code, and that ``fields`` names ``field``)."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    if field is not None:
        assert field in [f["field"] for f in body["error"]["fields"]], body
    return body["error"]


@pytest.fixture
def assert_error() -> Callable[..., dict[str, Any]]:
    """``assert_error(response, status, code=None, field=None)``: check an error response, return its ``error``."""
    return _assert_error


@pytest.fixture
def spec() -> dict[str, Any]:
    """A fresh copy of a small valid spec."""
    return copy.deepcopy(SPEC)
