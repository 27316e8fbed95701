"""Datasets for the trainer: built-in toy/real datasets, CSV loading, splitting, scaling.

One module per concern, every public name re-exported here (callers import
from ``trainyard.trainer.datasets``):

- :mod:`.dataset`: :class:`Dataset`, validated on construction, and
  :class:`DatasetError`, which every loader raises;
- :mod:`.builtin`: :func:`load_builtin` and :func:`builtin_info`, the logic
  gates, the seeded synthetic sets and the packaged iris and digits (the
  table of them is in that module);
- :mod:`.csvfile`: :func:`load_csv`, a user's CSV table;
- :mod:`.shape`: :class:`Shape`, a dataset without its values (what checking a
  spec needs), :func:`builtin_shape` for a built-in without generating it;
- :mod:`.split`: :func:`train_val_split`, a seeded (stratified for
  classification) train/validation split, and :class:`Standardizer` /
  :func:`prepare`, which standardise features with training-set statistics only.

This package depends only on numpy and the Python standard library.
"""

from .builtin import BUILTIN_NAMES, MAX_NOISE, MIN_SAMPLES, builtin_info, load_builtin
from .csvfile import AUTO_MAX_CLASSES, MAX_CLASSES, MAX_FEATURES, CsvSource, load_csv
from .dataset import MAX_SAMPLES, Dataset, DatasetError, Task
from .shape import Shape, builtin_shape, shape_of, validation_rows
from .split import Split, Standardizer, prepare, standardized, train_val_split

__all__ = [
    "AUTO_MAX_CLASSES",
    "BUILTIN_NAMES",
    "MAX_CLASSES",
    "MAX_FEATURES",
    "MAX_NOISE",
    "MAX_SAMPLES",
    "MIN_SAMPLES",
    "CsvSource",
    "Dataset",
    "DatasetError",
    "Shape",
    "Split",
    "Standardizer",
    "Task",
    "builtin_info",
    "builtin_shape",
    "load_builtin",
    "load_csv",
    "prepare",
    "shape_of",
    "standardized",
    "train_val_split",
    "validation_rows",
]
