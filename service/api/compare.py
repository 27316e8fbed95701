"""Comparing runs: ``GET /api/compare?runs=a,b,c[&fields=...][&max_points=K]``.

The response holds the runs (in the order asked), their parameters split
into those that differ and those all runs share, and each run's curves,
downsampled on the server so a spike stays visible::

    {"runs": [...],
     "params": {"differ": {"optimizer.lr": [0.1, 0.5]}, "same": {"dataset.name": "xor"}},
     "curves": {"<run id>": {"epoch": [1, 2, ...], "train_loss": [...], ...}}}

Curves are columns, as charting libraries take them (and several times
smaller and faster to write than one object per epoch); ``null`` where an
epoch has no value.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from trainyard.service import operations
from trainyard.service.api.requests import int_param, list_param, str_param
from trainyard.service.api.runs import MAX_POINTS
from trainyard.service.auth import requires
from trainyard.service.comparison import MAX_RUNS, compare_params
from trainyard.service.context import transaction
from trainyard.service.documents import run_json
from trainyard.service.errors import invalid_parameter
from trainyard.service.storage import repo

bp = Blueprint("compare", __name__, url_prefix="/api")

#: The curves returned when ``fields`` is not given.
DEFAULT_FIELDS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")

#: Points per curve when ``max_points`` is not given.
DEFAULT_MAX_POINTS = 1000

def _run_ids() -> list[str]:
    """The ``runs`` parameter: 1 to :data:`MAX_RUNS` distinct ids; 400 naming ``runs`` otherwise."""
    value = str_param("runs")
    if value is None:
        raise invalid_parameter("runs", "is required: a comma-separated list of run ids")
    ids = value.split(",")
    if "" in ids:
        raise invalid_parameter("runs", "must be run ids separated by single commas, without empty items")
    if len(ids) > MAX_RUNS:
        raise invalid_parameter("runs", f"at most {MAX_RUNS} runs can be compared, not {len(ids)}")
    repeated = sorted({run_id for run_id in ids if ids.count(run_id) > 1})
    if repeated:
        raise invalid_parameter("runs", f"each run may be named once; repeated: {', '.join(repeated)}")
    return ids


@bp.get("/compare")
@requires("read")
def compare() -> Response:
    run_ids = _run_ids()
    fields = list_param("fields", repo.EPOCH_METRICS) or list(DEFAULT_FIELDS)
    max_points = int_param("max_points", minimum=2, maximum=MAX_POINTS) or DEFAULT_MAX_POINTS
    with transaction() as s:
        runs = operations.get_runs(s, run_ids)
        curves = repo.get_curves(session=s, run_ids=run_ids, fields=fields, max_points=max_points)
        shown = [run_json(run) for run in runs]
    return jsonify(runs=shown, params=compare_params([run["spec"] for run in shown]), curves=curves)
