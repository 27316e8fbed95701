"""A dataset's shape: what checking a spec against its data needs, and never the data itself.

A service checks every spec it accepts against its data (too many parameters
for the features, a loss that does not suit the task, a held-out split too
small) before a worker trains it.  Building the data for that would cost a
million-row synthetic set's memory and seconds in the API, once per run of a
sweep.  A :class:`Shape` holds the rows of each class (or the rows, for a
regression), the features and the outputs; :func:`builtin_shape` knows it for
every built-in without generating one, and :func:`shape_of` reads it off a
:class:`Dataset`.  :func:`validation_rows` is the one rule of the held-out
split, which :func:`~.split.train_val_split` follows too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .builtin import _BUILTINS, _TRUTH_Y, BUILTIN_NAMES, _check_n_samples, _check_noise, _class_sizes, _load_packaged
from .dataset import Dataset, DatasetError, Task

__all__ = ["Shape", "builtin_shape", "shape_of", "validation_rows"]


@dataclass(frozen=True)
class Shape:
    """A dataset without its values.

    Attributes
    ----------
    task : {"classification", "regression"}
    n_features : int
    n_outputs : int
        Width of the network's output (1 for two classes).
    counts : tuple of int
        Rows of each class, in the order of ``classes``; for a regression, one count: all rows.
    classes : tuple of str
        The class labels (empty for a regression).
    name : str
    """

    task: Task
    n_features: int
    n_outputs: int
    counts: tuple[int, ...]
    classes: tuple[str, ...] = ()
    name: str = ""

    @property
    def n_samples(self) -> int:
        return sum(self.counts)

    def n_train(self, test_fraction: float) -> int:
        """Rows left for training after the held-out split; :class:`DatasetError` when the split is impossible."""
        return self.n_samples - sum(validation_rows(self, test_fraction))


def validation_rows(shape: Shape, test_fraction: float) -> list[int]:
    """Rows of each class (of all rows, for a regression) the held-out split takes for validation.

    Classification: ``round(test_fraction * c)`` of a class of ``c`` rows (halves
    up), at least 1 and at most ``c - 1``; a class of one row makes any split
    impossible.  Regression: ``round(test_fraction * n)``, within ``1 .. n - 1``.

    Raises
    ------
    DatasetError
        The dataset is too small for the split.
    """
    if test_fraction == 0.0:
        return [0] * len(shape.counts)
    what = shape.name or "(unnamed)"
    taken = []
    for index, count in enumerate(shape.counts):
        if shape.task == "classification" and count == 0:
            taken.append(0)
            continue
        if count < 2:
            where = (f"class {shape.classes[index]!r} has only {count} row; a stratified split needs at least 2 "
                     "rows of every class (one for training, one for validation)") if shape.task == "classification" \
                else f"it has {count} row; a split needs at least 2 rows"
            raise DatasetError(f"dataset {what} is too small for test_fraction {test_fraction:g}: {where}")
        taken.append(min(max(int(np.floor(test_fraction * count + 0.5)), 1), count - 1))
    return taken


def shape_of(ds: Dataset) -> Shape:
    """The shape of a loaded dataset."""
    if ds.task == "regression":
        return Shape("regression", ds.n_features, ds.n_outputs, (ds.n_samples,), (), ds.name or "")
    counts = np.bincount(ds.y, minlength=ds.n_classes)
    return Shape("classification", ds.n_features, ds.n_outputs, tuple(int(c) for c in counts), tuple(ds.classes),
                 ds.name or "")


def builtin_shape(name: str, *, n_samples: int | None = None, noise: float | None = None) -> Shape:
    """The shape :func:`~.builtin.load_builtin` gives ``name`` with these options, without generating the data.

    Raises
    ------
    DatasetError
        As ``load_builtin`` does: an unknown name, or options that do not apply or are out of range.
    """
    if not isinstance(name, str) or name not in _BUILTINS:
        raise DatasetError(f"unknown built-in dataset {name!r}; valid names: {', '.join(BUILTIN_NAMES)}")
    info = _BUILTINS[name]
    if info["n_samples"] is None and n_samples is not None:
        raise DatasetError(f"n_samples does not apply to the fixed-size dataset {name!r}")
    if info["noise"] is None and noise is not None:
        raise DatasetError(f"noise does not apply to the dataset {name!r}")
    if name in _TRUTH_Y:
        labels = _TRUTH_Y[name]
        return Shape("classification", 2, 1, (labels.count(0), labels.count(1)), ("0", "1"), name)
    if info["n_samples"] is None:  # packaged: parsed once per process, a few hundred kilobytes
        return shape_of(_load_packaged(name))
    n = _check_n_samples(info["n_samples"] if n_samples is None else n_samples)
    _check_noise(info["noise"] if noise is None else noise)
    if info["task"] == "regression":
        return Shape("regression", info["n_features"], 1, (n,), (), name)
    k = info["n_classes"]
    return Shape("classification", info["n_features"], 1 if k == 2 else k, tuple(_class_sizes(n, k)),
                 tuple(str(c) for c in range(k)), name)
