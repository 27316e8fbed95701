"""The ``Dataset`` class, the error every loader raises, and what the loaders share.

A :class:`Dataset` validates and normalises its arrays on construction, so
every loader of this package (built-ins, CSV) and every caller building one
by hand gets the same guarantees.  Depends only on numpy.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["MAX_SAMPLES", "Dataset", "DatasetError", "Task"]

MAX_SAMPLES = 1_000_000
"""Largest number of rows (samples) accepted anywhere in this package."""

Task = Literal["classification", "regression"]


class DatasetError(ValueError):
    """A dataset cannot be built or read; the message says what and where (line/column for CSV)."""


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


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise DatasetError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)
