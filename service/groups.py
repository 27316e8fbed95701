"""Runs grouped over seeds: runs whose parameters are equal but for ``seed``, shown as one mean curve with a band.

Used by ``GET /api/compare?group=seed`` and the dashboard's compare page.
Which runs group together is :func:`trainyard.service.comparison.group_runs`;
here are the numbers of each group:

- its curves on one epoch axis, the union of its runs' epochs: at each epoch
  and for each field, the ``mean``, ``std``, ``min`` and ``max`` over the
  runs that have a value there, and their ``count`` (runs of one group may
  have trained for different numbers of epochs, or still be training: the
  tail of a group's curve may stand for fewer runs than its head);
- its summary (the final and best metrics of :data:`SUMMARY_FIELDS`) as the
  ``mean`` and ``std`` over the runs that have one, and their ``count``.

``std`` is the sample standard deviation (``ddof=1``: a handful of seeds is
a sample), null where fewer than two runs have a value.  The statistics are
taken on the runs' stored epochs, not on downsampled curves (each run's
downsampling keeps other epochs, which would not line up); a read is bounded
by :data:`MAX_GROUP_ROWS` epochs in all, longer runs being read at every
``stride``-th epoch, and each group's curves are then downsampled to
``max_points`` like one run's (:func:`~trainyard.service.storage.repo.downsampling.downsample`,
over the mean, min and max of every field).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from trainyard.service.comparison import group_runs
from trainyard.service.storage import repo
from trainyard.service.storage.models import SUMMARY_FIELDS, Run
from trainyard.service.storage.repo.downsampling import downsample

#: What runs can be grouped over: the top-level spec key in which a group's runs may differ.
GROUPINGS = ("seed",)
#: Most epochs (rows, over all runs) one grouping reads; beyond, every ``stride``-th epoch is read.
MAX_GROUP_ROWS = 500_000


class Band(TypedDict):
    """One field of a group's curves, a value per epoch of the group's ``epoch`` axis (null where no run has one):
    the mean over the runs with a value there, their sample standard deviation (null below two runs), the least and
    the greatest value, and how many runs have one."""

    mean: list[float | None]
    std: list[float | None]
    min: list[float | None]
    max: list[float | None]
    count: list[int]


class Spread(TypedDict):
    """One summary field over a group's runs: mean and sample standard deviation (null below two runs) over the
    ``count`` runs that have a value."""

    mean: float | None
    std: float | None
    count: int


class Group(TypedDict):
    """Runs whose parameters are equal but for the grouping key: their ids (in the order asked), how many, their
    values of the parameters that differ between the compared runs (not the grouping key), the grouping key's value
    in each run, their curves (``epoch``: the group's epoch axis, and each field a :class:`Band`), the ``stride``
    of the read (only epochs numbered a multiple of it are in the curves: 1 unless the runs are long) and their
    summary."""

    runs: list[str]
    size: int
    params: dict[str, Any]
    values: list[Any]
    curves: dict[str, Band | list[int]]
    stride: int
    summary: dict[str, Spread]


def stride_for(epochs_done: Sequence[int], bound: int) -> int:
    """The least stride at which reading every run's epochs (up to its ``epochs_done``) reads at most ``bound``."""
    total = sum(max(0, done) for done in epochs_done)
    return max(1, -(-total // bound))


def _stats(size: int, row: np.ndarray, slot: np.ndarray, values: np.ndarray, dense: bool) -> dict[str, np.ndarray]:
    """One field's statistics at each of ``size`` epochs, over the values (NaN for none) of run ``row`` whose epoch
    is at ``slot``.

    ``dense``: through a runs x epochs table, fastest when the runs share
    most epochs (the usual case); else from bincounts and one sort, whose
    memory and time are those of the values, so one long run beside many
    short ones costs no more than it reads.  Either way the squared
    deviations are summed around the mean (two passes), not as a difference
    of sums of squares, which loses the digits of a small spread.
    """
    if dense:
        table = np.full((int(row.max(initial=-1)) + 1, size), np.nan)
        table[row, slot] = values
        present = ~np.isnan(table)
        count = present.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(present, table, 0.0).sum(axis=0) / count
            squares = np.where(present, (table - mean) ** 2, 0.0).sum(axis=0)
        low = np.fmin.reduce(table, axis=0) if len(table) else np.full(size, np.nan)
        high = np.fmax.reduce(table, axis=0) if len(table) else np.full(size, np.nan)
    else:
        present = ~np.isnan(values)
        slot, values = slot[present], values[present]
        count = np.bincount(slot, minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(slot, weights=values, minlength=size) / count
            squares = np.bincount(slot, weights=(values - mean[slot]) ** 2, minlength=size)
        low, high = np.full(size, np.nan), np.full(size, np.nan)
        if len(values):
            order = np.lexsort((values, slot))  # by epoch, then by value
            ranked, ordered = slot[order], values[order]
            first = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
            last = np.r_[first[1:], len(ranked)] - 1
            low[ranked[first]], high[ranked[first]] = ordered[first], ordered[last]
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.where(count > 1, np.sqrt(squares / (count - 1)), np.nan)
    return {"mean": mean, "std": std, "min": low, "max": high, "count": count.astype(np.int64)}


def group_curves(
    curves: Sequence[Mapping[str, np.ndarray]], fields: Sequence[str], max_points: int | None = None
) -> dict[str, Any]:
    """A group's curves from its runs' (``{"epoch": ints, field: floats}`` each, NaN for no value).

    Returns ``{"epoch": axis, field: {"mean", "std", "min", "max", "count"}, ...}``
    with ``axis`` the union of the runs' epochs, each statistic taken at each
    epoch over the runs with a value there, then downsampled to
    ``max_points`` epochs over each field's mean, min and max.
    """
    lengths = [len(curve["epoch"]) for curve in curves]
    row = np.repeat(np.arange(len(curves)), lengths)
    if curves:
        axis, slot = np.unique(np.concatenate([curve["epoch"] for curve in curves]), return_inverse=True)
        slot = slot.reshape(-1)
    else:
        axis, slot = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    dense = len(axis) * len(curves) <= 2 * len(slot) + 1000  # the table is at most about twice the values
    stats = {field: _stats(len(axis), row, slot, np.concatenate([curve[field] for curve in curves])
                           if curves else np.empty(0), dense) for field in fields}
    if max_points is not None and len(axis) > max_points:
        series = [stat[name] for stat in stats.values() for name in ("mean", "min", "max")]
        kept = downsample(series, len(axis), max_points)
        axis = axis[kept]
        stats = {field: {name: column[kept] for name, column in stat.items()} for field, stat in stats.items()}
    return {"epoch": axis, **stats}


def spread(values: Sequence[float | int | None]) -> Spread:
    """Mean and sample standard deviation of the values that are not None (nor NaN)."""
    present = np.array([value for value in values if value is not None], dtype=np.float64)
    present = present[~np.isnan(present)]
    count = len(present)
    return {"mean": float(present.mean()) if count else None,
            "std": float(present.std(ddof=1)) if count > 1 else None,
            "count": count}


def read_groups(
    session: Session,
    runs: Sequence[Run],
    *,
    by: str,
    fields: Sequence[str],
    differ: Mapping[str, Sequence[Any]],
    max_points: int | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], list[Group]]:
    """``runs`` grouped over the top-level spec key ``by`` (one of :data:`GROUPINGS`), and each run's own curves.

    Returns each run's curves of ``fields`` downsampled to ``max_points``
    (as :func:`~trainyard.service.storage.repo.get_curves` gives them) and
    the groups, each with its curves and summary; ``differ`` is
    :func:`~trainyard.service.comparison.compare_params`'s ``differ`` of the
    same runs (a group's ``params`` are its values there).  One read of the
    runs' epochs serves both, at most :data:`MAX_GROUP_ROWS` of them; when
    that bound needs a stride, the runs' own curves take a second read (they
    are never strided).
    """
    if by not in GROUPINGS:
        raise ValueError(f"runs group over {', '.join(GROUPINGS)}, not {by!r}")
    ids = [run.id for run in runs]
    stride = stride_for([run.epochs_done for run in runs], MAX_GROUP_ROWS)
    full = repo.get_curves(session=session, run_ids=ids, fields=fields, stride=stride)
    if stride == 1:
        curves = {run_id: _downsampled(curve, fields, max_points) for run_id, curve in full.items()}
    else:
        curves = repo.get_curves(session=session, run_ids=ids, fields=fields, max_points=max_points)
    groups: list[Group] = []
    for members in group_runs([run.spec for run in runs], by=by):
        first = members[0]
        shown = [runs[index] for index in members]
        groups.append({
            "runs": [run.id for run in shown],
            "size": len(shown),
            "params": {path: values[first] for path, values in differ.items() if path != by},
            "values": [run.spec.get(by) for run in shown],
            "curves": group_curves([full[run.id] for run in shown], fields, max_points),
            "stride": stride,
            "summary": {field: spread([getattr(run, field) for run in shown]) for field in SUMMARY_FIELDS},
        })
    return curves, groups


def _downsampled(curve: dict[str, np.ndarray], fields: Sequence[str], max_points: int | None) -> dict[str, np.ndarray]:
    """One run's curve downsampled to ``max_points`` as ``repo.get_curves`` does it (the same epochs kept)."""
    if max_points is None or len(curve["epoch"]) <= max_points:
        return curve
    kept = downsample([curve[name] for name in fields], len(curve["epoch"]), max_points)
    return {name: column[kept] for name, column in curve.items()}
