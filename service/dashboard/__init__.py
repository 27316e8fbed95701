"""The dashboard: server-rendered pages of the same Flask app, with charts drawn by plotly.js.

``init_app(app)`` (called once by ``create_app``) registers the pages
(:mod:`.pages`) and the JSON they fetch (:mod:`.data`), and configures the
session cookie: signed with ``TRAINYARD_SECRET_KEY`` or, when it is unset,
with a key kept in ``<data dir>/secret_key`` (see :func:`trainyard.service.auth.persistent_secret_key`); HttpOnly,
SameSite=Lax, and once logged in expiring with the session it names (``TRAINYARD_SESSION_HOURS`` after the login:
it is set at the login only, never pushed further by a request).

Live updates are incremental polls (``/ui/data/poll``; a sweep's page polls
``/ui/data/sweeps/<id>``), once a second and only while a shown run is queued
or running: no request is held open, so any gunicorn worker class serves
them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from flask import Flask

from trainyard.service.auth import persistent_secret_key
from trainyard.service.context import services
from trainyard.service.dashboard import data, pages

__all__ = ["init_app"]


def plotly_js_path() -> Path:
    """``plotly.min.js`` as installed with the ``plotly`` package."""
    path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    if not path.is_file():
        raise RuntimeError(f"plotly.min.js not found at {path}: reinstall the plotly package")
    return path


def init_app(app: Flask) -> None:
    """Add the dashboard to ``app`` (made by ``create_app``, whose services are installed)."""
    with app.app_context():
        settings = services().settings
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = persistent_secret_key(settings.data_dir)
    app.config.update(
        SESSION_COOKIE_NAME="trainyard_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=settings.session_lifetime,
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    app.extensions["trainyard.dashboard"] = {"plotly_js": plotly_js_path()}
    app.register_blueprint(pages.bp)
    app.register_blueprint(data.bp)
