"""The worker's Celery app: its configuration from the settings, and queue declaration on the local broker."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text

from service.config import Settings
from service.queue import TRAIN_TASK
from worker import blas_threads, quota_cores, usable_cores
from worker.celery_app import VISIBILITY_TIMEOUT, declare_queue, make_celery, transport_options

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")


def test_the_app_is_configured_from_the_settings(tmp_path):
    settings = Settings.from_env({"TRAINYARD_DATA_DIR": str(tmp_path), "TRAINYARD_QUEUE": "runs-a"})
    app = make_celery(settings)
    conf = app.conf
    assert (conf.task_default_queue, conf.broker_url) == ("runs-a", settings.broker_url)
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json" and conf.task_ignore_result
    assert conf.broker_transport_options == {}  # the SQLAlchemy transport would pass them to create_engine
    assert TRAIN_TASK in app.tasks and app.settings is settings
    app.close()


def test_redis_gets_one_visibility_timeout_everywhere():
    settings = Settings.from_env({"TRAINYARD_BROKER_URL": "redis://127.0.0.1:6379/0"})
    conf = make_celery(settings).conf
    expected = {"visibility_timeout": VISIBILITY_TIMEOUT}
    assert conf.broker_transport_options == conf.result_backend_transport_options == expected
    assert conf.visibility_timeout == VISIBILITY_TIMEOUT
    assert transport_options("filesystem://") == {}


def test_declare_queue_on_the_local_broker_is_idempotent(tmp_path):
    settings = Settings.from_env({"TRAINYARD_DATA_DIR": str(tmp_path), "TRAINYARD_QUEUE": "runs-b"})
    tmp_path.mkdir(exist_ok=True)
    declare_queue(settings)
    declare_queue(settings)
    engine = create_engine(settings.broker_url.removeprefix("sqla+"))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name FROM kombu_queue")).scalars().all() == ["runs-b"]
    engine.dispose()


def test_blas_threads_share_the_cores():
    assert blas_threads(1) == usable_cores() and blas_threads(10**6) == 1
    assert usable_cores() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "cores"),
    [("max 100000", None), ("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("100000 100000", 1)],
)
def test_a_containers_cpu_quota_caps_the_cores(cpu_max, cores):
    assert quota_cores(cpu_max) == cores
