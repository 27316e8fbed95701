"""Liveness and readiness probes (no token needed): ``/healthz`` and ``/readyz``."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from typing_extensions import NotRequired, TypedDict

from trainyard.service.api.declare import declare
from trainyard.service.context import services
from trainyard.service.errors import ErrorBody
from trainyard.service.queue import QueueError

bp = Blueprint("health", __name__)

TAGS = ("health",)


class Health(TypedDict):
    status: Literal["ok"]


class Readiness(TypedDict):
    """Whether the database and the broker answer; when one does not, an error naming it."""

    database: Literal["ok", "unavailable"]
    broker: Literal["ok", "unavailable"]
    error: NotRequired[ErrorBody]


@bp.get("/healthz")
@declare(responses={200: Health}, tags=TAGS, summary="The process is up")
def healthz() -> Response:
    """The process is up."""
    return jsonify(status="ok")


def _database_ok() -> bool:
    try:
        with services().engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        current_app.logger.warning("readiness: database unreachable", exc_info=True)
        return False
    return True


def _broker_ok() -> bool:
    try:
        services().queue.ping()
    except QueueError:
        current_app.logger.warning("readiness: broker unreachable", exc_info=True)
        return False
    return True


@bp.get("/readyz")
@declare(responses={200: Readiness, 503: Readiness}, tags=TAGS, summary="The database and the broker are reachable")
def readyz() -> tuple[Response, int]:
    """200 when the database and the broker answer, else 503 naming what failed."""
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    body: dict[str, object] = {name: "ok" if ok else "unavailable" for name, ok in checks.items()}
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        message = f"not ready: {' and '.join(failed)} unreachable"
        body["error"] = {"code": "not_ready", "message": message, "fields": []}
    return jsonify(body), 503 if failed else 200
