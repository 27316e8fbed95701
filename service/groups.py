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
    curves: dict[str, Any]
    stride: int
    summary: dict[str, Spread]


def stride_for(epochs_done: Sequence[int], bound: int) -> int:
    """The least stride at which reading every run's epochs (up to its ``epochs_done``) reads at most ``bound``."""
    total = sum(max(0, done) for done in epochs_done)
    return max(1, -(-total // bound))


def _stats(axis: np.ndarray, epochs: Sequence[np.ndarray], values: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """One field's statistics at each epoch of ``axis`` (ascending) over the runs (``epochs`` and ``values``: one
    array per run, NaN for no value) that have a value there."""
    table = np.full((len(epochs), len(axis)), np.nan)
    for row, (at, value) in enumerate(zip(epochs, values)):
        table[row, np.searchsorted(axis, at)] = value
    present = ~np.isnan(table)
    count = present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(present, table, 0.0).sum(axis=0) / count
        squares = np.where(present, (table - mean) ** 2, 0.0).sum(axis=0)
        std = np.where(count > 1, np.sqrt(squares / (count - 1)), np.nan)
    return {"mean": mean, "std": std, "min": _reduce(np.fmin, table), "max": _reduce(np.fmax, table),
            "count": count.astype(np.int64)}


def _reduce(ufunc: np.ufunc, table: np.ndarray) -> np.ndarray:
    """``ufunc`` (``fmin`` or ``fmax``) down the columns of ``table``: NaN only where a column is all NaN."""
    if not len(table):
        return np.full(table.shape[1], np.nan)
    return ufunc.reduce(table, axis=0)


def group_curves(
    curves: Sequence[Mapping[str, np.ndarray]], fields: Sequence[str], max_points: int | None = None
) -> dict[str, Any]:
    """A group's curves from its runs' (``{"epoch": ints, field: floats}`` each, NaN for no value).

    Returns ``{"epoch": axis, field: {"mean", "std", "min", "max", "count"}, ...}``
    with ``axis`` the union of the runs' epochs, each statistic taken at each
    epoch over the runs with a value there, then downsampled to
    ``max_points`` epochs over each field's mean, min and max.
    """
    epochs = [curve["epoch"] for curve in curves]
    axis = np.unique(np.concatenate(epochs)) if epochs else np.empty(0, dtype=np.int64)
    stats = {field: _stats(axis, epochs, [curve[field] for curve in curves]) for field in fields}
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
) -> list[Group]:
    """``runs`` grouped over the top-level spec key ``by`` (one of :data:`GROUPINGS`), with each group's curves of
    ``fields`` and its summary; ``differ`` is :func:`~trainyard.service.comparison.compare_params`'s ``differ`` of
    the same runs (the group's ``params`` are its values there).  One read of the runs' epochs, at most
    :data:`MAX_GROUP_ROWS` of them."""
    if by not in GROUPINGS:
        raise ValueError(f"runs group over {', '.join(GROUPINGS)}, not {by!r}")
    stride = stride_for([run.epochs_done for run in runs], MAX_GROUP_ROWS)
    curves = repo.get_curves(session=session, run_ids=[run.id for run in runs], fields=fields, stride=stride)
    groups: list[Group] = []
    for members in group_runs([run.spec for run in runs], by=by):
        first = members[0]
        shown = [runs[index] for index in members]
        group_curve = group_curves([curves[run.id] for run in shown], fields, max_points)
        groups.append({
            "runs": [run.id for run in shown],
            "size": len(shown),
            "params": {path: values[first] for path, values in differ.items() if path != by},
            "values": [run.spec.get(by) for run in shown],
            "curves": group_curve,
            "stride": stride,
            "summary": {field: spread([getattr(run, field) for run in shown]) for field in SUMMARY_FIELDS},
        })
    return groups
