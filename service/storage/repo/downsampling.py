"""Which epochs a chart keeps when a run has more than it can draw: pure numpy, no database."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def downsample(series: Sequence[np.ndarray], n: int, max_points: int) -> np.ndarray:
    """Indices (ascending) of the rows to keep out of ``n``, by the rule of :func:`get_epochs`.

    Parameters
    ----------
    series : sequence of ndarray of shape (n,)
        The numeric fields, NaN where null.
    n : int
        Number of rows.
    max_points : int
        Most rows to keep, at least 2.
    """
    if n <= max_points:
        return np.arange(n)
    inner = [np.asarray(values, dtype=np.float64)[1 : n - 1] for values in series]
    interior = n - 2
    buckets = min(interior, max(1, (max_points - 2) // (2 * len(inner) or 1)))
    kept = _bucket_extremes(inner, n, buckets)
    if len(kept) > max_points:  # even one bucket is too many
        return _bucket_extremes(inner, n, 0)
    if len(kept) < max_points:
        more = min(interior, buckets * (max_points - 2) // max(1, len(kept) - 2))
        if more > buckets:
            trial = _bucket_extremes(inner, n, more)
            if len(trial) <= max_points:
                kept = trial
    return kept


def _bucket_extremes(inner: Sequence[np.ndarray], n: int, buckets: int) -> np.ndarray:
    """The first and last row, plus each bucket's first argmin and argmax of every series (its first row if none).

    ``inner`` holds the series without their first and last row; every pass is O(n), with no sort.
    """
    keep = np.zeros(n, dtype=bool)
    keep[[0, n - 1]] = True
    if buckets:
        m = n - 2
        bucket_of = (np.arange(m) * buckets) // m  # non-decreasing; no bucket is empty while buckets <= m
        starts = np.flatnonzero(np.r_[True, bucket_of[1:] != bucket_of[:-1]])
        if not inner:
            keep[starts + 1] = True
        for values in inner:
            for reduce in (np.fmin, np.fmax):
                extreme = reduce.reduceat(values, starts)  # NaN only for a bucket with no value at all
                hits = np.flatnonzero(values == extreme[bucket_of])
                if hits.size:
                    hit_buckets = bucket_of[hits]
                    keep[hits[np.r_[True, hit_buckets[1:] != hit_buckets[:-1]]] + 1] = True
    return np.flatnonzero(keep)
