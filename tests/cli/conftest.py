"""Fixtures of the client and CLI tests: the real API served over HTTP on the test's database.

``server`` is ``create_app`` on the test's own database (``url``: SQLite and
PostgreSQL, from ``tests/conftest.py``) with a real queue on Redis
(``TRAINYARD_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/0``, a queue
named for the test), served by werkzeug's threaded server on a free port of
127.0.0.1.  No worker runs here: ``train`` plays the worker's part for a
queued run by training it with the real trainer and storing what a worker
stores, so the read endpoints have real epochs and weights to serve.
``trainyard up``, which does start a real worker, is tested in
``test_local.py``.  Unreachable servers skip with the reason (which fails a
run under ``CI=true``).
"""

from __future__ import annotations

import copy
import io
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import redis
from factories import xor
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker
from werkzeug.serving import make_server

from trainyard.client import Client
from trainyard.service.app import create_app
from trainyard.service.config import Settings
from trainyard.service.queue import CeleryQueue
from trainyard.service.storage import repo
from trainyard.trainer import STOP, EpochRecord, TrainSpec, fit

#: A small valid spec that trains in milliseconds.
SPEC: dict[str, Any] = xor(name="xor-tanh", epochs=30, tags=["cli-test"])


@pytest.fixture(autouse=True)
def _a_folder_of_its_own(tmp_path, monkeypatch) -> None:
    """Run each test from an empty folder: a ``.env`` where the tests were started (docker compose's, say) is
    read by the settings, as a user's would be, and must not change what the commands under test do."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def spec() -> dict[str, Any]:
    """A fresh copy of :data:`SPEC`."""
    return copy.deepcopy(SPEC)


@pytest.fixture
def queue(redis_url: str, redis_client: redis.Redis) -> Iterator[CeleryQueue]:
    """A real queue on Redis, of this test's own (its keys deleted after the test); skips without Redis."""
    name = f"trainyard-test-{secrets.token_hex(6)}"
    queue = CeleryQueue(redis_url, queue_name=name)
    yield queue
    queue.close()
    redis_client.delete(name, f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")


@dataclass(frozen=True)
class Server:
    """The API served over HTTP: its ``url``, its database's ``Session`` factory and ``tokens`` by scope."""

    url: str
    Session: sessionmaker[OrmSession]
    tokens: dict[str, str]

    def client(self, scope: str | None = "write") -> Client:
        """A client with a token of ``scope`` (None: no token)."""
        return Client(self.url, self.tokens[scope] if scope else None, timeout=10)


@pytest.fixture
def server(url: str, queue: CeleryQueue, tmp_path) -> Iterator[Server]:
    """The app on the test's database and queue, on a free port, with a read, a write and an admin token."""
    app = create_app(Settings(data_dir=tmp_path, database_url=url, broker_url=queue.app.conf.broker_url), queue=queue)
    Session = app.extensions["trainyard"].Session
    with Session() as s, s.begin():
        tokens = {scope: repo.create_token(session=s, scope=scope)[0] for scope in ("read", "write", "admin")}
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, name="api", daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{http.server_port}", Session, tokens)
    finally:
        http.shutdown()
        thread.join(10)
        http.server_close()
        app.extensions["trainyard"].engine.dispose()


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    """A client with a write token."""
    with server.client("write") as client:
        yield client


def _npz(weights: list[np.ndarray]) -> bytes:
    """Weights ``[W1, b1, W2, b2, ...]`` as the ``.npz`` the worker stores (``W1``, ``b1``, ...)."""
    names = [f"{'Wb'[i % 2]}{i // 2 + 1}" for i in range(len(weights))]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **dict(zip(names, weights)))
    return buffer.getvalue()


@pytest.fixture
def train(server: Server) -> Callable[..., None]:
    """``train(run_id, stop_after=None)``: train a queued run here as a worker would, storing its epochs, the
    weights of every epoch and its summary; ``stop_after=k`` leaves it running after ``k`` epochs."""

    def run(run_id: str, stop_after: int | None = None) -> None:
        with server.Session() as s, s.begin():
            spec = TrainSpec.model_validate(repo.claim_run(session=s, run_id=run_id, worker="test",
                                                           lease_seconds=60).spec)
        records: list[tuple[EpochRecord, bytes]] = []

        def on_epoch(record: EpochRecord) -> object:
            records.append((record, _npz(record.weights)))
            return STOP if stop_after is not None and record.epoch >= stop_after else None

        result = fit(spec, on_epoch=on_epoch)
        rows = [{name: getattr(record, name) for name in ("epoch", *repo.EPOCH_FIELDS)} for record, _ in records]
        with server.Session() as s, s.begin():
            repo.write_epochs(session=s, run_id=run_id, rows=rows)
            snapshots = [(record.epoch, data) for record, data in records]
            repo.write_weights_many(session=s, run_id=run_id, snapshots=snapshots)
            if stop_after is None:
                final = result.final
                summary = {"final_train_loss": final.train_loss, "final_train_accuracy": final.train_accuracy}
                repo.finish_run(session=s, run_id=run_id, status="succeeded", summary=summary, worker="test")

    return run
