"""The worker's Celery app: its configuration from the settings, and queue declaration on the local broker."""

from __future__ import annotations

import os

import kombu
import pytest
from sqlalchemy import create_engine, text

from trainyard.service.config import Settings
from trainyard.service.queue import TRAIN_TASK
from trainyard.worker.celery_app import (
    BUSY_POLL_SECONDS,
    IDLE_POLL_SECONDS,
    VISIBILITY_TIMEOUT,
    SQLAlchemyTransport,
    declare_queue,
    make_celery,
    transport_options,
)
from trainyard.worker.startup import blas_threads, quota_cores, usable_cores

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")


def test_the_app_is_configured_from_the_settings(tmp_path):
    settings = Settings.from_env({"TRAINYARD_DATA_DIR": str(tmp_path), "TRAINYARD_QUEUE": "runs-a"})
    app = make_celery(settings)
    conf = app.conf
    assert conf.task_default_queue == "runs-a"
    # the URL without kombu's "sqla+", and the transport it named, polling faster (see the next test)
    assert (conf.broker_url, conf.broker_transport) == (settings.broker_url.removeprefix("sqla+"), SQLAlchemyTransport)
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


def test_the_local_broker_polls_fast_only_while_there_is_work(tmp_path):
    settings = Settings.from_env({"TRAINYARD_DATA_DIR": str(tmp_path), "TRAINYARD_QUEUE": "runs-c"})
    declare_queue(settings)
    app = make_celery(settings)
    received = []
    with app.connection_for_read() as connection:
        transport = connection.transport
        assert isinstance(transport, SQLAlchemyTransport)
        assert transport.polling_interval == IDLE_POLL_SECONDS  # nothing came yet: kombu's second
        app.send_task(TRAIN_TASK, args=["run-1"])
        channel = connection.channel()
        channel.basic_qos(prefetch_size=0, prefetch_count=1)  # as a worker's
        queue = app.amqp.queues[settings.queue]
        with kombu.Consumer(channel, queues=[queue], callbacks=[lambda body, message: received.append(message)]):
            connection.drain_events(timeout=10)
        assert received[0].payload and transport.polling_interval == BUSY_POLL_SECONDS  # a message just came
        transport.idle_after_seconds = 0.0
        assert transport.polling_interval == BUSY_POLL_SECONDS  # and is not acknowledged: its run trains
        received[0].ack()
        assert transport.polling_interval == IDLE_POLL_SECONDS
        channel.close()
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
