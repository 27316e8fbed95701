"""``Checkpoint``: a training run's resumable state, its bytes, and the guard that only its own spec resumes it.

A checkpoint holds everything a run's next epoch depends on (the network's
flat parameters, the optimizer's state, the shuffling generator's state and
the early-stopping bookkeeping), so a resumed run is bit-identical to one
never interrupted.  Its bytes are kept in databases and read back by later
versions: the layout only changes together with ``CHECKPOINT_FORMAT``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

from .spec import SpecError, TrainSpec

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint"]

#: Version of the bytes ``Checkpoint.to_bytes`` writes; ``from_bytes`` refuses any other.
CHECKPOINT_FORMAT = 1


@dataclass
class Checkpoint:
    """Everything needed to continue training exactly where it stopped.

    Serialised by ``to_bytes`` as an ``.npz`` archive of plain arrays plus a
    JSON header; ``from_bytes`` loads it with ``allow_pickle=False``.
    """

    epoch: int
    fingerprint: str
    params: np.ndarray  # the network's flat parameters
    optimizer: dict[str, np.ndarray | int]
    rng_state: dict
    early: dict  # best, best_epoch, wait, stopped
    best_params: np.ndarray | None = None

    def to_bytes(self) -> bytes:
        arrays = {"params": self.params}
        scalars = {}
        for key, value in self.optimizer.items():
            if isinstance(value, np.ndarray):
                arrays[f"optimizer.{key}"] = value
            else:
                scalars[key] = value
        if self.best_params is not None:
            arrays["best_params"] = self.best_params
        header = {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "fingerprint": self.fingerprint,
            "optimizer": scalars,
            "rng_state": self.rng_state,
            "early": self.early,
        }
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # uncompressed: float state barely compresses, and a worker writes one every flush
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Checkpoint:
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            header = json.loads(arrays.pop("header").tobytes())
        except Exception as exc:  # zipfile, ValueError, KeyError, JSON errors: all mean "not a checkpoint"
            raise ValueError(f"not a trainer checkpoint: {exc}") from exc
        if header.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {header.get('format')!r} is not {CHECKPOINT_FORMAT}")
        optimizer: dict[str, np.ndarray | int] = dict(header["optimizer"])
        for key in list(arrays):
            if key.startswith("optimizer."):
                optimizer[key.removeprefix("optimizer.")] = arrays.pop(key)
        return cls(
            epoch=header["epoch"],
            fingerprint=header["fingerprint"],
            params=arrays["params"],
            optimizer=optimizer,
            rng_state=header["rng_state"],
            early=header["early"],
            best_params=arrays.get("best_params"),
        )

    def check_resumes(self, spec: TrainSpec, params: np.ndarray) -> None:
        """Raise SpecError unless this checkpoint can continue a run of ``spec`` whose flat parameters are ``params``.

        The spec's fingerprint leaves out what does not change the trajectory,
        so only the fields it names may differ from the spec that made it.
        """
        if self.fingerprint != spec.fingerprint():
            raise SpecError("checkpoint", "this checkpoint was made by a different spec (only name, tags, "
                            "notes, epochs and snapshot_every may change)")
        if self.params.shape != params.shape:
            raise SpecError("checkpoint",
                            f"the checkpoint has {self.params.size} parameters, the network {params.size}")
