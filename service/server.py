"""Serving the API under gunicorn, as ``trainyard api`` (hence compose and ``trainyard up``) does.

:func:`serve` runs gunicorn in this process with threaded workers
(``gthread``), logs that mask API tokens (:mod:`.gunicorn_logging`) and no
control socket: gunicorn 25.1 makes one by default in ``$HOME/.gunicorn``,
where a second server on the machine would take the first's, and a
container's user may have no home to write it in.

It is gunicorn's own custom-application interface (:class:`ApiServer`), not
its command line, because the command line puts its working folder first on
``sys.path``: a user's folder holding a ``trainyard/`` of its own (a checkout
of this project, say) would then be imported instead of the installed
package.  gunicorn's ``GUNICORN_CMD_ARGS`` variable still adds options
(``--access-logfile -``, ``--timeout``, ...), as with its command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from trainyard.service.app import create_app
from trainyard.service.gunicorn_logging import RedactingLogger

#: gunicorn's worker class: threads, so a page that polls does not hold up other requests.
WORKER_CLASS = "gthread"


def bind_address(host: str, port: int) -> str:
    """gunicorn's form of an address: IPv6 in brackets."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{shown}:{port}"


def options(host: str, port: int, *, workers: int, threads: int, graceful_timeout: int | None = None) -> dict[str, Any]:
    """gunicorn's settings for the API on ``host:port`` with ``workers`` processes of ``threads`` threads each."""
    settings: dict[str, Any] = {
        "bind": [bind_address(host, port)],
        "worker_class": WORKER_CLASS,
        "workers": workers,
        "threads": threads,
        "logger_class": RedactingLogger,
        "control_socket_disable": True,
    }
    if graceful_timeout is not None:
        settings["graceful_timeout"] = graceful_timeout
    return settings


class ApiServer(BaseApplication):
    """gunicorn serving :func:`~trainyard.service.app.create_app` (built in each worker process) with ``settings``."""

    def __init__(self, settings: Mapping[str, Any]):
        self.settings = dict(settings)
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.settings.items():
            self.cfg.set(name, value)
        extra = self.cfg.get_cmd_args_from_env()  # GUNICORN_CMD_ARGS, parsed as gunicorn's command line would
        if extra:
            for name, value in vars(self.cfg.parser().parse_args(extra)).items():
                if value is not None and name != "args":
                    self.cfg.set(name.lower(), value)

    def load(self) -> Flask:
        return create_app()


def serve(host: str, port: int, *, workers: int, threads: int, graceful_timeout: int | None = None) -> None:
    """Serve the API with the ``TRAINYARD_*`` settings of the environment until SIGTERM or SIGINT."""
    ApiServer(options(host, port, workers=workers, threads=threads, graceful_timeout=graceful_timeout)).run()
