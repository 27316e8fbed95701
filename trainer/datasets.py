"""Datasets for the trainer: built-in toy/real datasets, CSV loading, splitting, scaling.

Built-in datasets
-----------------
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

Besides the built-ins, :func:`load_csv` reads a user CSV file,
:func:`train_val_split` makes a seeded (stratified for classification)
train/validation split, and :class:`Standardizer` / :func:`prepare`
standardise features with training-set statistics only.

This module depends only on numpy and the Python standard library.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import gzip
import io
import math
import numbers
import os
from dataclasses import dataclass
from importlib.resources import files
from typing import IO, Any, Literal, Union

import numpy as np

__all__ = [
    "AUTO_MAX_CLASSES",
    "BUILTIN_NAMES",
    "MAX_CLASSES",
    "MAX_FEATURES",
    "MAX_SAMPLES",
    "Dataset",
    "DatasetError",
    "Split",
    "Standardizer",
    "builtin_info",
    "load_builtin",
    "load_csv",
    "prepare",
    "train_val_split",
]

MAX_SAMPLES = 1_000_000
"""Largest number of rows (samples) accepted anywhere in this module."""
MIN_SAMPLES = 4
"""Smallest ``n_samples`` accepted by :func:`load_builtin`."""
MAX_FEATURES = 10_000
"""Largest number of feature columns accepted by :func:`load_csv`."""
MAX_CLASSES = 1_000
"""Largest number of distinct classes of a classification target."""
AUTO_MAX_CLASSES = 50
"""``task="auto"``: an all-integer target with at most this many distinct values is a class label."""
MAX_NOISE = 10.0
"""Largest ``noise`` accepted by :func:`load_builtin`."""

Task = Literal["classification", "regression"]

BUILTIN_NAMES = ("or", "and", "xor", "moons", "circles", "spirals", "sine", "iris", "digits")


class DatasetError(ValueError):
    """A dataset cannot be built or read; the message says what and where (line/column for CSV)."""


# ---------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dataset:
    """A table of samples with its targets and metadata.

    Construction validates and normalises the arrays: ``X`` becomes a
    C-contiguous float64 array; a classification ``y`` becomes int64; a
    regression ``y`` becomes a 2-D float64 array (a 1-D ``y`` is reshaped to
    ``(n_samples, 1)``).  Inconsistent input raises :class:`DatasetError`.

    Attributes
    ----------
    X : numpy.ndarray, shape (n_samples, n_features), float64, C-contiguous
        Features; all finite.
    y : numpy.ndarray
        Classification: shape (n_samples,), int64, values in
        ``0 .. n_classes - 1``.  Regression: shape (n_samples, n_targets),
        float64, all finite.
    task : {"classification", "regression"}
    feature_names : tuple of str, length n_features
    classes : tuple of str
        Classification: the original label of each class index (at least 2).
        Regression: ``()``.
    name : str
        A display name ("" if unknown).

    Notes
    -----
    Equality and hashing are by identity (arrays do not compare as values).
    """

    X: np.ndarray
    y: np.ndarray
    task: Task
    feature_names: tuple[str, ...]
    classes: tuple[str, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        if self.task not in ("classification", "regression"):
            raise DatasetError(f"task must be 'classification' or 'regression', not {self.task!r}")
        try:
            X = np.ascontiguousarray(self.X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"X cannot be converted to a float64 array: {exc}") from exc
        if X.ndim != 2:
            raise DatasetError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
        n = X.shape[0]
        if not np.isfinite(X).all():
            raise DatasetError("X contains NaN or infinite values")
        feature_names = tuple(str(f) for f in self.feature_names)
        if len(feature_names) != X.shape[1]:
            raise DatasetError(
                f"{len(feature_names)} feature names given for {X.shape[1]} feature columns"
            )
        classes = tuple(str(c) for c in self.classes)
        y_in = np.asarray(self.y)
        if self.task == "classification":
            if len(classes) < 2:
                raise DatasetError(f"a classification dataset needs at least 2 classes, got {len(classes)}")
            if len(set(classes)) != len(classes):
                raise DatasetError(f"class names must be distinct, got {classes}")
            if y_in.dtype.kind not in "iu" and not (y_in.size == 0 and y_in.dtype.kind in "fb"):
                raise DatasetError(f"classification y must hold integer class indices, got dtype {y_in.dtype}")
            y = np.ascontiguousarray(y_in, dtype=np.int64)
            if y.shape != (n,):
                raise DatasetError(f"classification y must have shape ({n},), got {y.shape}")
            if n and (y.min() < 0 or y.max() >= len(classes)):
                raise DatasetError(
                    f"class indices must be in 0..{len(classes) - 1}, got {int(y.min())}..{int(y.max())}"
                )
        else:
            if classes:
                raise DatasetError("a regression dataset has no classes; pass classes=()")
            try:
                y = np.ascontiguousarray(y_in, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise DatasetError(f"regression y cannot be converted to float64: {exc}") from exc
            if y.ndim == 1:
                y = y.reshape(-1, 1)
            if y.ndim != 2 or y.shape[0] != n or y.shape[1] < 1:
                raise DatasetError(f"regression y must have shape ({n}, n_targets), got {y_in.shape}")
            if not np.isfinite(y).all():
                raise DatasetError("y contains NaN or infinite values")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "feature_names", feature_names)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "name", str(self.name))

    @property
    def n_samples(self) -> int:
        """Number of rows."""
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return int(self.X.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes (0 for regression)."""
        return len(self.classes)

    @property
    def n_outputs(self) -> int:
        """Width of the network output: 1 for binary classification, n_classes for more, n_targets for regression."""
        if self.task == "regression":
            return int(self.y.shape[1])
        return 1 if self.n_classes == 2 else self.n_classes

    def subset(self, index: Any) -> Dataset:
        """The rows picked by ``index``, with the same metadata.

        Parameters
        ----------
        index : array_like, shape (k,) of int, or shape (n_samples,) of bool
            Row indices (numpy semantics, repeats allowed) or a boolean mask.

        Returns
        -------
        Dataset
            A new dataset with copied arrays of ``k`` rows.
        """
        idx = np.asarray(index)
        if idx.ndim != 1:
            raise DatasetError(f"subset index must be 1-D, got shape {idx.shape}")
        if idx.size == 0:
            idx = idx.astype(np.intp)
        if idx.dtype.kind == "b":
            if idx.shape[0] != self.n_samples:
                raise DatasetError(f"boolean mask has {idx.shape[0]} entries for {self.n_samples} rows")
        elif idx.dtype.kind not in "iu":
            raise DatasetError(f"subset index must be integers or a boolean mask, got dtype {idx.dtype}")
        else:
            n = self.n_samples
            if idx.size and (idx.min() < -n or idx.max() >= n):
                raise DatasetError(f"subset index out of range for {n} rows")
        return dataclasses.replace(self, X=self.X[idx], y=self.y[idx])


# ---------------------------------------------------------------------------
# Built-in datasets
# ---------------------------------------------------------------------------

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


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise DatasetError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


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


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------

CsvSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[str], IO[bytes]]

_MAX_EXACT_INT = 2.0**53


def _number(cell: str) -> float | None:
    """The value of a stripped numeric cell (may be nan/inf), or None if not a number."""
    if not cell or "_" in cell or not cell.isascii():
        return None
    try:
        return float(cell)
    except ValueError:
        return None


def _bad_feature(cell: str, where: str, line: int, column: str) -> DatasetError:
    at = f"CSV {where}: line {line}, column {column!r}"
    if cell == "":
        return DatasetError(f"{at}: empty cell")
    if _number(cell) is not None:  # parsed, so it is NaN or infinite
        return DatasetError(f"{at}: {cell!r} is not a finite number (NaN/inf are refused)")
    return DatasetError(f"{at}: {cell!r} is not a number")


def _read_source(source: Any) -> tuple[str, str, str]:
    """Return (text, where, default name) for a CSV source."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        where = f"file {path!r}"
        try:
            with open(path, "rb") as fh:
                data: Any = fh.read()
        except OSError as exc:
            raise DatasetError(f"cannot read CSV {where}: {exc.strerror or exc}") from exc
        default_name = os.path.splitext(os.path.basename(path))[0]
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data, where, default_name = bytes(source), "data", ""
    elif hasattr(source, "read"):
        where = "stream"
        file_name = getattr(source, "name", None)
        default_name = ""
        if isinstance(file_name, str):
            where = f"file {file_name!r}"
            default_name = os.path.splitext(os.path.basename(file_name))[0]
        try:
            data = source.read()
        except UnicodeDecodeError as exc:
            raise DatasetError(f"CSV {where} is not valid UTF-8 text: {exc}") from exc
        except OSError as exc:
            raise DatasetError(f"cannot read CSV {where}: {exc}") from exc
    else:
        raise DatasetError(
            f"CSV source must be a path, bytes or a file object, not {type(source).__name__}"
        )
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise DatasetError(
                f"CSV {where} is not valid UTF-8: undecodable byte 0x{data[exc.start]:02x} "
                f"at line {line} (byte offset {exc.start})"
            ) from exc
    elif isinstance(data, str):
        text = data[1:] if data.startswith("\ufeff") else data
    else:
        raise DatasetError(f"reading the CSV {where} returned {type(data).__name__}, not text or bytes")
    return text, where, default_name


def load_csv(
    source: CsvSource,
    *,
    target: str | None = None,
    task: Literal["auto", "classification", "regression"] = "auto",
    name: str = "",
) -> Dataset:
    """Read a dataset from a CSV table with a header row.

    Parameters
    ----------
    source : str, os.PathLike, bytes or file object
        A path to a file (a ``str`` is always a path, never CSV text), the
        file's bytes, or an open text or binary file.  Bytes must be UTF-8; a
        UTF-8 byte-order mark is accepted.
    target : str, optional
        Name of the target column; default: the last column.  Every other
        column is a feature, in header order.
    task : {"auto", "classification", "regression"}, default "auto"
        With ``"auto"`` the target is a **regression** target if every
        target cell is a number and either some value is not an integer or
        there are more than :data:`AUTO_MAX_CLASSES` (50) distinct values;
        otherwise (some cell is not a number, or all cells are integers --
        ``"3"`` and ``"3.0"`` alike -- with at most 50 distinct values) it is
        a **classification** target.
    name : str, optional
        Dataset name; default: the file's stem for paths/named files, else "".

    Returns
    -------
    Dataset
        ``X`` float64 of shape (n_rows, n_columns - 1).  Classification:
        ``classes`` are the distinct target labels sorted numerically if all
        are numbers (named canonically, e.g. ``"3"`` for ``3.0``) else as
        strings (stripped of surrounding whitespace), and ``y`` (int64,
        shape (n_rows,)) indexes them.  Regression: ``y`` float64 of shape
        (n_rows, 1).

    Raises
    ------
    DatasetError
        With the line (1-based, as in a text editor) and column name where it
        applies: empty input or no data rows; empty or duplicate column
        names; fewer than 2 columns; more than :data:`MAX_FEATURES` feature
        columns or :data:`MAX_SAMPLES` data rows; unknown ``target``; a row
        whose cell count differs from the header; an empty, non-numeric, NaN
        or infinite feature cell; an empty or NaN/inf target cell; a
        non-numeric regression target; a classification target with fewer
        than 2 or more than :data:`MAX_CLASSES` classes; bytes that are not
        UTF-8; malformed CSV.

    Notes
    -----
    Cells may carry surrounding whitespace.  Rows whose cells are all blank
    (e.g. an empty line) are skipped.  Numbers are decimal ASCII literals as
    accepted by ``float`` (e.g. ``-1``, ``2.5``, ``1e-3``), without
    underscores.
    """
    if task not in ("auto", "classification", "regression"):
        raise DatasetError(f"task must be 'auto', 'classification' or 'regression', not {task!r}")
    if target is not None and not isinstance(target, str):
        raise DatasetError(f"target must be a column name (str), not {target!r}")
    text, where, default_name = _read_source(source)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, skipinitialspace=True)

    def next_row() -> list[str] | None:
        try:
            for row in reader:
                if "".join(row).strip():  # skip rows whose cells are all blank
                    return row
            return None
        except csv.Error as exc:
            raise DatasetError(f"CSV {where}, line {max(reader.line_num, 1)}: malformed CSV: {exc}") from exc

    header = next_row()
    if header is None:
        raise DatasetError(f"CSV {where} is empty: it has no header row and no data rows")
    header_line = reader.line_num
    columns = [cell.strip() for cell in header]
    seen: dict[str, int] = {}
    for i, col in enumerate(columns):
        if not col:
            raise DatasetError(f"CSV {where}, line {header_line}: header column {i + 1} has an empty name")
        if col in seen:
            raise DatasetError(
                f"CSV {where}, line {header_line}: duplicate column name {col!r} "
                f"(columns {seen[col] + 1} and {i + 1})"
            )
        seen[col] = i
    n_cols = len(columns)
    if n_cols < 2:
        raise DatasetError(
            f"CSV {where} has only one column ({columns[0]!r}); it needs at least one feature "
            "column and a target column"
        )
    if n_cols - 1 > MAX_FEATURES:
        raise DatasetError(f"CSV {where} has {n_cols - 1} feature columns; at most {MAX_FEATURES} are allowed")
    if target is None:
        t_idx = n_cols - 1
    else:
        if target.strip() not in seen:
            raise DatasetError(
                f"target column {target!r} is not among the columns of CSV {where}: "
                + ", ".join(repr(c) for c in columns)
            )
        t_idx = seen[target.strip()]
    target_name = columns[t_idx]
    feature_idx = [i for i in range(n_cols) if i != t_idx]
    last_is_target = t_idx == n_cols - 1
    feature_names = tuple(columns[i] for i in feature_idx)

    rows: list[list[float]] = []
    lines: list[int] = []
    targets: list[str] = []
    while True:
        row = next_row()
        if row is None:
            break
        line = reader.line_num
        if len(row) != n_cols:
            raise DatasetError(f"CSV {where}: line {line} has {len(row)} cells, the header has {n_cols}")
        if len(rows) >= MAX_SAMPLES:
            raise DatasetError(f"CSV {where} has more than {MAX_SAMPLES} data rows")
        cells = row[:-1] if last_is_target else [row[i] for i in feature_idx]
        values = None
        joined = "".join(cells)
        if "_" not in joined and joined.isascii():
            try:
                values = [float(c) for c in cells]  # float() ignores surrounding whitespace
            except ValueError:
                values = None
        if values is None or not math.isfinite(math.fsum(values)):
            # locate the first bad cell (fsum may also overflow on finite values)
            for c, col in zip(cells, feature_names):
                v = _number(c.strip())
                if v is None or not math.isfinite(v):
                    raise _bad_feature(c.strip(), where, line, col)
            if values is None:  # e.g. non-ASCII whitespace around valid numbers
                values = [float(c.strip()) for c in cells]
        rows.append(values)
        lines.append(line)
        targets.append(row[t_idx].strip())
    if not rows:
        raise DatasetError(f"CSV {where} has a header but no data rows")

    X = np.array(rows, dtype=np.float64).reshape(len(rows), len(feature_idx))
    del rows

    numbers_: list[float | None] = []
    for cell, line in zip(targets, lines):
        if cell == "":
            raise DatasetError(f"CSV {where}: line {line}, column {target_name!r}: empty target cell")
        value = _number(cell)
        if value is not None and not math.isfinite(value):
            raise DatasetError(
                f"CSV {where}: line {line}, column {target_name!r}: {cell!r} is not a finite "
                "number (NaN/inf are refused)"
            )
        numbers_.append(value)
    all_numeric = all(v is not None for v in numbers_)

    if task == "auto":
        if not all_numeric:
            task = "classification"
        else:
            integral = all(v.is_integer() and abs(v) <= _MAX_EXACT_INT for v in numbers_)  # type: ignore[union-attr]
            task = (
                "classification"
                if integral and len(set(numbers_)) <= AUTO_MAX_CLASSES
                else "regression"
            )

    ds_name = name or default_name
    if task == "regression":
        if not all_numeric:
            i = next(i for i, v in enumerate(numbers_) if v is None)
            raise DatasetError(
                f"CSV {where}: line {lines[i]}, column {target_name!r}: {targets[i]!r} is not a "
                "number (a regression target must be numeric)"
            )
        y = np.array(numbers_, dtype=np.float64).reshape(-1, 1)
        return Dataset(X=X, y=y, task="regression", feature_names=feature_names, name=ds_name)

    keys: list[Any] = numbers_ if all_numeric else targets
    distinct = sorted(set(keys))
    if len(distinct) > MAX_CLASSES:
        raise DatasetError(
            f"CSV {where}: target column {target_name!r} has {len(distinct)} distinct values; "
            f"a classification target may have at most {MAX_CLASSES} classes"
        )
    if all_numeric:
        classes = tuple(
            str(int(v)) if v.is_integer() and abs(v) <= _MAX_EXACT_INT else repr(v) for v in distinct
        )
    else:
        classes = tuple(distinct)
    if len(distinct) < 2:
        raise DatasetError(
            f"CSV {where}: target column {target_name!r} has only one class ({classes[0]!r}); "
            "classification needs at least 2"
        )
    index = {k: i for i, k in enumerate(distinct)}
    y = np.fromiter((index[k] for k in keys), dtype=np.int64, count=len(keys))
    return Dataset(
        X=X, y=y, task="classification", feature_names=feature_names, classes=classes, name=ds_name
    )


# ---------------------------------------------------------------------------
# Splitting and scaling
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """A train/validation split.

    Attributes
    ----------
    train : Dataset
    val : Dataset or None
        None when ``test_fraction == 0``.
    """

    train: Dataset
    val: Dataset | None


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _check_fraction(test_fraction: Any) -> float:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise DatasetError(f"test_fraction must be a number, got {test_fraction!r}")
    f = float(test_fraction)
    if not math.isfinite(f) or not 0.0 <= f < 1.0:
        raise DatasetError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    return f


def train_val_split(ds: Dataset, test_fraction: float, seed: int) -> Split:
    """Split a dataset into training and validation parts.

    Parameters
    ----------
    ds : Dataset
        With ``n_samples`` rows.
    test_fraction : float
        Fraction of rows for validation, in [0, 1).  0 gives all rows to
        training and ``val=None``.
    seed : int
        Seed of ``numpy.random.default_rng``; the split is a deterministic
        function of ``(ds, test_fraction, seed)``.

    Returns
    -------
    Split
        ``train`` and ``val`` keep the original row order.

    Raises
    ------
    DatasetError
        Invalid ``test_fraction``/``seed``, or a dataset too small for the
        requested split.

    Notes
    -----
    Classification (stratified): every class with ``c`` rows gives
    ``k = round(test_fraction * c)`` rows (halves rounded up) to validation,
    raised to at least 1 and lowered to at most ``c - 1`` so that every class
    keeps at least one training row and has at least one validation row.  A
    class with a single row therefore makes any ``test_fraction > 0``
    impossible (DatasetError).  Classes without rows are ignored.

    Regression: ``k = round(test_fraction * n)`` random rows, clamped to
    ``1 .. n - 1``; fewer than 2 rows is an error.
    """
    if not isinstance(ds, Dataset):
        raise DatasetError(f"train_val_split needs a Dataset, got {type(ds).__name__}")
    f = _check_fraction(test_fraction)
    rng = np.random.default_rng(_check_seed(seed))
    n = ds.n_samples
    if n < 1:
        raise DatasetError("cannot split a dataset with no rows")
    if f == 0.0:
        return Split(train=ds, val=None)  # no copy: a Dataset's arrays are not written to

    if ds.task == "classification":
        counts = np.bincount(ds.y, minlength=ds.n_classes)
        val_parts = []
        for c in range(ds.n_classes):
            count = int(counts[c])
            if count == 0:
                continue
            if count < 2:
                raise DatasetError(
                    f"dataset {ds.name or '(unnamed)'} is too small for test_fraction {f:g}: class "
                    f"{ds.classes[c]!r} has only {count} row; a stratified split needs at least 2 "
                    "rows of every class (one for training, one for validation)"
                )
            k = min(max(_round_half_up(f * count), 1), count - 1)
            members = np.flatnonzero(ds.y == c)
            val_parts.append(rng.permutation(members)[:k])
        val_idx = np.sort(np.concatenate(val_parts))
    else:
        if n < 2:
            raise DatasetError(
                f"dataset {ds.name or '(unnamed)'} is too small for test_fraction {f:g}: it has "
                f"{n} row; a split needs at least 2 rows"
            )
        k = min(max(_round_half_up(f * n), 1), n - 1)
        val_idx = np.sort(rng.permutation(n)[:k])
    in_val = np.zeros(n, dtype=bool)
    in_val[val_idx] = True
    return Split(train=ds.subset(~in_val), val=ds.subset(in_val))


@dataclass(frozen=True, eq=False)
class Standardizer:
    """Per-feature standardisation ``(X - mean) / scale``.

    Attributes
    ----------
    mean : numpy.ndarray, shape (n_features,), float64, read-only
    scale : numpy.ndarray, shape (n_features,), float64, read-only
        The population standard deviation of each feature, with 1.0 for
        constant features (so they map to 0, never NaN).
    """

    mean: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        mean = np.array(self.mean, dtype=np.float64)
        scale = np.array(self.scale, dtype=np.float64)
        if mean.ndim != 1 or scale.shape != mean.shape:
            raise DatasetError(
                f"mean and scale must be 1-D of equal length, got shapes {mean.shape} and {scale.shape}"
            )
        if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise DatasetError("mean must be finite and scale finite and positive")
        mean.flags.writeable = False
        scale.flags.writeable = False
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "scale", scale)

    @classmethod
    def fit(cls, X: Any) -> Standardizer:
        """Learn mean and scale from training features.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            At least one row; finite values.

        Returns
        -------
        Standardizer
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 1:
            raise DatasetError(f"Standardizer.fit needs a 2-D array with at least one row, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise DatasetError("Standardizer.fit: X contains NaN or infinite values")
        constant = np.ptp(X, axis=0) == 0
        mean = X.mean(axis=0)
        mean[constant] = X[0, constant]  # exact, so constant columns map to exactly 0
        std = X.std(axis=0)
        scale = np.where(constant | (std == 0), 1.0, std)
        return cls(mean=mean, scale=scale)

    @property
    def n_features(self) -> int:
        """Number of features it was fitted on."""
        return int(self.mean.shape[0])

    def transform(self, X: Any) -> np.ndarray:
        """Standardise features.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features) or (n_features,)

        Returns
        -------
        numpy.ndarray, same shape as ``X``
            A new array; its dtype is ``X``'s if that is a floating dtype,
            else float64.
        """
        arr = np.asarray(X)
        dtype = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64)
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.n_features:
            raise DatasetError(
                f"Standardizer expects shape (n_samples, {self.n_features}), got {arr.shape}"
            )
        out = (arr.astype(np.float64, copy=False) - self.mean) / self.scale
        return out.astype(dtype, copy=False)


def prepare(
    ds: Dataset, *, test_fraction: float, seed: int, standardize: bool
) -> tuple[Split, Standardizer | None]:
    """Split, then (optionally) fit a Standardizer on train only and apply it to train and val.

    Parameters
    ----------
    ds : Dataset
    test_fraction : float
        See :func:`train_val_split`.
    seed : int
        See :func:`train_val_split`.
    standardize : bool
        Whether to standardise the features.

    Returns
    -------
    split : Split
        With standardised ``X`` when ``standardize`` is true (targets untouched).
    standardizer : Standardizer or None
        Fitted on ``split.train.X``; None when ``standardize`` is false.
    """
    split = train_val_split(ds, test_fraction, seed)
    if not standardize:
        return split, None
    scaler = Standardizer.fit(split.train.X)
    train = dataclasses.replace(split.train, X=scaler.transform(split.train.X))
    val = None if split.val is None else dataclasses.replace(split.val, X=scaler.transform(split.val.X))
    return Split(train=train, val=val), scaler
