"""The worker's Celery app: the API's configuration plus the task, and the worker's own options."""

from __future__ import annotations

import os

import pytest

from trainyard.service.config import Settings
from trainyard.service.queue import TRAIN_TASK, CeleryQueue
from trainyard.worker.celery_app import make_celery
from trainyard.worker.startup import blas_threads, quota_cores, usable_cores

#: Every setting the shared configuration makes (``trainyard.service.celery_config.celery_app``).
SHARED = (
    "broker_url", "broker_transport", "broker_transport_options", "result_backend_transport_options",
    "visibility_timeout", "broker_connection_timeout", "task_default_queue", "task_acks_late",
    "task_reject_on_worker_lost", "worker_prefetch_multiplier", "task_serializer", "result_serializer",
    "accept_content", "task_ignore_result", "task_send_sent_event", "worker_send_task_events",
)


@pytest.mark.parametrize("broker", ["local", "redis"])
def test_the_worker_and_the_api_share_one_configuration(tmp_path, broker):
    environ = {"TRAINYARD_DATA_DIR": str(tmp_path), "TRAINYARD_QUEUE": "runs-a"}
    if broker == "redis":
        environ["TRAINYARD_BROKER_URL"] = "redis://127.0.0.1:6379/0"
    settings = Settings.from_env(environ)
    app = make_celery(settings)
    sender = CeleryQueue(settings.broker_url, queue_name=settings.queue)
    try:
        assert {key: app.conf.get(key) for key in SHARED} == {key: sender.app.conf.get(key) for key in SHARED}
        assert app.conf.task_default_queue == "runs-a"
        assert app.conf.worker_send_task_events == (broker == "redis")  # events where they can be broadcast
        assert TRAIN_TASK in app.tasks and app.settings is settings and app.runtime.settings is settings
        assert TRAIN_TASK not in sender.app.tasks
        assert app.conf.worker_hijack_root_logger and not app.conf.worker_redirect_stdouts
    finally:
        sender.close()
        app.close()


def test_blas_threads_share_the_cores():
    assert blas_threads(1) == usable_cores() and blas_threads(10**6) == 1
    assert usable_cores() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "cores"),
    [("max 100000", None), ("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("100000 100000", 1)],
)
def test_a_containers_cpu_quota_caps_the_cores(cpu_max, cores):
    assert quota_cores(cpu_max) == cores
