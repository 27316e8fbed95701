"""Comparing runs: ``GET /api/compare?runs=a,b,c[&fields=...][&max_points=K]``.

The response holds the runs (in the order asked), their parameters split
into those that differ and those all runs share, and each run's curves,
downsampled on the server so a spike stays visible::

    {"runs": [...],
     "params": {"differ": {"optimizer.lr": [0.1, 0.5]}, "same": {"dataset.name": "xor"}},
     "curves": {"<run id>": {"epoch": [1, 2, ...], "train_loss": [...], ...}}}

``fields`` may name the custom metrics of tracked runs too (``bleu``): a run
without one has null there.  Tracked and trained runs compare alike: a
tracked run's ``params`` are its spec.

Curves are columns, as charting libraries take them (and several times
smaller and faster to write than one object per epoch); ``null`` where an
epoch has no value.

With ``group=seed`` the response also has ``groups``: the runs whose
parameters are equal but for ``seed``, each group with its curves as bands
(the mean, standard deviation, min and max at each epoch over its runs that
have the epoch) and its summary as mean and standard deviation
(:mod:`trainyard.service.groups`)::

    "groups": [{"runs": ["<id>", "<id>"], "size": 2, "params": {"optimizer.lr": 0.1}, "values": [1, 2],
                "curves": {"epoch": [1, 2, ...], "train_loss": {"mean": [...], "std": [...], "min": [...],
                                                               "max": [...], "count": [2, 2, ...]}},
                "stride": 1, "summary": {"final_train_loss": {"mean": 0.1, "std": 0.02, "count": 2}, ...}}]
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from typing_extensions import NotRequired, TypedDict

from trainyard.service import operations
from trainyard.service.api.declare import declare
from trainyard.service.api.schemas import DEFAULT_COMPARE_FIELDS, CompareQuery
from trainyard.service.auth import requires
from trainyard.service.comparison import compare_params
from trainyard.service.context import transaction
from trainyard.service.documents import RunDocument, run_json
from trainyard.service.errors import invalid_parameter
from trainyard.service.groups import Group, read_groups
from trainyard.service.storage import repo

bp = Blueprint("compare", __name__, url_prefix="/api")


class Params(TypedDict):
    """The spec's dotted paths, in the spec schema's order: one value per run where they differ (null where a run
    lacks the path: ``absent`` lists those runs' positions), else the one value all share.  A path null in some runs
    and absent from the others is in neither."""

    differ: dict[str, list[Any]]
    same: dict[str, Any]
    absent: dict[str, list[int]]


class Comparison(TypedDict):
    """The runs in the order asked, their parameters, and each run's curves as columns (``epoch`` and each field);
    with ``group``, the runs' groups in the order of their first run."""

    runs: list[RunDocument]
    params: Params
    curves: dict[str, dict[str, list[float | None]]]
    groups: NotRequired[list[Group]]


@bp.get("/compare")
@requires("read")
@declare(query=CompareQuery, responses={200: Comparison, 404: "A run named in `runs` is no run."}, tags=("runs",),
         summary="Compare runs: the parameters that differ and their downsampled curves, optionally grouped over seeds")
def compare(query: CompareQuery) -> Response:
    fields = query.fields or list(DEFAULT_COMPARE_FIELDS)
    with transaction(read_only=True) as s:
        runs = operations.get_runs(s, query.runs)
        known = {*repo.EPOCH_METRICS, *(key for run in runs for key in run.metric_keys or ())}
        unknown = [name for name in fields if name not in known]
        if unknown:
            raise invalid_parameter("fields", f"no run here has the metric {', '.join(map(repr, unknown))}")
        shown = [run_json(run) for run in runs]
        params = compare_params([run["spec"] for run in shown])
        if query.group is None:
            curves = repo.get_curves(session=s, run_ids=query.runs, fields=fields, max_points=query.max_points)
            return jsonify(runs=shown, params=params, curves=curves)
        curves, groups = read_groups(s, runs, by=query.group, fields=fields, differ=params["differ"],
                                     max_points=query.max_points)
    return jsonify(runs=shown, params=params, curves=curves, groups=groups)
