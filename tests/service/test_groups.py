"""A group's statistics (:mod:`trainyard.service.groups`), pure numpy: checked against numpy's nan-aware reductions
over a dense runs x epochs table, on runs of different lengths with gaps and nulls."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from trainyard.service import groups
from trainyard.service.groups import group_curves, spread, stride_for


def _runs(rng: np.random.Generator, n: int, last: int) -> list[dict[str, np.ndarray]]:
    runs = []
    for _ in range(n):
        length = int(rng.integers(1, last))
        epochs = np.sort(rng.choice(np.arange(1, last + 1), length, replace=False))
        values = rng.normal(size=length) * 10 + 100
        values[rng.random(length) < 0.2] = np.nan
        runs.append({"epoch": epochs, "a": values, "b": -values})
    return runs


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "sparse"])
@pytest.mark.parametrize("seed", range(5))
def test_statistics_are_numpys_over_the_runs_with_each_epoch(seed, dense, monkeypatch):
    """Both ways of computing them: a runs x epochs table, or bincounts and a sort."""
    stats = groups._stats
    monkeypatch.setattr(groups, "_stats", lambda size, row, slot, values, _dense: stats(size, row, slot, values, dense))
    rng = np.random.default_rng(seed)
    runs = _runs(rng, int(rng.integers(1, 7)), 30)
    curves = group_curves(runs, ["a", "b"])

    axis = np.unique(np.concatenate([run["epoch"] for run in runs]))
    assert curves["epoch"].tolist() == axis.tolist()
    for field in ("a", "b"):
        table = np.full((len(runs), len(axis)), np.nan)
        for row, run in enumerate(runs):
            table[row, np.searchsorted(axis, run["epoch"])] = run[field]
        count = (~np.isnan(table)).sum(axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            expected = {"mean": np.nanmean(table, axis=0), "min": np.nanmin(table, axis=0),
                        "max": np.nanmax(table, axis=0),
                        "std": np.where(count > 1, np.nanstd(table, axis=0, ddof=1), np.nan)}
        stats = curves[field]
        assert stats["count"].tolist() == count.tolist()
        for name, column in expected.items():
            np.testing.assert_allclose(stats[name], column, rtol=1e-12, err_msg=name)


def test_a_small_spread_around_a_large_mean_keeps_its_digits():
    runs = [{"epoch": np.array([1]), "a": np.array([1e9 + d])} for d in (0.1, 0.2, 0.3)]
    assert group_curves(runs, ["a"])["a"]["std"][0] == pytest.approx(0.1, rel=1e-6)


def test_one_long_run_beside_many_short_ones():
    """The sparse way (no runs x epochs table): the long run's tail is a group of one."""
    runs = [{"epoch": np.arange(1, 100_001), "a": np.full(100_000, 2.0)}]
    runs += [{"epoch": np.array([1, 2]), "a": np.array([0.0, 1.0])} for _ in range(200)]
    curves = group_curves(runs, ["a"])
    assert curves["a"]["count"][:3].tolist() == [201, 201, 1]
    assert curves["a"]["mean"][0] == pytest.approx(2 / 201) and curves["a"]["min"][0] == 0.0
    assert curves["a"]["max"][1] == 2.0 and np.isnan(curves["a"]["std"][2]) and curves["a"]["mean"][-1] == 2.0


def test_no_runs_and_runs_without_epochs_give_empty_curves():
    empty = {"epoch": np.empty(0, dtype=np.int64), "a": np.empty(0)}
    for runs in ([], [empty, empty]):
        curves = group_curves(runs, ["a"])
        assert curves["epoch"].tolist() == [] and all(len(column) == 0 for column in curves["a"].values())


def test_downsampling_keeps_the_ends_and_a_spike_of_the_max():
    runs = [{"epoch": np.arange(1, 1001), "a": np.linspace(1, 0, 1000)} for _ in range(3)]
    runs[1]["a"] = runs[1]["a"].copy()
    runs[1]["a"][500] = 9.0
    curves = group_curves(runs, ["a"], max_points=50)

    assert len(curves["epoch"]) == 50 and curves["epoch"][0] == 1 and curves["epoch"][-1] == 1000
    assert 501 in curves["epoch"].tolist() and curves["a"]["max"].max() == 9.0
    assert {len(column) for column in curves["a"].values()} == {50}


def test_spread_and_stride():
    assert spread([1, None, 3, float("nan")]) == {"mean": 2.0, "std": pytest.approx(np.sqrt(2)), "count": 2}
    assert spread([5]) == {"mean": 5.0, "std": None, "count": 1}
    assert spread([None]) == {"mean": None, "std": None, "count": 0}
    assert stride_for([100, 100], 200) == 1 and stride_for([100, 101], 200) == 2 and stride_for([], 10) == 1
