"""The API's queue: on the local mode's serverless broker (kombu's SQLAlchemy transport on SQLite), and on Redis."""

from __future__ import annotations

import json
import secrets
import threading
import time

import pytest
import redis
from kombu import Connection
from sqlalchemy import create_engine, text

from trainyard.service.queue import TRAIN_TASK, CeleryQueue


# kombu 5.7's SQLAlchemy transport maps its tables with ``lazy="noload"``, which SQLAlchemy 2.1 deprecates.
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
def test_queue_sends_on_the_local_sqlite_broker(tmp_path):
    url = f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    queue = CeleryQueue(url, queue_name="runs")
    try:
        queue.ping()
        queue.send("ab" * 16)
    finally:
        queue.close()

    with Connection(url) as connection:
        message = connection.SimpleQueue("runs").get(timeout=5)
        message.ack()
    assert message.headers["task"] == TRAIN_TASK
    assert message.payload[0] == ["ab" * 16]


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
def test_the_local_broker_gets_the_message_and_nothing_else(tmp_path):
    url = f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    queue = CeleryQueue(url, queue_name="runs")
    try:
        queue.send("cd" * 16)
    finally:
        queue.close()
    engine = create_engine(url.removeprefix("sqla+"))
    try:
        with engine.connect() as connection:  # no event queue or message: the local transport cannot broadcast
            assert connection.execute(text("SELECT name FROM kombu_queue")).scalars().all() == ["runs"]
            assert connection.execute(text("SELECT count(*) FROM kombu_message")).scalar() == 1
    finally:
        engine.dispose()


def test_queue_on_redis_sends_the_run_and_a_task_sent_event(redis_url: str, redis_client: redis.Redis):
    """The event is what shows a queued run in Flower (as PENDING, with the time it was sent)."""
    name = f"trainyard-test-{secrets.token_hex(6)}"
    run_id = secrets.token_hex(16)
    queue = CeleryQueue(redis_url, queue_name=name)
    events: list[dict] = []
    try:
        with queue.app.connection_for_read() as connection:
            receiver = queue.app.events.Receiver(connection, handlers={"task-sent": events.append})
            listening = threading.Thread(target=receiver.capture, kwargs={"limit": None, "timeout": 30})
            listening.start()
            try:  # events are broadcast to whoever listens at that moment: send until the receiver has heard one
                wait_for_event = time.monotonic() + 10
                while not [event for event in events if event["queue"] == name]:
                    assert time.monotonic() < wait_for_event, "no task-sent event for the run"
                    queue.send(run_id)
                    time.sleep(0.2)
            finally:
                receiver.should_stop = True
                listening.join(10)
        sent = [json.loads(raw) for raw in redis_client.lrange(name, 0, -1)]
    finally:
        queue.close()
        redis_client.delete(name, f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")
    event = next(event for event in events if event["queue"] == name)
    assert (event["name"], event["args"], event["routing_key"]) == (TRAIN_TASK, repr([run_id]), name)
    assert event["uuid"] in {message["headers"]["id"] for message in sent}
    assert {message["headers"]["task"] for message in sent} == {TRAIN_TASK}
