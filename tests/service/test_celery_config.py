"""The Celery configuration the API and the worker share: per broker, queue declaration, and the local transport."""

from __future__ import annotations

import kombu
import pytest
from sqlalchemy import create_engine, text

from trainyard.service.celery_config import (
    BROKER_TIMEOUT,
    BUSY_POLL_SECONDS,
    IDLE_POLL_SECONDS,
    REDIS_SCHEMES,
    VISIBILITY_TIMEOUT,
    SQLAlchemyTransport,
    celery_app,
    declare_queue,
    supports_events,
    transport_options,
)
from trainyard.service.config import Settings
from trainyard.service.queue import TRAIN_TASK

#: kombu 5.7's SQLAlchemy transport maps its tables with ``lazy="noload"``, which SQLAlchemy 2.1 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")

#: A URL of each Redis scheme kombu knows.
REDIS_URLS = {
    "redis": "redis://127.0.0.1:6379/0",
    "rediss": "rediss://redis.example:6380/1",
    "redis+socket": "redis+socket:///run/redis/redis.sock",
    "sentinel": "sentinel://sentinel.example:26379",
}


def test_every_redis_scheme_is_covered():
    assert set(REDIS_URLS) == set(REDIS_SCHEMES)


def assert_delivery_guarantees(conf) -> None:
    """What every app has, whatever the broker: late acknowledgement, one message at a time, JSON, no results."""
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == conf.result_serializer == "json"
    assert conf.task_ignore_result


@pytest.mark.parametrize("scheme", sorted(REDIS_URLS))
def test_redis_gets_one_visibility_timeout_everywhere_socket_timeouts_and_events(scheme):
    app = celery_app(REDIS_URLS[scheme], "runs-a")
    conf = app.conf
    expected = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "socket_timeout": BROKER_TIMEOUT,
        "socket_connect_timeout": BROKER_TIMEOUT,
    }
    assert conf.broker_transport_options == conf.result_backend_transport_options == expected
    assert conf.visibility_timeout == VISIBILITY_TIMEOUT
    assert (conf.broker_url, conf.broker_transport, conf.task_default_queue) == (REDIS_URLS[scheme], None, "runs-a")
    assert conf.worker_send_task_events and conf.task_send_sent_event  # what Flower shows
    assert_delivery_guarantees(conf)
    assert not app.tasks.keys() & {TRAIN_TASK}, "the shared configuration defines no task: the worker adds it"
    app.close()


def test_the_local_broker_gets_our_transport_no_options_and_no_events(tmp_path):
    url = f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    conf = celery_app(url, "runs-b").conf
    # the URL without kombu's "sqla+", and the transport it named, polling faster (see the last test)
    assert (conf.broker_url, conf.broker_transport) == (url.removeprefix("sqla+"), SQLAlchemyTransport)
    assert conf.broker_transport_options == conf.result_backend_transport_options == {}  # they go to create_engine
    assert "visibility_timeout" not in conf
    assert not conf.worker_send_task_events and not conf.task_send_sent_event  # no fanout to carry them
    assert_delivery_guarantees(conf)


def test_other_brokers_get_no_options_but_events():
    for url in ("amqp://guest@127.0.0.1:5672//", "filesystem://"):
        conf = celery_app(url).conf
        assert transport_options(url) == conf.broker_transport_options == {}
        assert conf.worker_send_task_events and supports_events(url)
        assert conf.task_default_queue == "celery", "no queue given: Celery's default"
    assert not supports_events("sqla+sqlite:///broker.db")


def test_declare_queue_on_the_local_broker_is_idempotent(tmp_path):
    settings = Settings.from_env({"TRAINYARD_DATA_DIR": str(tmp_path), "TRAINYARD_QUEUE": "runs-c"})
    declare_queue(settings)
    declare_queue(settings)
    engine = create_engine(settings.broker_url.removeprefix("sqla+"))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name FROM kombu_queue")).scalars().all() == ["runs-c"]
    engine.dispose()


def test_the_local_broker_polls_fast_only_while_there_is_work(tmp_path):
    settings = Settings.from_env({"TRAINYARD_DATA_DIR": str(tmp_path), "TRAINYARD_QUEUE": "runs-d"})
    declare_queue(settings)
    app = celery_app(settings.broker_url, settings.queue)
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
