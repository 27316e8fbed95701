"""Trainyard's worker: a Celery worker that trains queued runs and streams them into the database.

- :mod:`.startup`: the ``trainyard worker`` command (also ``python -m trainyard.worker``), :func:`run`, BLAS threads;
- :mod:`.celery_app`: the worker's Celery app, made from the settings;
- :mod:`.tasks`: the Celery task, a thin shell around :func:`.training.train_run`;
- :mod:`.training`: claim a run, train it, flush its epochs, weights and checkpoint, finish it;
- :mod:`.reconciler`: the thread that hands out again the runs nobody trains;
- :mod:`.npz`: weight snapshots written as ``.npz`` bytes.
"""

from trainyard.worker.celery_app import make_celery
from trainyard.worker.startup import blas_threads, command, run
from trainyard.worker.training import Context, train_run

__all__ = ["Context", "blas_threads", "command", "make_celery", "run", "train_run"]
