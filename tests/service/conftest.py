"""Fixtures the API and dashboard tests share; each folder's ``app`` fixture makes the app they act on."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from trainyard.service.storage import repo


@pytest.fixture
def Session(app: Flask) -> sessionmaker[OrmSession]:
    """The app's own session factory, to arrange and inspect the database."""
    return app.extensions["trainyard"].Session


@pytest.fixture
def tokens(Session: sessionmaker[OrmSession]) -> dict[str, str]:
    """Plaintext tokens by scope (``read``, ``write``, ``admin``), and ``revoked`` (a revoked write token)."""
    with Session() as s, s.begin():
        out = {scope: repo.create_token(session=s, scope=scope, name=scope)[0] for scope in ("read", "write", "admin")}
        out["revoked"], revoked = repo.create_token(session=s, scope="write", name="revoked")
        repo.revoke_token(session=s, token_id=revoked.id)
    return out
