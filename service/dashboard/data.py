"""The JSON the dashboard's scripts fetch, with the browser's session (not a bearer token).

- ``GET /ui/data/runs/<id>/series``: a run's curves (every metric, the
  per-layer norms and a tracked run's custom metrics, named in ``custom``),
  downsampled to ``max_points``, with wall-clock seconds.
- ``GET /ui/data/compare?runs=a,b[&elapsed=1][&group=seed]``: several runs'
  curves (and the custom metrics of tracked runs among them, named in
  ``custom``), downsampled per run (``repo.get_curves``: one query), with
  wall-clock seconds when asked, and the runs grouped over their seeds
  (:mod:`trainyard.service.groups`) when asked.
- ``GET /ui/data/poll?runs=a,b[&since=3,0&fields=...]``: the runs' statuses,
  and with ``since`` their epochs after those numbers: what the pages ask
  every second while a shown run is queued or running.
- ``GET /ui/data/runs/<id>/weights?epoch=E``: the layers at a stored epoch.
- ``GET /ui/data/runs/<id>/boundary?epoch=E``: a 2-D classifier's output on a
  grid at a stored epoch, and the training points.
- ``GET /ui/data/runs/<id>/export.csv|json|npz``: downloads.
- ``GET /ui/data/sweeps/<id>?metric=``: a sweep's progress and ranked runs (the sweep page polls it).

Errors are the API's JSON errors; no session gives 401 (the scripts then go
to the login page).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint, Response, jsonify, request, stream_with_context

from trainyard.service import operations
from trainyard.service.auth import requires
from trainyard.service.comparison import MAX_RUNS, compare_params
from trainyard.service.context import transaction
from trainyard.service.dashboard import sweeps
from trainyard.service.dashboard.views import columns, elapsed_at, status_json
from trainyard.service.documents import attachment, weight_arrays
from trainyard.service.errors import ApiError, invalid_parameter
from trainyard.service.groups import GROUPINGS, read_groups
from trainyard.service.storage import repo
from trainyard.service.sweeps import METRICS
from trainyard.trainer import TrainSpec
from trainyard.trainer import datasets as trainer_datasets
from trainyard.trainer.fit import build_network, load_data

bp = Blueprint("dashboard_data", __name__, url_prefix="/ui/data")

#: Points per curve of a page's first load.
MAX_POINTS = 1000
#: Most epochs one poll returns per run (a page that slept catches up in a few polls).
MAX_POLL_EPOCHS = 5000
#: Curves of the compare page.
COMPARE_FIELDS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
#: Cells per side of the decision-boundary grid.
GRID = 80
#: Most data points drawn over the decision boundary (evenly spaced through the dataset).
MAX_POINTS_SHOWN = 2000
#: Most rows and columns of a layer's heatmap (larger layers are sampled evenly).
MAX_HEATMAP_SIDE = 256


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _ids(name: str = "runs") -> list[str]:
    value = request.args.get(name, "")
    ids = [part for part in value.split(",") if part]
    if not ids:
        raise invalid_parameter(name, "is required: a comma-separated list of run ids")
    if len(ids) > MAX_RUNS:
        raise invalid_parameter(name, f"at most {MAX_RUNS} runs")
    return list(dict.fromkeys(ids))


def _ints(name: str, count: int) -> list[int] | None:
    value = request.args.get(name)
    if value is None:
        return None
    try:
        numbers = [int(part) for part in value.split(",")]
    except ValueError:
        raise invalid_parameter(name, "must be whole numbers separated by commas") from None
    if len(numbers) != count or any(number < 0 for number in numbers):
        raise invalid_parameter(name, f"needs {count} numbers of 0 or more, one per run")
    return numbers


def _fields(default: tuple[str, ...]) -> list[str]:
    value = request.args.get("fields")
    if not value:
        return list(default)
    fields = list(dict.fromkeys(value.split(",")))
    unknown = [field for field in fields if field not in repo.EPOCH_FIELDS and not repo.is_metric_name(field)]
    if unknown:
        raise invalid_parameter("fields", f"unknown field(s) {', '.join(unknown)}")
    return fields


def _max_points() -> int:
    value = request.args.get("max_points", str(MAX_POINTS))
    if not value.isdigit() or not 2 <= int(value) <= 100_000:
        raise invalid_parameter("max_points", "must be a whole number from 2 to 100000")
    return int(value)


def _with_elapsed(s: Any, curves: dict[str, dict[str, np.ndarray]]) -> None:
    """Add ``elapsed`` (training seconds at each shown epoch) to each run's curves."""
    seconds = repo.get_curves(session=s, run_ids=list(curves), fields=["seconds"])
    for run_id, curve in curves.items():
        full = seconds[run_id]
        curve["elapsed"] = elapsed_at(curve["epoch"], full["epoch"], full["seconds"])


@bp.get("/runs/<id:run_id>/series")
@requires("read", via="session")
def series(run_id: str) -> Response:
    max_points = _max_points()
    with transaction(read_only=True) as s:
        run = operations.get_run(s, run_id)
        custom = list(run.metric_keys or [])
        rows = repo.get_epochs(session=s, run_id=run_id, max_points=max_points)
        curve = columns(rows, [*repo.EPOCH_FIELDS, *custom])
        seconds = repo.get_curves(session=s, run_ids=[run_id], fields=["seconds"])[run_id]
    curve["elapsed"] = elapsed_at(np.asarray(curve["epoch"], dtype=np.int64), seconds["epoch"], seconds["seconds"])
    return jsonify(run=status_json(run), curves=curve, custom=custom)


@bp.get("/compare")
@requires("read", via="session")
def compare() -> Response:
    """The runs' curves; ``elapsed=1`` adds the wall-clock seconds (a second read of every epoch: on request only),
    ``group=seed`` the runs' groups (as ``GET /api/compare?group=seed``).

    Values go out as float32: about half the bytes of float64, and more than
    a chart can show.
    """
    ids = _ids()
    max_points = _max_points()
    with_elapsed = request.args.get("elapsed") == "1"
    group = request.args.get("group") or None
    if group is not None and group not in GROUPINGS:
        raise invalid_parameter("group", f"must be {' or '.join(GROUPINGS)}")
    body: dict[str, Any] = {}
    with transaction(read_only=True) as s:
        runs = operations.get_runs(s, ids)
        custom = list(dict.fromkeys(key for run in runs for key in run.metric_keys or ()))
        fields = [*COMPARE_FIELDS, *custom]
        if group is None:
            curves = repo.get_curves(session=s, run_ids=ids, fields=fields, max_points=max_points)
        else:
            differ = compare_params([run.spec for run in runs])["differ"]
            curves, body["groups"] = read_groups(s, runs, by=group, fields=fields, differ=differ,
                                                 max_points=max_points)
        if with_elapsed:
            _with_elapsed(s, curves)
    for curve in curves.values():
        for name in (*fields, "elapsed"):
            if name in curve:
                curve[name] = curve[name].astype(np.float32)
    for shown in body.get("groups", ()):
        for name in fields:
            shown["curves"][name] = {key: column.astype(np.float32) if key != "count" else column
                                     for key, column in shown["curves"][name].items()}
    return jsonify(runs=[status_json(run) | {"name": run.name} for run in runs], curves=curves, custom=custom, **body)


@bp.get("/poll")
@requires("read", via="session")
def poll() -> Response:
    """Statuses of ``runs``; with ``since``, each run's epochs after its number there (``fields``, as columns)."""
    ids = _ids()
    since = _ints("since", len(ids))
    fields = _fields(COMPARE_FIELDS + ("seconds",))
    epochs: dict[str, dict[str, list[Any]]] = {}
    with transaction(read_only=True) as s:
        runs = operations.get_runs(s, ids)
        custom = {key for run in runs for key in run.metric_keys or ()}
        unknown = [field for field in fields if field not in repo.EPOCH_FIELDS and field not in custom]
        if unknown:
            raise invalid_parameter("fields", f"unknown field(s) {', '.join(unknown)}")
        if since is not None:
            for run, after in zip(runs, since):
                if run.epochs_done > after:
                    rows, _ = repo.get_epoch_page(session=s, run_id=run.id, since=after, fields=fields,
                                                  limit=MAX_POLL_EPOCHS)
                    epochs[run.id] = columns(rows, fields)
    return jsonify(runs=[status_json(run) for run in runs], epochs=epochs)


@bp.get("/runs/<id:run_id>/weights")
@requires("read", via="session")
def weights(run_id: str) -> Response:
    epoch = _ints("epoch", 1)
    with transaction(read_only=True) as s:
        operations.get_run(s, run_id)
        stored_epochs = repo.list_weight_epochs(session=s, run_id=run_id)
        stored = repo.get_weights(session=s, run_id=run_id, epoch=None if epoch is None else epoch[0])
    if stored is None:
        return jsonify(epochs=stored_epochs, epoch=None, layers=[])
    at, data = stored
    layers = [{"W": _sampled(W, MAX_HEATMAP_SIDE), "b": b, "shape": W.shape} for W, b in weight_arrays(data)]
    return jsonify(epochs=stored_epochs, epoch=at, layers=layers)


def _sampled(matrix: np.ndarray, side: int) -> np.ndarray:
    """At most ``side`` evenly spaced rows and columns of ``matrix``: what a heatmap can show of a large layer."""
    rows = np.unique(np.linspace(0, matrix.shape[0] - 1, min(matrix.shape[0], side)).round().astype(np.int64))
    cols = np.unique(np.linspace(0, matrix.shape[1] - 1, min(matrix.shape[1], side)).round().astype(np.int64))
    return np.ascontiguousarray(matrix[np.ix_(rows, cols)])


@bp.get("/runs/<id:run_id>/boundary")
@requires("read", via="session")
def boundary(run_id: str) -> Response:
    """The classifier's probability of class 1 (its class: perceptrons, more classes) on a grid over the data."""
    epoch = _ints("epoch", 1)
    with transaction(read_only=True) as s:
        run = operations.get_run(s, run_id)
        at, data = operations.weights(s, run_id, None if epoch is None else epoch[0])
    if run.kind != "trained":
        raise ApiError(409, "not_2d", "a tracked run has no dataset here to draw a decision boundary on")
    spec = TrainSpec.model_validate(run.spec)
    dataset = load_data(spec)
    if dataset.n_features != 2 or dataset.task != "classification":
        raise ApiError(409, "not_2d", "a decision boundary needs a 2-D classification dataset")
    _split, scaler = trainer_datasets.prepare(
        dataset, test_fraction=spec.dataset.held_out, seed=spec.seed, standardize=spec.dataset.standardize
    )
    network = build_network(spec, dataset)
    network.set_params([array for layer in weight_arrays(data) for array in layer])
    X = np.asarray(dataset.X, dtype=np.float64)
    y = np.asarray(dataset.y).astype(np.int64)
    low, high = X.min(axis=0), X.max(axis=0)
    margin = (high - low) * 0.15 + 1e-9
    xs = np.linspace(low[0] - margin[0], high[0] + margin[0], GRID)
    ys = np.linspace(low[1] - margin[1], high[1] + margin[1], GRID)
    grid = np.column_stack([np.repeat(xs[None, :], GRID, axis=0).ravel(), np.repeat(ys, GRID)])
    inputs = grid if scaler is None else scaler.transform(grid)
    if dataset.n_classes == 2 and spec.model.type != "perceptron":  # a perceptron gives labels only
        z = network.predict_proba(inputs)[:, -1]
    else:
        z = network.predict(inputs).astype(np.float64)
    shown = np.unique(np.linspace(0, len(X) - 1, min(len(X), MAX_POINTS_SHOWN)).round().astype(np.int64))
    return jsonify(
        epoch=at,
        x=xs,
        y=ys,
        z=np.ascontiguousarray(z.reshape(GRID, GRID)),
        classes=dataset.n_classes,
        points={"x": X[shown, 0], "y": X[shown, 1], "label": y[shown]},
    )


@bp.get("/runs/<id:run_id>/export.<any(csv, json, npz):format>")
@requires("read", via="session")
def export(run_id: str, format: str) -> Response:
    """A run's epochs as CSV or JSON (as ``GET /api/runs/<id>/export``), or its latest weights as ``.npz``."""
    if format == "npz":
        with transaction(read_only=True) as s:
            epoch, data = operations.weights(s, run_id)
        return attachment(data, "application/octet-stream", f"{run_id}-epoch{epoch}.npz")
    chunks = operations.export(run_id, format)  # type: ignore[arg-type]
    return attachment(stream_with_context(chunks), operations.EXPORT_TYPES[format], f"{run_id}-epochs.{format}")


@bp.get("/sweeps/<id:sweep_id>")
@requires("read", via="session")
def sweep(sweep_id: str) -> Response:
    """A sweep's progress and its runs ranked by ``metric`` (what the sweep page polls while it is unfinished)."""
    metric = request.args.get("metric") or None
    if metric is not None and metric not in METRICS:
        raise invalid_parameter("metric", f"must be one of {', '.join(METRICS)}")
    with transaction(read_only=True) as s:
        shown = operations.get_sweep(s, sweep_id)
        body = sweeps.sweep_view(shown, operations.sweep_runs(s, sweep_id), metric or sweeps.default_metric(shown))
    return jsonify(body)
