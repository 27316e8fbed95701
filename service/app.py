"""The Flask application factory.

``create_app(settings)`` builds everything from the settings when called
(nothing at import time): the engine and session factory, the run queue, the
error handlers, the security headers of every response (:mod:`.headers`) and
the API.  It refuses to start against a database whose schema is behind the
code's, with an error naming ``trainyard db upgrade``.
Each request opens its own transaction (``trainyard.service.context.transaction``).
"""

from __future__ import annotations

from flask import Flask

from trainyard.service import headers
from trainyard.service.api import BLUEPRINTS, openapi
from trainyard.service.api.declare import IdConverter
from trainyard.service.config import Settings
from trainyard.service.context import Services, install
from trainyard.service.dashboard import init_app as init_dashboard
from trainyard.service.encoding import OrjsonProvider
from trainyard.service.errors import register_error_handlers
from trainyard.service.queue import CeleryQueue, RunQueue
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.service.storage.migrate import check_schema

#: Largest request body: specs and run changes are small JSON documents.
MAX_CONTENT_LENGTH = 1024 * 1024

#: Database connections each API process keeps open (at most, once used), and as many more under a burst: at least
#: the threads of a gunicorn process (8 in the compose file), so connections are reused rather than reopened.
POOL_SIZE = 16

#: How long a request that writes waits for SQLite's write lock before it answers ``503 busy`` (reads take no
#: lock).  The lock is held for moments by a worker's flush or another request's write, so waiting longer than
#: this means something holds it for long: a client told to come back beats a server thread stuck for the
#: engine's default 30 s, gunicorn's whole request timeout.
SQLITE_BUSY_TIMEOUT_MS = 5_000


def create_app(settings: Settings | None = None, *, queue: RunQueue | None = None) -> Flask:
    """A Flask app serving the API for ``settings`` (default: ``Settings.from_env()``).

    Parameters
    ----------
    settings : Settings, optional
        The configuration; read from the environment when not given.
    queue : RunQueue, optional
        Where created runs are sent; default a :class:`~trainyard.service.queue.CeleryQueue` on ``settings.broker_url``.

    Raises
    ------
    trainyard.service.storage.migrate.SchemaBehind
        If the database's schema is older than the code's (the message says to run ``trainyard db upgrade``).
    trainyard.service.storage.migrate.SchemaError
        If it was migrated by a newer version of Trainyard.
    """
    settings = settings or Settings.from_env()
    engine = make_engine(
        settings.database_url,
        pool_size=POOL_SIZE,
        max_overflow=POOL_SIZE,
        sqlite_busy_timeout_ms=SQLITE_BUSY_TIMEOUT_MS,
    )
    try:
        check_schema(engine)
    except Exception:
        engine.dispose()
        raise
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.config.update(MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH, SECRET_KEY=settings.secret_key)
    services = Services(
        settings=settings,
        engine=engine,
        Session=make_sessionmaker(engine),
        queue=queue if queue is not None else CeleryQueue(settings.broker_url, queue_name=settings.queue),
    )
    install(app, services)
    register_error_handlers(app)
    headers.init_app(app)
    app.url_map.converters["id"] = IdConverter
    for blueprint in (*BLUEPRINTS, openapi.bp):
        app.register_blueprint(blueprint)
    init_dashboard(app)
    return app
