"""Fixtures of the dashboard tests: an app on a fresh database (SQLite and PostgreSQL), tokens, runs with epochs.

The database fixtures (``database_url``, ``url``) come from ``tests/conftest.py``.
The dashboard sends nothing to the broker; the app's queue is Celery on
kombu's in-memory transport (``broker_url="memory://"``).
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from factories import stored, xor
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from trainyard.service.app import create_app
from trainyard.service.config import Settings
from trainyard.service.storage import repo

#: A small valid spec (as the API stores it).
SPEC: dict[str, Any] = stored(xor(
    name="xor-tanh", model={"type": "mlp", "hidden": [{"units": 4, "activation": "tanh"}]}, epochs=50, tags=["example"]
))


@pytest.fixture
def auth_on() -> bool:
    return True


@pytest.fixture
def settings(url: str, tmp_path, auth_on: bool) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=url, broker_url="memory://", auth=auth_on)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)  # its queue: Celery on kombu's in-memory transport (the pages send nothing)
    yield app
    app.extensions["trainyard"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_of(html: str) -> str:
    """The CSRF value a page carries (its ``<meta name="csrf-token">``)."""
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def log_in(client: FlaskClient, token: str) -> str:
    """Log ``client`` in with ``token`` through the login form; returns the session's CSRF value."""
    page = client.get("/login")
    response = client.post("/login", data={"token": token, "csrf": csrf_of(page.get_data(as_text=True))})
    assert response.status_code == 303, response.get_data(as_text=True)
    return csrf_of(client.get("/runs").get_data(as_text=True))


@pytest.fixture
def csrf() -> Callable[[str], str]:
    """``csrf(html)``: the CSRF value a page carries."""
    return csrf_of


@pytest.fixture
def logged_in(client: FlaskClient, tokens: dict[str, str]) -> Callable[[str], str]:
    """``logged_in(scope)``: log the client in with that scope's token; returns the CSRF value."""
    return lambda scope: log_in(client, tokens[scope])


def weights_npz(layers: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{f"{kind}{i}": array for i, layer in enumerate(layers, 1) for kind, array in zip("Wb", layer)})
    return buffer.getvalue()


@pytest.fixture
def npz() -> Callable[[list[tuple[np.ndarray, np.ndarray]]], bytes]:
    """``npz([(W1, b1), ...])``: weights as the worker stores them."""
    return weights_npz


@pytest.fixture
def make_run(Session: sessionmaker[OrmSession]) -> Callable[..., str]:
    """``make_run(name=..., epochs=k, status=..., spec_changes={...}, project=...)``: a run with k epochs written; its
    id."""

    def make(
        name: str = "xor-tanh",
        *,
        epochs: int = 0,
        status: str = "queued",
        total: int = 50,
        spec_changes: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        error: str | None = None,
        weights: bool = False,
        project: str = "default",
    ) -> str:
        spec = copy.deepcopy(SPEC) | {"name": name, "project": project} | (spec_changes or {})
        with Session() as s, s.begin():
            run = repo.create_run(session=s, spec=spec, name=name, seed=3, tags=tags or ["example"], notes="",
                                  epochs_total=total, project=project)
            if status != "queued":
                repo.claim_run(session=s, run_id=run.id, worker="test", lease_seconds=600)
            write_epochs(s, run.id, 1, epochs)
            if weights and epochs:
                rng = np.random.default_rng(0)
                for epoch in (1, epochs):
                    data = weights_npz([(rng.normal(size=(2, 4)), np.zeros(4)), (rng.normal(size=(4, 1)), np.zeros(1))])
                    repo.write_weights_many(session=s, run_id=run.id, snapshots=[(epoch, data)])
            if status in ("succeeded", "failed", "cancelled"):
                summary = {"final_train_loss": 0.5 / max(epochs, 1), "final_val_accuracy": 0.9,
                           "best_val_loss": 0.4 / max(epochs, 1)}
                repo.finish_run(session=s, run_id=run.id, status=status, error=error, summary=summary)
            return run.id

    return make


def write_epochs(s: OrmSession, run_id: str, first: int, last: int) -> None:
    """Epochs ``first..last`` of a made-up run: falling loss, rising accuracy, 0.01 s each."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    rows = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "val_loss": 1.1 / e,
            "train_accuracy": 1 - 0.5 / e,
            "val_accuracy": 1 - 0.6 / e,
            "lr": 0.5,
            "seconds": 0.01,
            "weight_norms": [1.0 + e / 100, 0.5],
            "grad_norms": [0.1 / e, 0.05 / e],
            "recorded_at": start + dt.timedelta(seconds=e),
        }
        for e in range(first, last + 1)
    ]
    if rows:
        repo.write_epochs(session=s, run_id=run_id, rows=rows)
