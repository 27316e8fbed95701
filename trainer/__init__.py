"""Trainyard's training engine: backpropagation in numpy, nothing else.

>>> from trainyard.trainer import TrainSpec, fit
>>> spec = TrainSpec.model_validate({"dataset": {"name": "xor"},
...     "model": {"type": "mlp", "hidden": [{"units": 8, "activation": "tanh"}]},
...     "optimizer": {"name": "adam", "lr": 0.05}, "epochs": 300, "batch_size": None})
>>> result = fit(spec)
>>> result.network.predict([[0, 0], [0, 1], [1, 0], [1, 1]]).tolist()
[0, 1, 1, 0]

The package imports numpy and pydantic only; the service, the worker and the
dashboard build on it and nothing here knows of them.
"""

from .checkpoint import Checkpoint
from .datasets import Dataset, DatasetError, load_builtin, load_csv
from .fit import STOP, TrainingDiverged, build_network, check, fit
from .network import Network
from .records import EpochRecord, FitResult
from .spec import SpecError, TrainSpec

__all__ = [
    "STOP",
    "Checkpoint",
    "Dataset",
    "DatasetError",
    "EpochRecord",
    "FitResult",
    "Network",
    "SpecError",
    "TrainSpec",
    "TrainingDiverged",
    "build_network",
    "check",
    "fit",
    "load_builtin",
    "load_csv",
]
