"""Runs logged from the user's own training loop: :meth:`trainyard.Client.track` and :func:`trainyard.track`.

::

    import trainyard

    with trainyard.track("perceptron by hand", project="notebook", params={"lr": 0.1}) as run:
        for epoch in range(1, 101):
            ...                                   # the user's own training step
            run.log(epoch, train_loss=loss, train_accuracy=accuracy, margin=margin)
        run.log_weights(epoch, [w.reshape(-1, 1), np.array([b])])

``run.log`` only appends to a buffer (a few microseconds): a thread of the
run's own sends what is buffered in one request at most every
:data:`SEND_SECONDS`, and everything left when the block ends, which then
finishes the run (``failed``, with the exception's text, when the block
raised; the exception goes on).  While the service cannot be reached, the
buffer is kept and sent again; it holds at most :data:`MAX_BUFFERED` epochs
(the oldest give way, said once on standard error), so a long outage costs
the oldest epochs, never the user's loop.  An epoch logged twice is sent as
one, its metrics merged; the service keeps one row per epoch.
"""

from __future__ import annotations

import collections
import io
import math
import re
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from trainyard.client import IDEMPOTENCY_HEADER, JSON, ApiError, ClientError

if TYPE_CHECKING:
    from trainyard.client import Client

#: Most time between two sends of what ``log`` buffered.
SEND_SECONDS = 0.5
#: Most epochs buffered while the service cannot be reached; beyond, the oldest give way.
MAX_BUFFERED = 100_000
#: Most epochs one request carries (the API's limit).
MAX_BATCH = 10_000
#: Most weight snapshots waiting to be sent; beyond, the oldest give way.
MAX_WEIGHTS_BUFFERED = 8
#: Most seconds the end of the block waits for what is buffered to be sent while the service cannot be reached.
FINISH_WAIT_SECONDS = 30.0
#: A custom metric's name, as the API takes it.
METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]{0,63}$")
#: Names a metric may not take: the epoch's own fields.
RESERVED = frozenset(("epoch", "weight_norms", "grad_norms"))


class TrackedRun:
    """A run of the user's own code, logged to Trainyard; made by :meth:`Client.track`.

    Use it as a context manager (leaving the block finishes the run), or call
    :meth:`finish` yourself.  ``id`` and ``run`` (the API's document of the
    run when it was made) say which run it is.
    """

    def __init__(self, client: Client, run: JSON, *, send_seconds: float = SEND_SECONDS,
                 max_buffered: int = MAX_BUFFERED, finish_wait: float = FINISH_WAIT_SECONDS,
                 stderr: TextIO | None = None):
        self._client = client
        self.run = run
        self.id: str = run["id"]
        self._send_seconds = send_seconds
        self._max_buffered = max_buffered
        self._finish_wait = finish_wait
        self._stderr = stderr
        self._lock = threading.Lock()
        self._epochs: collections.OrderedDict[int, dict[str, Any]] = collections.OrderedDict()
        self._weights: collections.deque[tuple[int, bytes]] = collections.deque()
        self._last_sent: dict[str, Any] | None = None  # an epoch logged again after it was sent is sent merged
        self._dropped = 0
        self._said: set[str] = set()
        self._names: set[str] = set()
        self._wake = threading.Event()
        self._closing = False
        self._finished: JSON | None = None
        self._sender = threading.Thread(target=self._send_loop, name=f"trainyard-track-{self.id[:8]}", daemon=True)
        self._sender.start()

    # ------------------------------------------------------------------ the user's side

    def log(self, epoch: int, /, **metrics: float | None) -> None:
        """Buffer ``epoch``'s metrics: the built-in ones (``train_loss``, ``val_loss``, ``train_accuracy``,
        ``val_accuracy``, ``lr``, ``seconds``) and custom ones by name (``bleu=21.3``).  Returns at once.

        Raises
        ------
        ValueError
            An epoch that is not a whole number from 1, a metric name the API does not take, or a value that
            is not a number (NaN and infinities are sent as null: JSON has neither).
        """
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 1:
            raise ValueError(f"epoch must be a whole number from 1, not {epoch!r}")
        row = {name: self._value(name, value) for name, value in metrics.items()}
        epoch = int(epoch)
        with self._lock:
            if self._finished is not None or self._closing:
                raise RuntimeError(f"run {self.id} is finished: nothing more can be logged")
            buffered = self._epochs.get(epoch)
            if buffered is not None:
                buffered.update(row)
            elif self._last_sent is not None and self._last_sent["epoch"] == epoch:
                self._epochs[epoch] = {**self._last_sent, **row}
            else:
                self._epochs[epoch] = {"epoch": epoch, **row}
                if len(self._epochs) > self._max_buffered:
                    self._epochs.popitem(last=False)
                    self._dropped += 1

    def _value(self, name: str, value: Any) -> float | None:
        if name not in self._names:
            if name in RESERVED or not METRIC_NAME.match(name):
                raise ValueError(f"{name!r} cannot name a metric: use letters, digits and _ . - / (up to 64, "
                                 "not starting with a digit), not epoch, weight_norms or grad_norms")
            self._names.add(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name}: a metric is a number, not {value!r}")
        number = float(value)
        return number if math.isfinite(number) else None

    def log_weights(self, epoch: int, weights: Sequence[np.ndarray]) -> None:
        """Buffer the network's weights at ``epoch``: ``[W1, b1, W2, b2, ...]``, each ``W`` of shape (fan_in,
        fan_out) and each ``b`` of fan_out values (stored as ``W1``, ``b1``, ...: the run page draws them as
        heatmaps; the service refuses other shapes, said once on standard error)."""
        arrays = {f"{'Wb'[i % 2]}{i // 2 + 1}": np.asarray(array, dtype=np.float64) for i, array in enumerate(weights)}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        with self._lock:
            self._weights.append((int(epoch), buffer.getvalue()))
            if len(self._weights) > MAX_WEIGHTS_BUFFERED:
                self._weights.popleft()
                self._say("weights", f"trainyard: run {self.id}: the service is out of reach; the oldest weight "
                                     "snapshots waiting to be sent were dropped")
        self._wake.set()

    def finish(self, status: str = "succeeded", error: str | None = None) -> JSON | None:
        """Send what is buffered, then end the run as ``succeeded`` or ``failed`` (with ``error``); the run's
        document, or None when the service could not be reached (said on standard error; the service then
        fails the run once it has heard nothing for ``TRAINYARD_TRACK_TIMEOUT_SECONDS``).  Finishing again
        returns the first answer."""
        with self._lock:
            if self._finished is not None:
                return self._finished
            self._closing = True
        self._wake.set()
        self._sender.join(self._finish_wait + 5)
        if self._pending():
            self._say("unsent", f"trainyard: run {self.id}: {self._pending()} epochs could not be sent before "
                                "the end (the service is out of reach)")
        try:
            finished = self._client._json("POST", f"/api/runs/{self.id}/finish", retry=True,
                                          json={"status": status, "error": error})
        except ClientError as exc:
            self._say("finish", f"trainyard: run {self.id}: could not finish it: {exc}")
            return None
        with self._lock:
            self._finished = finished
        return finished

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc is None:
            self.finish("succeeded")
        else:
            self.finish("failed", f"{type(exc).__name__}: {exc}"[:10_000])

    # ------------------------------------------------------------------ the sender

    def _pending(self) -> int:
        with self._lock:
            return len(self._epochs) + len(self._weights)

    def _send_loop(self) -> None:
        """Send what is buffered every ``send_seconds``; at the close, until all is sent or the wait is over."""
        pause = self._send_seconds
        deadline: float | None = None
        while True:
            self._wake.wait(pause)
            self._wake.clear()
            closing = self._closing
            if closing and deadline is None:
                deadline = time.monotonic() + self._finish_wait
            sent = self._send_some()
            if self._dropped:
                self._say("dropped", f"trainyard: run {self.id}: the service is out of reach and the buffer is "
                                     f"full; the oldest epochs give way ({self._dropped} so far)")
            if closing and (not self._pending() or time.monotonic() >= deadline):
                return
            pause = self._send_seconds if sent else min(max(pause * 2, self._send_seconds), 5.0)
            if closing and sent:
                pause = 0.0

    def _send_some(self) -> bool:
        """One batch of epochs, then the weights waiting; False when the service could not be reached."""
        with self._lock:
            batch = [self._epochs[epoch] for epoch in list(self._epochs)[:MAX_BATCH]]
        if batch:
            if not self._post(f"/api/runs/{self.id}/epochs", json=batch):
                return False
            with self._lock:
                for row in batch:
                    if self._epochs.get(row["epoch"]) is row:
                        del self._epochs[row["epoch"]]
                self._last_sent = dict(batch[-1])
        while True:
            with self._lock:
                if not self._weights:
                    return True
                epoch, data = self._weights[0]
            if not self._post(f"/api/runs/{self.id}/weights", params={"epoch": epoch}, content=data,
                              headers={"Content-Type": "application/octet-stream"}):
                return False
            with self._lock:
                if self._weights and self._weights[0][0] == epoch:
                    self._weights.popleft()

    def _post(self, path: str, **kwargs: Any) -> bool:
        """Send; True when done or refused for good (a 4xx: said once, dropped), False to try again later."""
        try:
            self._client._request("POST", path, retry=False, **kwargs)
        except ApiError as exc:
            if exc.status >= 500 or exc.status == 429:
                return False
            self._say(f"refused {exc.status} {exc.code}", f"trainyard: run {self.id}: the service refused what "
                                                          f"was logged: {exc.message}")
            return True
        except ClientError:
            return False
        return True

    def _say(self, what: str, message: str) -> None:
        """``message`` on standard error, once per ``what``."""
        if what not in self._said:
            self._said.add(what)
            print(message, file=self._stderr or sys.stderr, flush=True)


def idempotency_key() -> dict[str, str]:
    """A header that makes the request that starts a tracked run safe to repeat."""
    return {IDEMPOTENCY_HEADER: uuid.uuid4().hex}
