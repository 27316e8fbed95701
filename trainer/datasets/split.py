"""Splitting and scaling: the held-out data a spec asks for, and features standardised without peeking at it.

:func:`train_val_split` makes a seeded (stratified for classification)
train/validation split, and :class:`Standardizer` / :func:`prepare`
standardise features with training-set statistics only.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from .dataset import Dataset, DatasetError, _check_seed
from .shape import shape_of, validation_rows

__all__ = ["Split", "Standardizer", "prepare", "standardized", "train_val_split"]


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

    taken = validation_rows(shape_of(ds), f)  # DatasetError when the split is impossible
    if ds.task == "classification":
        parts = [rng.permutation(np.flatnonzero(ds.y == c))[:k] for c, k in enumerate(taken) if k]
        val_idx = np.sort(np.concatenate(parts))
    else:
        val_idx = np.sort(rng.permutation(n)[: taken[0]])
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
        constant = (X == X[0]).all(axis=0)
        mean, std = _column_moments(X)
        mean[constant] = X[0, constant]  # exact, so constant columns map to exactly 0
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
        with np.errstate(over="ignore", invalid="ignore"):
            out = (arr.astype(np.float64, copy=False) - self.mean) / self.scale
        if not np.isfinite(out).all():
            columns = np.flatnonzero(~np.isfinite(out.reshape(-1, self.n_features)).all(axis=0))
            raise DatasetError(f"standardised values of feature column(s) {', '.join(map(str, columns))} "
                               "overflow float64: the column spans nearly the whole float range")
        return out.astype(dtype, copy=False)


#: Columns whose largest magnitude lies in this range have squares and sums far from over- and underflow.
_PLAIN_RANGE = (1e-100, 1e100)


def _column_moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation of each column of ``X``, free of over- and underflow.

    A column whose largest magnitude ``m`` is far from the float range's ends
    is summed as it is; any other is divided by ``m`` first and its moments
    multiplied back (``X.std()`` squares: 1e200 overflows, a spread of 1e-300
    underflows to 0).
    """
    m = np.abs(X).max(axis=0)
    plain = (m >= _PLAIN_RANGE[0]) & (m <= _PLAIN_RANGE[1]) | (m == 0.0)
    if plain.all():
        return X.mean(axis=0), X.std(axis=0)
    mean, std = np.zeros(X.shape[1]), np.zeros(X.shape[1])
    if plain.any():
        mean[plain], std[plain] = X[:, plain].mean(axis=0), X[:, plain].std(axis=0)
    scaled = X[:, ~plain] / m[~plain]
    mean[~plain] = scaled.mean(axis=0) * m[~plain]
    std[~plain] = scaled.std(axis=0) * m[~plain]
    return mean, std


def standardized(split: Split) -> tuple[Split, Standardizer]:
    """``split`` with its features standardised by a Standardizer fitted on ``split.train`` alone.

    Raises
    ------
    DatasetError
        The features cannot be standardised (a column spanning nearly the whole float range).
    """
    scaler = Standardizer.fit(split.train.X)
    train = dataclasses.replace(split.train, X=scaler.transform(split.train.X))
    val = None if split.val is None else dataclasses.replace(split.val, X=scaler.transform(split.val.X))
    return Split(train=train, val=val), scaler


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
    return standardized(split)
