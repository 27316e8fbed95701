"""The API's queue on the local mode's serverless broker (kombu's SQLAlchemy transport on SQLite)."""

from __future__ import annotations

import pytest
from kombu import Connection

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
