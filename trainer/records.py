"""What training reports: an ``EpochRecord`` after every epoch, and the ``FitResult`` of the whole run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .checkpoint import Checkpoint
from .datasets import Standardizer
from .network import Network

__all__ = ["EpochRecord", "FitResult"]


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """What one epoch did.  Accuracies are None for regression, ``val_*`` without held-out data.

    ``train_loss`` and ``train_accuracy`` are means over the epoch's
    mini-batches as they were trained (as Keras and scikit-learn report
    them); ``val_*`` are measured after the epoch.  ``seconds`` is the wall
    time of the epoch.  Norms are per layer, of ``W`` and of the gradient of
    the epoch's last mini-batch.  ``weights`` (copies of ``[W1, b1, ...]``)
    and ``checkpoint()`` are available inside ``on_epoch`` only; records in
    ``FitResult.history`` carry neither.
    """

    epoch: int
    train_loss: float
    val_loss: float | None
    train_accuracy: float | None
    val_accuracy: float | None
    lr: float
    seconds: float
    weight_norms: tuple[float, ...]
    grad_norms: tuple[float, ...]
    _flat: np.ndarray | None = field(default=None, repr=False, compare=False)
    _shapes: tuple[tuple[int, int], ...] = field(default=(), repr=False, compare=False)
    _checkpoint: Callable[[], Checkpoint] | None = field(default=None, repr=False, compare=False)

    @property
    def weights(self) -> list[np.ndarray] | None:
        """``[W1, b1, W2, b2, ...]`` as of the end of this epoch (copies), or None."""
        if self._flat is None:
            return None
        out, start = [], 0
        for rows, cols in self._shapes:
            block = self._flat[start : start + rows * cols].reshape(rows, cols)
            out += [block[:-1], block[-1]]
            start += rows * cols
        return out

    def checkpoint(self) -> Checkpoint:
        """The resumable state as of the end of this epoch (call it inside ``on_epoch``)."""
        if self._checkpoint is None:
            raise RuntimeError("checkpoint() is only available inside on_epoch")
        return self._checkpoint()

    def metrics(self) -> dict[str, float | int | None | list[float]]:
        """The record as plain JSON-friendly values (no weights)."""
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "train_accuracy": self.train_accuracy,
            "val_accuracy": self.val_accuracy,
            "lr": self.lr,
            "seconds": self.seconds,
            "weight_norms": list(self.weight_norms),
            "grad_norms": list(self.grad_norms),
        }


@dataclass
class FitResult:
    """The trained network, the per-epoch history and the state to resume from."""

    network: Network
    history: list[EpochRecord]
    checkpoint: Checkpoint
    standardizer: Standardizer | None
    classes: tuple[str, ...]
    stop_reason: str  # "completed", "early_stopping" or "stopped" (on_epoch returned STOP)
    best_epoch: int | None = None

    @property
    def final(self) -> EpochRecord | None:
        return self.history[-1] if self.history else None
