"""Which epochs a chart keeps when a run has more than it can draw: pure numpy, no database."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Most times :func:`downsample` refines its number of buckets (each pass is O(n) per series).
REFINEMENTS = 3


def downsample(series: Sequence[np.ndarray], n: int, max_points: int) -> np.ndarray:
    """Indices (ascending) of the rows to keep out of ``n``, by the rule of :func:`get_epochs`: ``min(n, max_points)``
    of them.

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
        kept, buckets = _bucket_extremes(inner, n, 0), 0
    for _ in range(REFINEMENTS):  # more buckets while their extremes fit: a bucket's minimum is often its maximum
        more = min(interior, buckets * (max_points - 2) // max(1, len(kept) - 2))
        if len(kept) >= max_points or more <= buckets:
            break
        trial = _bucket_extremes(inner, n, more)
        if len(trial) > max_points:
            break
        kept, buckets = trial, more
    return _top_up(kept, n, max_points)


def _bucket_extremes(inner: Sequence[np.ndarray], n: int, buckets: int) -> np.ndarray:
    """The first and last row, plus each bucket's first argmin and argmax of every series, and the first row of a
    bucket where no series has a value.

    ``inner`` holds the series without their first and last row; every pass is O(n), with no sort.
    """
    keep = np.zeros(n, dtype=bool)
    keep[[0, n - 1]] = True
    if buckets:
        m = n - 2
        bucket_of = (np.arange(m) * buckets) // m  # non-decreasing; no bucket is empty while buckets <= m
        starts = np.flatnonzero(np.r_[True, bucket_of[1:] != bucket_of[:-1]])
        valued = np.zeros(len(starts), dtype=bool)
        for values in inner:
            for reduce in (np.fmin, np.fmax):
                extreme = reduce.reduceat(values, starts)  # NaN only for a bucket with no value at all
                hits = np.flatnonzero(values == extreme[bucket_of])
                if hits.size:
                    hit_buckets = bucket_of[hits]
                    keep[hits[np.r_[True, hit_buckets[1:] != hit_buckets[:-1]]] + 1] = True
                    valued[hit_buckets] = True
        keep[starts[~valued] + 1] = True
    return np.flatnonzero(keep)


def _top_up(kept: np.ndarray, n: int, max_points: int) -> np.ndarray:
    """``kept`` and, evenly spread among the other rows, as many more as make ``max_points``."""
    need = max_points - len(kept)
    if need <= 0:
        return kept
    rest = np.ones(n, dtype=bool)
    rest[kept] = False
    others = np.flatnonzero(rest)
    chosen = others[np.linspace(0, len(others) - 1, need).round().astype(np.int64)]
    return np.union1d(kept, chosen)
