"""Trainyard: train neural networks and track the experiments.

The public way in is the HTTP client::

    from trainyard import Client

    with Client("http://127.0.0.1:8000", token="ty_...") as client:
        run = client.submit({"dataset": {"name": "xor"}, "model": {"type": "mlp", "hidden": [{"units": 8}]},
                             "optimizer": {"name": "adam", "lr": 0.05}, "epochs": 300})

The package's parts, each importable on its own:

- :mod:`trainyard.trainer`: the numpy training engine (``from trainyard.trainer import TrainSpec, fit``);
- :mod:`trainyard.service`: settings, storage, the operations every interface shares, the Flask API and dashboard;
- :mod:`trainyard.worker`: the Celery worker that trains queued runs;
- :mod:`trainyard.migrations`: the database schema's Alembic revisions;
- this package's own modules, the entry layer: :mod:`.cli` (the ``trainyard`` command), :mod:`.local`
  (``trainyard up``) and :mod:`.client`.  Only the entry layer knows both the service and the worker.

``import trainyard`` loads nothing else: the client (httpx, no web framework, queue or database library) is
loaded when first named, so ``import trainyard.trainer`` or ``trainyard.service`` brings no part of the entry layer.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainyard.client import ApiError, Client, ClientError, Unreachable
    from trainyard.tracking import TrackedRun

__all__ = ["ApiError", "Client", "ClientError", "Unreachable", "track"]


def __getattr__(name: str) -> Any:
    """The client's names, loaded on first use (PEP 562)."""
    if name in __all__:
        return getattr(importlib.import_module("trainyard.client"), name)
    raise AttributeError(f"module 'trainyard' has no attribute {name!r}")


def track(name: str, *, project: str | None = None, params: dict[str, Any] | None = None,
          tags: list[str] | None = None, notes: str | None = None) -> TrackedRun:
    """Start a run of your own training loop on the service at ``TRAINYARD_URL`` (default the address ``trainyard
    up`` wrote in ``TRAINYARD_DATA_DIR``, else http://127.0.0.1:8000) with the token ``TRAINYARD_TOKEN`` (default
    the one ``trainyard up`` wrote there); ``project`` defaults to ``TRAINYARD_PROJECT``.  See
    :meth:`trainyard.Client.track`: ``with trainyard.track("my run") as run: run.log(epoch, train_loss=...)``."""
    from trainyard.client import Client

    client = Client.from_env()
    return client.track(name, project=project or os.environ.get("TRAINYARD_PROJECT") or None, params=params,
                        tags=tags, notes=notes)
