"""The built-in datasets: logic gates, seeded synthetic sets, and the packaged iris and digits.

Every built-in is returned by :func:`load_builtin` as a :class:`Dataset`;
:func:`builtin_info` describes them in a JSON-serialisable form.

========  ==============  ========  =======  ==========  =====================================
name      task            features  classes  n_samples   what it is
========  ==============  ========  =======  ==========  =====================================
or        classification  2         2        4 (fixed)   truth table of logical OR
and       classification  2         2        4 (fixed)   truth table of logical AND
xor       classification  2         2        4 (fixed)   truth table of logical XOR
moons     classification  2         2        200         two interleaving half circles
circles   classification  2         2        200         two concentric circles (radii 1, 0.5)
spirals   classification  2         3        300         three interleaved spiral arms
sine      regression      1         --       200         y = sin(x) + noise, x in [-pi, pi]
iris      classification  4         3        150 (fixed) Fisher's iris flowers (real data)
digits    classification  64        10       1797 (fix.) 8x8 handwritten digits (real data)
========  ==============  ========  =======  ==========  =====================================

The truth tables use ``X = [[0, 0], [0, 1], [1, 0], [1, 1]]``.  The synthetic
sets (moons, circles, spirals, sine) are drawn from
``numpy.random.default_rng(seed)``: the same ``seed`` gives identical arrays,
``noise`` is the standard deviation of Gaussian noise (on the points for
moons/circles, on the spiral angle in radians for spirals, on the target for
sine), classes are balanced (sizes differ by at most one) and rows are shuffled.
``iris`` and ``digits`` are read from the CSV files shipped in
``trainer/data`` (see ``trainer/data/README.md`` for their sources and
licences) and parsed once per process.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
import numbers
from importlib.resources import files
from typing import Any

import numpy as np

from .csvfile import load_csv
from .dataset import MAX_SAMPLES, Dataset, DatasetError, _check_seed

__all__ = ["BUILTIN_NAMES", "MAX_NOISE", "MIN_SAMPLES", "builtin_info", "load_builtin"]

MIN_SAMPLES = 4
"""Smallest ``n_samples`` accepted by :func:`load_builtin`."""
MAX_NOISE = 10.0
"""Largest ``noise`` accepted by :func:`load_builtin`."""

BUILTIN_NAMES = ("or", "and", "xor", "moons", "circles", "spirals", "sine", "iris", "digits")

_TRUTH_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
_TRUTH_Y = {"or": (0, 1, 1, 1), "and": (0, 0, 0, 1), "xor": (0, 1, 1, 0)}

_IRIS_SOURCE = (
    "R. A. Fisher (1936), via the UCI Machine Learning Repository (CC BY 4.0); "
    "copy taken from scikit-learn's bundled data (BSD-3-Clause)"
)
_DIGITS_SOURCE = (
    "UCI 'Optical Recognition of Handwritten Digits' test set, E. Alpaydin & C. Kaynak "
    "(CC BY 4.0); copy taken from scikit-learn's bundled data (BSD-3-Clause)"
)

# name -> static description; n_samples/noise are the defaults (None: not applicable)
_BUILTINS: dict[str, dict[str, Any]] = {
    "or": dict(task="classification", n_features=2, n_classes=2, n_samples=None, noise=None,
               fixed_n_samples=4, description="Truth table of logical OR (4 rows).",
               source=None, licence=None),
    "and": dict(task="classification", n_features=2, n_classes=2, n_samples=None, noise=None,
                fixed_n_samples=4, description="Truth table of logical AND (4 rows).",
                source=None, licence=None),
    "xor": dict(task="classification", n_features=2, n_classes=2, n_samples=None, noise=None,
                fixed_n_samples=4,
                description="Truth table of logical XOR (4 rows); not linearly separable.",
                source=None, licence=None),
    "moons": dict(task="classification", n_features=2, n_classes=2, n_samples=200, noise=0.1,
                  fixed_n_samples=None,
                  description="Two interleaving half circles; Gaussian noise on the points.",
                  source=None, licence=None),
    "circles": dict(task="classification", n_features=2, n_classes=2, n_samples=200, noise=0.05,
                    fixed_n_samples=None,
                    description="Two concentric circles (radii 1 and 0.5); Gaussian noise on the points.",
                    source=None, licence=None),
    "spirals": dict(task="classification", n_features=2, n_classes=3, n_samples=300, noise=0.2,
                    fixed_n_samples=None,
                    description="Three interleaved spiral arms; Gaussian noise on the angle (radians).",
                    source=None, licence=None),
    "sine": dict(task="regression", n_features=1, n_classes=0, n_samples=200, noise=0.1,
                 fixed_n_samples=None,
                 description="Regression y = sin(x) + Gaussian noise, x uniform in [-pi, pi].",
                 source=None, licence=None),
    "iris": dict(task="classification", n_features=4, n_classes=3, n_samples=None, noise=None,
                 fixed_n_samples=150,
                 description="Fisher's iris flowers: 4 measurements (cm), 3 species, 50 each.",
                 source=_IRIS_SOURCE, licence="CC BY 4.0"),
    "digits": dict(task="classification", n_features=64, n_classes=10, n_samples=None, noise=None,
                   fixed_n_samples=1797,
                   description="8x8 images of handwritten digits, pixel values 0..16, 10 classes.",
                   source=_DIGITS_SOURCE, licence="CC BY 4.0"),
}


def builtin_info() -> list[dict[str, Any]]:
    """Describe the built-in datasets.

    Returns
    -------
    list of dict
        One JSON-serialisable dict per name in :data:`BUILTIN_NAMES`, in that
        order, with keys ``name``, ``task``, ``n_features``, ``n_classes`` (0
        for regression), ``n_outputs``, ``description``, ``n_samples`` and
        ``noise`` (defaults; None where not applicable),
        ``n_samples_applies`` and ``noise_applies`` (bool),
        ``fixed_n_samples`` (row count of fixed-size sets, else None),
        ``source`` and ``licence`` (None for generated sets).
    """
    out = []
    for name in BUILTIN_NAMES:
        info = _BUILTINS[name]
        n_classes = info["n_classes"]
        out.append({
            "name": name,
            "task": info["task"],
            "n_features": info["n_features"],
            "n_classes": n_classes,
            "n_outputs": 1 if n_classes in (0, 2) else n_classes,
            "description": info["description"],
            "n_samples": info["n_samples"],
            "noise": info["noise"],
            "n_samples_applies": info["n_samples"] is not None,
            "noise_applies": info["noise"] is not None,
            "fixed_n_samples": info["fixed_n_samples"],
            "source": info["source"],
            "licence": info["licence"],
        })
    return out


def _check_n_samples(n_samples: Any) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral):
        raise DatasetError(f"n_samples must be an integer, got {n_samples!r}")
    n = int(n_samples)
    if not MIN_SAMPLES <= n <= MAX_SAMPLES:
        raise DatasetError(f"n_samples must be between {MIN_SAMPLES} and {MAX_SAMPLES}, got {n}")
    return n


def _check_noise(noise: Any) -> float:
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real):
        raise DatasetError(f"noise must be a number, got {noise!r}")
    value = float(noise)
    if not math.isfinite(value) or not 0.0 <= value <= MAX_NOISE:
        raise DatasetError(f"noise must be a finite number between 0 and {MAX_NOISE:g}, got {noise!r}")
    return value


def _class_sizes(n: int, k: int) -> list[int]:
    """Split ``n`` into ``k`` sizes differing by at most one (larger first)."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _labels(sizes: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)


def _shuffled(rng: np.random.Generator, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(X.shape[0])
    return X[perm], y[perm]


def _make_moons(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n0, n1 = _class_sizes(n, 2)
    t0 = rng.uniform(0.0, np.pi, n0)
    t1 = rng.uniform(0.0, np.pi, n1)
    upper = np.column_stack([np.cos(t0), np.sin(t0)])
    lower = np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)])
    X = np.vstack([upper, lower]) + rng.normal(0.0, 1.0, (n, 2)) * noise
    return _shuffled(rng, X, _labels([n0, n1]))


def _make_circles(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n0, n1 = _class_sizes(n, 2)
    t0 = rng.uniform(0.0, 2.0 * np.pi, n0)
    t1 = rng.uniform(0.0, 2.0 * np.pi, n1)
    outer = np.column_stack([np.cos(t0), np.sin(t0)])
    inner = 0.5 * np.column_stack([np.cos(t1), np.sin(t1)])
    X = np.vstack([outer, inner]) + rng.normal(0.0, 1.0, (n, 2)) * noise
    return _shuffled(rng, X, _labels([n0, n1]))


def _make_spirals(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # Arm j: radius r in [0.1, 1], angle 2*pi*j/3 + 1.75*pi*r (+ noise on the angle).
    sizes = _class_sizes(n, 3)
    parts = []
    for j, size in enumerate(sizes):
        r = rng.uniform(0.1, 1.0, size)
        angle = 2.0 * np.pi * j / 3.0 + 1.75 * np.pi * r + rng.normal(0.0, 1.0, size) * noise
        parts.append(np.column_stack([r * np.cos(angle), r * np.sin(angle)]))
    return _shuffled(rng, np.vstack(parts), _labels(sizes))


def _make_sine(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-np.pi, np.pi, n)
    y = np.sin(x) + rng.normal(0.0, 1.0, n) * noise
    return x.reshape(-1, 1), y.reshape(-1, 1)


_GENERATORS = {
    "moons": _make_moons,
    "circles": _make_circles,
    "spirals": _make_spirals,
    "sine": _make_sine,
}


def _read_package_file(filename: str) -> bytes:
    resource = files("trainyard.trainer") / "data" / filename
    try:
        data = resource.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read packaged data file trainer/data/{filename}: {exc}") from exc
    if filename.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DatasetError(f"packaged data file trainer/data/{filename} is corrupt: {exc}") from exc
    return data


@functools.lru_cache(maxsize=None)
def _load_packaged(name: str) -> Dataset:
    """Parse a packaged real dataset once; the cached arrays are read-only."""
    filename, shape, n_classes = {
        "iris": ("iris.csv", (150, 4), 3),
        "digits": ("digits.csv.gz", (1797, 64), 10),
    }[name]
    ds = load_csv(_read_package_file(filename), task="classification", name=name)
    if ds.X.shape != shape or ds.n_classes != n_classes:
        raise DatasetError(
            f"packaged data file trainer/data/{filename} has shape {ds.X.shape} and "
            f"{ds.n_classes} classes; expected {shape} and {n_classes}"
        )
    ds.X.flags.writeable = False
    ds.y.flags.writeable = False
    return ds


def load_builtin(
    name: str, *, n_samples: int | None = None, noise: float | None = None, seed: int = 0
) -> Dataset:
    """Build or load a built-in dataset.

    Parameters
    ----------
    name : str
        One of :data:`BUILTIN_NAMES`.
    n_samples : int, optional
        Number of rows, ``MIN_SAMPLES .. MAX_SAMPLES`` (4 .. 1,000,000); only
        for moons, circles, spirals and sine (default 200, 200, 300, 200).
    noise : float, optional
        Standard deviation of the Gaussian noise, 0 .. 10; only for moons,
        circles, spirals and sine (default 0.1, 0.05, 0.2, 0.1).
    seed : int, default 0
        Seed of ``numpy.random.default_rng`` for the generated sets (ignored
        by the fixed ones).

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, n_features); ``y`` of shape (n_samples,)
        for classification, (n_samples, 1) for sine.  The arrays are fresh
        copies the caller may modify.

    Raises
    ------
    DatasetError
        Unknown name, invalid ``n_samples``/``noise``/``seed``, or
        ``n_samples``/``noise`` passed to a dataset they do not apply to.
    """
    if not isinstance(name, str) or name not in _BUILTINS:
        raise DatasetError(
            f"unknown built-in dataset {name!r}; valid names: {', '.join(BUILTIN_NAMES)}"
        )
    info = _BUILTINS[name]
    seed = _check_seed(seed)
    if info["n_samples"] is None and n_samples is not None:
        raise DatasetError(f"n_samples does not apply to the fixed-size dataset {name!r}")
    if info["noise"] is None and noise is not None:
        raise DatasetError(f"noise does not apply to the dataset {name!r}")

    if name in _TRUTH_Y:
        return Dataset(
            X=_TRUTH_X.copy(),
            y=np.array(_TRUTH_Y[name], dtype=np.int64),
            task="classification",
            feature_names=("x1", "x2"),
            classes=("0", "1"),
            name=name,
        )
    if name in _GENERATORS:
        n = _check_n_samples(info["n_samples"] if n_samples is None else n_samples)
        sigma = _check_noise(info["noise"] if noise is None else noise)
        X, y = _GENERATORS[name](n, sigma, np.random.default_rng(seed))
        if name == "sine":
            return Dataset(X=X, y=y, task="regression", feature_names=("x",), name=name)
        return Dataset(
            X=X,
            y=y,
            task="classification",
            feature_names=("x1", "x2"),
            classes=tuple(str(c) for c in range(info["n_classes"])),
            name=name,
        )
    cached = _load_packaged(name)
    return dataclasses.replace(cached, X=cached.X.copy(), y=cached.y.copy())
