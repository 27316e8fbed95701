"""Local mode's SQLite: a long read beside a worker that trains and a quick request, none holding up another.

The API is the real app (its requests run through Flask's test client, in threads of this process); the worker
is a real ``python -m trainyard.worker`` process on the local broker, flushing every 0.1 s.  The long read is
``GET /api/runs/<id>/epochs``, held open on purpose for a few seconds after its query ran (a read of a run with
millions of epochs takes that long), so the test does not depend on the machine's speed.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import threading
import time
from typing import Any

import pytest
from factories import DIGITS, spec_of
from sqlalchemy import event
from sqlalchemy.engine import make_url
from worker_kit import epochs_lasting, local_stack, wait_for

from trainyard.service.app import create_app
from trainyard.service.storage import repo

#: kombu's SQLAlchemy transport (the local broker) declares its queue with ``noload``, deprecated in SQLAlchemy 2.1.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")

#: How long the long read holds its transaction open after its query.
HOLD = 5.0


def test_a_long_read_holds_up_neither_a_quick_request_nor_the_worker(tmp_path):
    stack = local_stack(tmp_path, f"trainyard-test-{secrets.token_hex(6)}", lease=30.0)
    app = None
    try:
        stack.start_worker(TRAINYARD_FLUSH_SECONDS="0.1")
        run_id = stack.submit(spec_of(DIGITS, epochs=epochs_lasting(DIGITS, 15.0, at_least=2000)))
        with stack.Session() as s, s.begin():
            token = repo.create_token(session=s, scope="read")[0]
        headers = {"Authorization": f"Bearer {token}"}
        app = create_app(stack.settings)
        wait_for(lambda: stack.run(run_id).epochs_done > 0, 60, "the worker to store epochs")

        database = make_url(stack.settings.database_url).database
        held = threading.Event()
        samples: list[tuple[float, int]] = []  # (time, the run's epochs_done) while the read is held

        def epochs_done() -> int:  # a reader of the test's own: in WAL mode nothing holds it up
            with contextlib.closing(sqlite3.connect(database)) as connection:
                return connection.execute("SELECT epochs_done FROM runs WHERE id = ?", (run_id,)).fetchone()[0]

        def hold_the_epochs_read(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "epochs" in statement and statement.lstrip().upper().startswith("SELECT") and not held.is_set():
                held.set()
                end = time.monotonic() + HOLD
                while time.monotonic() < end:
                    samples.append((time.monotonic(), epochs_done()))
                    time.sleep(0.1)

        event.listen(app.extensions["trainyard"].engine, "after_cursor_execute", hold_the_epochs_read)
        answers: dict[str, Any] = {}

        def long_read() -> None:
            answers["long"] = app.test_client().get(f"/api/runs/{run_id}/epochs", headers=headers)

        reading = threading.Thread(target=long_read)
        reading.start()
        assert held.wait(30), "the long read never ran its query"
        time.sleep(0.5)
        started = time.monotonic()
        quick = app.test_client().get("/api/runs?limit=1", headers=headers)
        quick_seconds = time.monotonic() - started
        reading.join(HOLD + 30)

        assert quick.status_code == 200 and [run["id"] for run in quick.get_json()["runs"]] == [run_id]
        assert quick_seconds < 1.5, f"the quick request took {quick_seconds:.1f} s beside the long read"
        assert answers["long"].status_code == 200 and answers["long"].get_json()["epochs"]
        assert samples[-1][0] - samples[0][0] > HOLD - 1
        stalls, changed_at = [], samples[0][0]
        for (_, before), (at, after) in zip(samples, samples[1:]):
            if after != before:
                changed_at = at
            stalls.append(at - changed_at)
        assert samples[-1][1] > samples[0][1] and max(stalls) < 2.0, (
            f"the worker stored no epochs for {max(stalls):.1f} s of the {HOLD:.0f} s read"
        )
    finally:
        if app is not None:
            app.extensions["trainyard"].engine.dispose()
        stack.close()
