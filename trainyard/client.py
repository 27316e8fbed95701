"""A small Python client of the Trainyard HTTP API, on httpx.

The CLI's client commands use it, and so can notebooks and scripts::

    from trainyard import Client

    with Client("http://127.0.0.1:8000", token="ty_...") as client:
        run = client.submit({"dataset": {"name": "xor"}, "model": {"type": "mlp", "hidden": [{"units": 8}]},
                             "optimizer": {"name": "adam", "lr": 0.01}, "epochs": 300})
        for run, epochs in client.follow(run["id"]):
            print(run["status"], epochs[-1]["train_loss"] if epochs else "")
        final = client.weights(run["id"])          # {"epoch": n, "layers": [{"W": ..., "b": ...}, ...]}

Every method returns the API's JSON as plain Python values (see the API's
OpenAPI document at ``/openapi.json``).  A 4xx or 5xx answer raises
:class:`ApiError` carrying the error body's ``code``, ``message`` and
``fields``; a server that cannot be reached raises :class:`Unreachable`.
Both are :class:`ClientError`, so ``except ClientError`` catches whatever a
call can go wrong with.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import httpx

if TYPE_CHECKING:
    from trainyard.tracking import TrackedRun

#: Where ``trainyard up`` and ``trainyard api`` listen unless told otherwise.
DEFAULT_URL = "http://127.0.0.1:8000"

#: The files ``trainyard up`` writes in its data folder (``TRAINYARD_DATA_DIR``, default :data:`DATA_DIR`): the
#: admin token it made, and the address it serves.  :meth:`Client.from_env` and the CLI read them.
DATA_DIR = "trainyard-data"
TOKEN_FILE = "token"
URL_FILE = "url"

#: Seconds to wait for a connection, and for each answer.
DEFAULT_TIMEOUT = 30.0

#: Seconds a request safe to repeat keeps trying while the service answers 503.
DEFAULT_RETRY_FOR = 60.0

#: Seconds between two tries when a 503 says nothing of when to come back (``Retry-After``).
RETRY_PAUSE = 1.0

#: The header that makes a POST safe to repeat (the API keeps one run per key).
IDEMPOTENCY_HEADER = "Idempotency-Key"

#: Epochs asked for per page by :meth:`Client.epochs` (the API's largest page).
EPOCH_PAGE = 10_000

#: The epoch fields :meth:`Client.follow` fetches: the curves, without per-layer norms.
FOLLOW_FIELDS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")

#: Statuses a run never leaves.
FINISHED = frozenset(("succeeded", "failed", "cancelled"))

JSON = dict[str, Any]


class ClientError(Exception):
    """Anything a client call can fail with: an error answer or no answer at all."""


class Unreachable(ClientError):
    """No answer from the server: refused, timed out, or a name that does not resolve."""


class ApiError(ClientError):
    """The server answered with an error: HTTP ``status``, the body's ``code``, ``message`` and ``fields``.

    ``fields`` lists the input at fault as ``[{"field": "optimizer.lr", "message": "..."}]``
    (JSON paths for body fields, names for query parameters).
    """

    def __init__(self, status: int, code: str, message: str, fields: Sequence[Mapping[str, str]] = ()):
        super().__init__(f"{message} (HTTP {status} {code})")
        self.status = status
        self.code = code
        self.message = message
        self.fields = [dict(field) for field in fields]

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """The error of ``response``: its JSON error body, or its status and the start of its text (a proxy's page)."""
        try:
            error = response.json()["error"]
            return cls(response.status_code, error["code"], error["message"], error.get("fields") or ())
        except (ValueError, KeyError, TypeError):
            text = " ".join(response.text.split())[:200] or response.reason_phrase
            return cls(response.status_code, f"http_{response.status_code}", text)


def first_line(path: Path) -> str | None:
    """The text of the one-line file ``path``, stripped; None when it is missing, unreadable or empty."""
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def retry_after(response: httpx.Response) -> float:
    """The seconds a ``Retry-After`` header asks to wait (a number of seconds or an HTTP date), else
    :data:`RETRY_PAUSE`."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return RETRY_PAUSE
    if when.tzinfo is None:
        return RETRY_PAUSE
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


class Client:
    """The Trainyard API at ``url``, authenticated with ``token`` (an ``Authorization: Bearer`` header).

    Parameters
    ----------
    url : str
        The service's base address, e.g. ``http://127.0.0.1:8000``.
    token : str, optional
        An API token (``trainyard token create``, or the ``token`` file ``trainyard up``
        writes); not needed when the server runs with ``TRAINYARD_AUTH=off``.
    timeout : float
        Seconds to wait to connect and for each answer.
    retry_for : float
        How long a request that is safe to repeat keeps trying while the service
        answers ``503`` (its database restarting, say), waiting what each answer's
        ``Retry-After`` says between tries.  Safe to repeat: every ``GET``, and
        :meth:`submit` and :meth:`create_sweep`, which send an ``Idempotency-Key``.
        0: never repeat.

    Use it as a context manager, or call :meth:`close`, to release its connections.
    """

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 retry_for: float = DEFAULT_RETRY_FOR):
        self.url = url.rstrip("/")
        self.retry_for = retry_for
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Client:
        """A client of the service at ``TRAINYARD_URL`` with the token ``TRAINYARD_TOKEN``; either unset, what
        ``trainyard up`` wrote in its data folder (``TRAINYARD_DATA_DIR``, default ``./trainyard-data``), else
        :data:`DEFAULT_URL` and no token.  ``options`` go to :class:`Client` (``timeout``, ``retry_for``)."""
        environ = os.environ if environ is None else environ
        folder = Path(environ.get("TRAINYARD_DATA_DIR") or DATA_DIR)
        url = environ.get("TRAINYARD_URL") or first_line(folder / URL_FILE) or DEFAULT_URL
        return cls(url, environ.get("TRAINYARD_TOKEN") or first_line(folder / TOKEN_FILE), **options)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # ------------------------------------------------------------------ transport

    def _request(self, method: str, path: str, *, retry: bool | None = None, stream: bool = False,
                 **kwargs: Any) -> httpx.Response:
        """Send a request; :class:`ApiError` for an error status, :class:`Unreachable` for no answer.

        A ``503`` to a request safe to repeat (``retry``; default: a ``GET``, or a request carrying an
        ``Idempotency-Key``) is sent again after its ``Retry-After``, for up to :attr:`retry_for` seconds.
        With ``stream``, the answer's body is left unread, to iterate over (close the response after).
        """
        params = kwargs.pop("params", None)
        if params is not None:
            kwargs["params"] = {name: value for name, value in params.items() if value is not None}
        if retry is None:
            retry = method == "GET" or IDEMPOTENCY_HEADER in (kwargs.get("headers") or {})
        deadline = time.monotonic() + self.retry_for
        while True:
            try:
                response = self._http.send(self._http.build_request(method, path, **kwargs), stream=stream)
                if response.is_error:
                    response.read()
            except httpx.TransportError as exc:
                raise Unreachable(f"cannot reach Trainyard at {self.url}: {exc or type(exc).__name__}") from exc
            left = deadline - time.monotonic()
            if response.status_code != 503 or not retry or left <= 0:
                break
            time.sleep(min(retry_after(response), left))
        if response.is_error:
            raise ApiError.from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # ------------------------------------------------------------------ health

    def health(self) -> JSON:
        """``GET /healthz``: ``{"status": "ok"}`` when the API process is up."""
        return self._json("GET", "/healthz")

    def ready(self) -> JSON:
        """``GET /readyz``: ``{"database": "ok", "broker": "ok"}``; :class:`ApiError` 503 naming what is down.

        Asked once: its ``503`` is the answer, not a reason to wait.
        """
        return self._json("GET", "/readyz", retry=False)

    # ------------------------------------------------------------------ runs

    def submit(self, spec: Mapping[str, Any], *, idempotency_key: str | None = None) -> JSON:
        """Create a run of the job ``spec`` (a dict of the spec's JSON); the new run, ``status`` ``queued``.

        A spec the API refuses raises :class:`ApiError` 422 whose ``fields`` name the fields at fault.  The
        request carries an ``Idempotency-Key`` (``idempotency_key``, or a new random one), so repeating it,
        after a ``503`` or a lost answer, never makes a second run.
        """
        key = idempotency_key or uuid.uuid4().hex
        return self._json("POST", "/api/runs", json=dict(spec), headers={IDEMPOTENCY_HEADER: key})

    def run(self, run_id: str) -> JSON:
        """One run: status, spec, progress (``epochs_done`` of ``epochs_total``), ``summary`` and ``error``."""
        return self._json("GET", f"/api/runs/{run_id}")

    def runs(
        self,
        *,
        status: str | None = None,
        tag: str | None = None,
        sweep: str | None = None,
        q: str | None = None,
        project: str | None = None,
        sort: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[JSON]:
        """Every run matching the filters, fetched a page at a time as the iterator is consumed.

        Parameters
        ----------
        status, tag, sweep
            Keep runs with this status, carrying this tag, of this sweep (its id, or its name).
        q : str, optional
            Keep runs whose name contains this text.
        project : str, optional
            Keep the runs of this project.
        sort : str, optional
            ``created_at`` (default ``-created_at``: newest first), ``name``, ``status``,
            ``epochs_done`` or a summary metric such as ``final_val_accuracy``; ``-`` for descending.
        page_size : int, optional
            Runs per request (the API's ``limit``).
        """
        params = {"status": status, "tag": tag, "sweep": sweep, "q": q, "project": project, "sort": sort,
                  "limit": page_size}
        return self._pages("/api/runs", "runs", params)

    def _pages(self, path: str, key: str, params: dict[str, Any]) -> Iterator[JSON]:
        """The items under ``key`` of every page of the listing at ``path``, following its ``next`` cursor."""
        params = dict(params)
        while True:
            page = self._json("GET", path, params=params)
            yield from page[key]
            if page["next"] is None:
                return
            params["cursor"] = page["next"]

    def update(self, run_id: str, *, name: str | None = None, tags: Iterable[str] | None = None,
               notes: str | None = None) -> JSON:
        """Change a run's ``name``, ``tags`` or ``notes`` (those given); the changed run."""
        changes = {"name": name, "tags": None if tags is None else list(tags), "notes": notes}
        return self._json("PATCH", f"/api/runs/{run_id}", json={k: v for k, v in changes.items() if v is not None})

    def cancel(self, run_id: str) -> JSON:
        """Ask a queued or running run to stop; the run (``cancel_requested`` true).  409 if it has finished."""
        return self._json("POST", f"/api/runs/{run_id}/cancel")

    def delete(self, run_id: str) -> None:
        """Delete a run with its epochs and weights."""
        self._request("DELETE", f"/api/runs/{run_id}")

    def epochs(self, run_id: str, *, since: int = 0, fields: Sequence[str] | None = None,
               max_points: int | None = None) -> list[JSON]:
        """The run's epochs after epoch ``since``: ``[{"epoch": 1, "train_loss": ..., ...}, ...]``.

        ``fields`` chooses the metrics (default all, per-layer ``weight_norms``
        and ``grad_norms`` included); ``max_points`` downsamples on the server,
        keeping each stretch's extremes so spikes stay visible.  Without it,
        every epoch, fetched a page (up to 10,000 epochs) at a time.
        """
        fields_param = ",".join(fields) if fields else None
        if max_points is not None:
            params = {"since": since or None, "fields": fields_param, "max_points": max_points}
            return self._json("GET", f"/api/runs/{run_id}/epochs", params=params)["epochs"]
        epochs: list[JSON] = []
        after: int | None = since
        while after is not None:
            params = {"since": after or None, "fields": fields_param, "limit": EPOCH_PAGE}
            page = self._json("GET", f"/api/runs/{run_id}/epochs", params=params)
            epochs += page["epochs"]
            after = page["next"]
        return epochs

    def weights(self, run_id: str, *, epoch: int | None = None,
                format: Literal["json", "npz"] = "json") -> JSON | bytes:
        """The weights kept at ``epoch`` (default: the last kept).

        ``format="json"``: ``{"epoch": n, "layers": [{"W": [[...]], "b": [...]}, ...]}``.
        ``format="npz"``: the bytes of a numpy ``.npz`` file holding ``W1, b1, W2, b2, ...``
        (``numpy.load(io.BytesIO(data))``).
        """
        response = self._request("GET", f"/api/runs/{run_id}/weights", params={"epoch": epoch, "format": format})
        return response.content if format == "npz" else response.json()

    def export(self, run_id: str, format: Literal["csv", "json"] = "csv") -> bytes:
        """Every epoch of a run as CSV (a header row, then a row per epoch: the metrics, then ``weight_norm_<i>``
        and ``grad_norm_<i>`` per layer), or the run and every epoch as JSON (``{"run": ..., "epochs": [...]}``)."""
        return self._request("GET", f"/api/runs/{run_id}/export", params={"format": format}).content

    def export_to(self, run_id: str, file: BinaryIO, format: Literal["csv", "json"] = "csv") -> int:
        """Write :meth:`export`'s file into ``file`` as it arrives (in bounded memory, however long the run);
        the bytes written."""
        written = 0
        response = self._request("GET", f"/api/runs/{run_id}/export", params={"format": format}, stream=True)
        try:
            for chunk in response.iter_bytes():
                file.write(chunk)
                written += len(chunk)
        except httpx.TransportError as exc:
            raise Unreachable(f"the export from {self.url} broke off after {written:,} bytes: {exc}") from exc
        finally:
            response.close()
        return written

    def follow(self, run_id: str, *, interval: float = 0.5,
               fields: Sequence[str] = FOLLOW_FIELDS) -> Iterator[tuple[JSON, list[JSON]]]:
        """Watch a run until it finishes: yields ``(run, new epochs)`` every ``interval`` seconds.

        Each step fetches the run, then only the epochs after those already
        yielded (with ``fields``), so following a long run costs little.  The
        last item's run has a finished status (``succeeded``, ``failed`` or
        ``cancelled``) and its epochs are the run's last.
        """
        seen = 0
        while True:
            run = self.run(run_id)
            new = self.epochs(run_id, since=seen, fields=fields)
            if new:
                seen = new[-1]["epoch"]
            yield run, new
            if run["status"] in FINISHED:
                return
            time.sleep(interval)

    # ------------------------------------------------------------------ sweeps

    def create_sweep(self, sweep: Mapping[str, Any], *, idempotency_key: str | None = None) -> JSON:
        """Create a sweep (``{"name", "spec", "method", "space"[, "n", "seed", "project"]}``) with all its runs
        queued.

        The whole sweep is refused (an :class:`ApiError` naming ``points.<i>.<path>``) if any point is invalid.
        Like :meth:`submit`, it carries an ``Idempotency-Key``: repeating it never makes a second sweep.
        """
        key = idempotency_key or uuid.uuid4().hex
        return self._json("POST", "/api/sweeps", json=dict(sweep), headers={IDEMPOTENCY_HEADER: key})

    def sweep(self, sweep_id: str, *, metric: str | None = None) -> JSON:
        """A sweep with its ``progress``, its ``runs`` and the ``best`` run by ``metric`` (e.g. ``val_loss``)."""
        return self._json("GET", f"/api/sweeps/{sweep_id}", params={"metric": metric})

    def sweeps(self, *, limit: int | None = None, project: str | None = None) -> list[JSON]:
        """The sweeps (of ``project``, or all), newest first, with their progress (not their runs)."""
        return self._json("GET", "/api/sweeps", params={"limit": limit, "project": project})["sweeps"]

    # ------------------------------------------------------------------ projects

    def projects(self) -> Iterator[JSON]:
        """Every project by name, with its runs counted by status (``counts``), its sweeps and ``last_activity``,
        fetched a page at a time as the iterator is consumed."""
        return self._pages("/api/projects", "projects", {})

    def cancel_sweep(self, sweep_id: str) -> JSON:
        """Cancel a sweep's queued runs and ask its running ones to stop; the sweep as it now is."""
        return self._json("POST", f"/api/sweeps/{sweep_id}/cancel")

    # ------------------------------------------------------------------ runs of the user's own code

    def track(self, name: str, *, project: str | None = None, params: Mapping[str, Any] | None = None,
              tags: Sequence[str] | None = None, notes: str | None = None) -> TrackedRun:
        """Start a run of your own training loop (``POST /api/runs/track``): a :class:`~trainyard.tracking.TrackedRun`
        whose ``log(epoch, **metrics)`` buffers and returns at once, sent in the background; leaving its ``with``
        block finishes the run (``failed`` with the exception's text if the block raised).  ``params`` (any JSON
        object) stand for the spec: the compare page diffs them against other runs' specs by the same paths."""
        from trainyard.tracking import TrackedRun, idempotency_key

        body = {"name": name, "project": project, "params": dict(params or {}), "tags": list(tags or ()),
                "notes": notes}
        given = {key: value for key, value in body.items() if value is not None}
        run = self._json("POST", "/api/runs/track", json=given, headers=idempotency_key())
        return TrackedRun(self, run)

    # ------------------------------------------------------------------ compare and datasets

    def compare(self, run_ids: Sequence[str], *, fields: Sequence[str] | None = None,
                max_points: int | None = None, group: str | None = None) -> JSON:
        """Compare runs: ``{"runs": [...], "params": {"differ": {...}, "same": {...}}, "curves": {id: ...}}``.

        ``params.differ`` maps each spec path whose values differ to one value per run, in the order asked.
        With ``group="seed"`` the answer also has ``groups``: the runs equal but for their seed, each with its
        curves as per-epoch ``mean``, ``std``, ``min``, ``max`` and ``count`` and its summary as mean and std.
        """
        params = {"runs": ",".join(run_ids), "fields": ",".join(fields) if fields else None, "max_points": max_points,
                  "group": group}
        return self._json("GET", "/api/compare", params=params)

    def datasets(self) -> JSON:
        """The datasets a spec can name: ``{"builtin": [...], "uploads": [...]}``."""
        return self._json("GET", "/api/datasets")

    def dataset(self, dataset_id: str) -> JSON:
        """One uploaded dataset's description (never its content)."""
        return self._json("GET", f"/api/datasets/{dataset_id}")

    def upload_dataset(self, path: str | Path, *, name: str | None = None, target: str | None = None,
                       task: Literal["auto", "classification", "regression"] | None = None) -> JSON:
        """Upload a CSV file (header row, numeric features); the stored dataset, whose ``id`` a spec names
        as ``{"dataset": {"upload": id}}``.

        Parameters
        ----------
        name : str, optional
            A label (default: the file name without its extension).
        target : str, optional
            The column to predict (default: the last).
        task : {"auto", "classification", "regression"}, optional
            What the target is (default ``auto``: the server decides from its values).
        """
        path = Path(path)
        form = {key: value for key, value in {"name": name, "target": target, "task": task}.items() if value}
        with path.open("rb") as file:
            return self._json("POST", "/api/datasets", data=form, files={"file": (path.name, file, "text/csv")})

