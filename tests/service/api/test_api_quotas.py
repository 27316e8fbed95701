"""What one token may queue (``TRAINYARD_MAX_QUEUED_RUNS``) and what all uploads may take (``..._MAX_DATASETS_GB``);
and sweeps, like runs, made once per idempotency key."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from factories import xor
from flask import Flask

from trainyard.service.app import create_app
from trainyard.service.config import Settings
from trainyard.service.queue import CeleryQueue
from trainyard.service.storage import repo


class As:
    """Requests to ``app`` with ``token``."""

    def __init__(self, app: Flask, token: str):
        self.client, self.headers = app.test_client(), {"Authorization": f"Bearer {token}"}

    def post(self, path: str, **kwargs):
        return self.client.post(path, headers=self.headers, **kwargs)

    def get(self, path: str):
        return self.client.get(path, headers=self.headers)

    def create_run(self, spec: dict) -> dict:
        response = self.post("/api/runs", json=spec)
        assert response.status_code == 201, response.get_json()
        return response.get_json()


@pytest.fixture
def small_app(settings: Settings, queue: CeleryQueue) -> Iterator[Flask]:
    """The app with room for 5 queued runs per token and 1 KiB of uploads (1e-6 GiB)."""
    app = create_app(settings.model_copy(update={"max_queued_runs": 5, "max_datasets_gb": 1e-6}), queue=queue)
    yield app
    app.extensions["trainyard"].engine.dispose()


def test_a_token_may_queue_so_many_runs_and_others_are_not_held_up(small_app, tokens, assert_error, run_count):
    writer, admin = As(small_app, tokens["write"]), As(small_app, tokens["admin"])
    run_ids = [writer.create_run(xor())["id"] for _ in range(3)]
    sweep = {"name": "s", "spec": xor(), "method": "grid", "space": {"seed": [1, 2, 3]}}
    error = assert_error(writer.post("/api/sweeps", json=sweep), 429, "too_many_queued")
    assert "3 runs queued" in error["message"] and "5" in error["message"]
    assert writer.post("/api/sweeps", json=sweep | {"space": {"seed": [1, 2]}}).status_code == 201  # 5: full
    response = writer.post("/api/runs", json=xor())
    assert_error(response, 429, "too_many_queued")
    assert int(response.headers["Retry-After"]) > 0
    assert admin.post("/api/runs", json=xor()).status_code == 201  # another token's queue is its own
    writer.post(f"/api/runs/{run_ids[0]}/cancel")  # a cancelled run no longer counts
    assert writer.post("/api/runs", json=xor()).status_code == 201
    assert run_count() == 3 + 2 + 1 + 1


def test_uploads_together_may_take_so_much(small_app, tokens, assert_error):
    writer = As(small_app, tokens["write"])

    def upload(rows: int):
        content = b"a,b\n" + b"".join(b"%d,%d\n" % (i, i % 2) for i in range(rows))
        return writer.post("/api/datasets", data={"file": (io.BytesIO(content), "d.csv")},
                           content_type="multipart/form-data")

    assert upload(80).status_code == 201  # 394 bytes of the 1,073 allowed
    assert upload(80).status_code == 201
    error = assert_error(upload(80), 413, "storage_full", field="file")
    assert "TRAINYARD_MAX_DATASETS_GB" in error["message"]
    assert len(writer.get("/api/datasets").get_json()["uploads"]) == 2


def test_a_sweep_is_made_once_per_idempotency_key(api, reader, run_count, assert_error, sent):
    sweep = {"name": "s", "spec": xor(), "method": "grid", "space": {"seed": [1, 2]}}
    key = {"Idempotency-Key": "sweep-1"}
    first = api.post("/api/sweeps", json=sweep, headers=key)
    again = api.post("/api/sweeps", json=sweep, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.get_json()["id"] == first.get_json()["id"] and run_count() == 2 and len(sent()) == 2
    assert_error(api.post("/api/sweeps", json=sweep | {"name": "t"}, headers=key), 422, "idempotency_key_reused",
                 "Idempotency-Key")
    assert len(reader.get("/api/sweeps").get_json()["sweeps"]) == 1


def test_runs_remember_the_token_that_queued_them(api, Session, tokens):
    run_id = api.create_run(xor())["id"]
    with Session() as s:
        token = repo.verify_token(session=s, token=tokens["write"])
        assert repo.get_run(session=s, run_id=run_id).token_id == token.id
        assert repo.count_queued(session=s, token_id=token.id) == 1

