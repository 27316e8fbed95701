"""``fit``: the training loop and the early stopping it consults.

The loop is deliberately thin: it gathers each shuffled mini-batch into a
preallocated buffer, calls ``Network.backprop`` and ``Optimizer.step``, and
once per epoch builds an ``EpochRecord`` (:mod:`.records`) for the caller.  It
never prints.  What a resume needs is a ``Checkpoint`` (:mod:`.checkpoint`).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Callable

import numpy as np

from . import datasets
from .checkpoint import Checkpoint
from .datasets import Dataset
from .network import Network
from .optimizers import Optimizer, learning_rate, make_optimizer
from .records import EpochRecord, FitResult
from .spec import (
    BuiltinData,
    EarlyStopping,
    PerceptronModel,
    SpecError,
    TrainSpec,
    check_fits_data,
    check_representable,
    layer_sizes,
)


class _Stop:
    def __repr__(self) -> str:
        return "trainer.STOP"


#: Return this from ``on_epoch`` to end training after the current epoch.
STOP = _Stop()


class TrainingDiverged(ArithmeticError):
    """The loss (or a weight) became NaN or infinite; ``epoch`` says when."""

    def __init__(self, epoch: int, what: str):
        super().__init__(f"training diverged at epoch {epoch}: {what}")
        self.epoch = epoch


# ---------------------------------------------------------------- early stopping
class _EarlyStopper:
    """Tracks the monitored metric; ``update`` says whether to stop.

    With ``restore_best`` it keeps the best epoch's weights, and ``fit`` puts
    them back whenever the run ends by itself, whether the patience ran out
    or the epochs did (not after ``STOP``).
    """

    def __init__(self, spec: EarlyStopping | None):
        self.spec = spec
        self.maximize = spec is not None and spec.monitor.endswith("accuracy")
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped = False
        self.best_params: np.ndarray | None = None

    def update(self, record: EpochRecord, flat: np.ndarray) -> bool:
        if self.spec is None:
            return False
        value = getattr(record, self.spec.monitor)
        delta = self.spec.min_delta
        better = self.best is None or (
            value > self.best + delta if self.maximize else value < self.best - delta
        )
        if better:
            self.best, self.best_epoch, self.wait = value, record.epoch, 0
            if self.spec.restore_best:
                self.best_params = flat.copy()
        else:
            self.wait += 1
        self.stopped = self.wait >= self.spec.patience
        return self.stopped

    def state(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "stopped": self.stopped}

    def load(self, state: dict, best_params: np.ndarray | None) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.wait, self.stopped = state["wait"], state["stopped"]
        self.best_params = None if best_params is None else best_params.copy()


# -------------------------------------------------------------------------- fit
def build_network(spec: TrainSpec, data: Dataset) -> Network:
    """The untrained network a spec describes for ``data``, initialised from ``spec.seed``."""
    n_outputs = _check_network(spec, data)
    sizes = layer_sizes(spec, data.n_features, n_outputs)
    init_rng = np.random.default_rng(np.random.SeedSequence(spec.seed).spawn(2)[0])
    if isinstance(spec.model, PerceptronModel):
        return Network(sizes, [], "perceptron", init=spec.model.init, rng=init_rng, dtype=spec.dtype)
    head = "identity_mse" if data.task == "regression" else (
        "sigmoid_binary_cross_entropy" if data.n_classes == 2 else "softmax_cross_entropy"
    )
    activations = [layer.activation for layer in spec.model.hidden]
    return Network(sizes, activations, head, init=spec.model.init, rng=init_rng, dtype=spec.dtype)


def _check_network(spec: TrainSpec, data: Dataset) -> int:
    """The network's number of outputs for ``data``; SpecError if the spec's network does not fit it."""
    return _check_shape(spec, datasets.shape_of(data), data.n_samples)


def _check_shape(spec: TrainSpec, shape: datasets.Shape, n_train: int) -> int:
    """The network's number of outputs for data of ``shape`` with ``n_train`` training rows; SpecError if the
    spec's network does not fit it."""
    if shape.task == "regression":
        if isinstance(spec.model, PerceptronModel):
            raise SpecError("model.type", "a perceptron classifies; this dataset is a regression task")
        if spec.loss == "cross_entropy":
            raise SpecError("loss", "cross_entropy needs a classification dataset; this one is regression")
        es = spec.early_stopping
        if es is not None and es.monitor.endswith("accuracy"):
            raise SpecError("early_stopping.monitor", f"{es.monitor} needs a classification dataset; "
                            "this one is regression (monitor a loss)")
    elif spec.loss == "mse":
        raise SpecError("loss", "mse needs a regression dataset; this one is classification (use auto)")
    check_representable(spec)
    check_fits_data(spec, n_train, shape.n_features, shape.n_outputs)
    return shape.n_outputs


def _check_range(spec: TrainSpec, split: datasets.Split) -> None:
    """Refuse, on ``dtype``, data that ``spec.dtype`` cannot hold: values that would become infinite or 0."""
    if spec.dtype == "float64":
        return  # a Dataset holds finite float64 values
    for part in (split.train, split.val):
        if part is None:
            continue
        arrays = [(part.X, part.feature_names)]
        if part.task == "regression":
            arrays.append((part.y, tuple(f"target {i}" for i in range(part.y.shape[1]))))
        for values, names in arrays:
            with np.errstate(over="ignore"):
                cast = values.astype(spec.dtype)
            too_large = ~np.isfinite(cast).all(axis=0)
            too_small = ((cast == 0) & (values != 0)).any(axis=0)
            for problem, columns in (("too large", too_large), ("too small (they would become 0)", too_small)):
                if columns.any():
                    index = int(np.flatnonzero(columns)[0])
                    extreme = np.abs(values[:, index][values[:, index] != 0])
                    shown = extreme.max() if problem == "too large" else extreme.min()
                    raise SpecError("dtype", f"{spec.dtype} cannot represent the values of column "
                                    f"{names[index]!r} (|x| of {shown:g}: {problem}); use float64"
                                    + ("" if spec.dataset.standardize else " or dataset.standardize"))


def load_data(spec: TrainSpec) -> Dataset:
    """The built-in dataset a spec names (an upload must be passed to ``fit`` as ``data``)."""
    ds = spec.dataset
    if not isinstance(ds, BuiltinData):
        raise SpecError("dataset.upload", "an uploaded dataset must be loaded by the caller and passed as data")
    try:
        return datasets.load_builtin(ds.name, n_samples=ds.n_samples, noise=ds.noise, seed=spec.seed)
    except datasets.DatasetError as exc:
        raise SpecError("dataset", str(exc)) from exc


def _validated(spec: TrainSpec | dict | str) -> TrainSpec:
    if isinstance(spec, TrainSpec):
        return spec
    return TrainSpec.model_validate_json(spec) if isinstance(spec, str) else TrainSpec.model_validate(spec)


def _prepare(spec: TrainSpec, data: Dataset) -> tuple[datasets.Split, datasets.Standardizer | None]:
    """``data`` split and standardised as the spec says (:func:`~.datasets.prepare`), errors naming the field."""
    try:
        split = datasets.train_val_split(data, spec.dataset.held_out, spec.seed)
    except datasets.DatasetError as exc:
        raise SpecError("dataset.test_fraction", str(exc)) from exc
    if not spec.dataset.standardize:
        return split, None
    try:
        return datasets.standardized(split)
    except datasets.DatasetError as exc:
        raise SpecError("dataset.standardize", str(exc)) from exc


def check(spec: TrainSpec | dict | str, data: Dataset | datasets.Shape | None = None) -> TrainSpec:
    """Check everything :func:`fit` checks before its first epoch, without training; the validated spec.

    A service calls this when a job is submitted, so a spec that cannot train
    on its data (too many parameters for its input features, a loss that
    does not suit the task, a held-out split too small) is refused then, not
    when a worker starts it.  It needs the data's shape alone: ``data`` may be
    a :class:`~.datasets.Shape` (an upload's, as a service stores it), and a
    built-in's is known without generating the data.  Given a
    :class:`~.datasets.Dataset`, it checks its values too, as ``fit`` does
    (whether ``float32`` can hold them once split and standardised).

    Raises
    ------
    pydantic.ValidationError
        The spec is invalid.
    SpecError
        The spec does not fit the data.
    """
    spec = _validated(spec)
    if isinstance(data, Dataset):  # the values are there: check them as fit does, in fit's order
        split, _ = _prepare(spec, data)
        _check_network(spec, split.train)
        _check_range(spec, split)
        return spec
    shape = builtin_shape(spec) if data is None else data
    try:
        n_train = shape.n_train(spec.dataset.held_out)
    except datasets.DatasetError as exc:
        raise SpecError("dataset.test_fraction", str(exc)) from exc
    _check_shape(spec, shape, n_train)
    return spec


def builtin_shape(spec: TrainSpec) -> datasets.Shape:
    """The shape of the built-in dataset a spec names, without generating it."""
    ds = spec.dataset
    if not isinstance(ds, BuiltinData):
        raise SpecError("dataset.upload", "an uploaded dataset's shape must be given by the caller")
    try:
        return datasets.builtin_shape(ds.name, n_samples=ds.n_samples, noise=ds.noise)
    except datasets.DatasetError as exc:
        raise SpecError("dataset", str(exc)) from exc


def fit(
    spec: TrainSpec | dict | str,
    data: Dataset | None = None,
    on_epoch: Callable[[EpochRecord], object] | None = None,
    checkpoint: Checkpoint | None = None,
) -> FitResult:
    """Train the network ``spec`` describes; see the module and README for the contract.

    Parameters
    ----------
    spec : TrainSpec, or its dict or JSON text
    data : Dataset, optional
        The data to train on; by default the built-in dataset the spec names.
        It is split (``dataset.test_fraction``) and standardised
        (``dataset.standardize``) as the spec says, seeded by ``spec.seed``.
    on_epoch : callable, optional
        Called with an ``EpochRecord`` after every epoch; returning ``STOP``
        ends training after that epoch.
    checkpoint : Checkpoint, optional
        Continue from this state (made by a run of the same spec); the result
        equals, bit for bit, that of a run never interrupted.

    Raises
    ------
    pydantic.ValidationError
        The spec is invalid.
    SpecError
        The spec does not fit the data (too many parameters, wrong loss, ...).
    TrainingDiverged
        The loss became NaN or infinite.
    """
    spec = _validated(spec)
    if data is None:
        data = load_data(spec)
    split, scaler = _prepare(spec, data)
    run = _Run(spec, split.train, split.val)
    epoch = 0 if checkpoint is None else run.restore(checkpoint)

    history: list[EpochRecord] = []
    stop_reason = "completed"
    while epoch < spec.epochs and not run.early.stopped:
        epoch += 1
        record = run.train_epoch(epoch)
        history.append(record)
        if on_epoch is not None and on_epoch(run.live(record)) is STOP:
            stop_reason = "stopped"
            break
    if run.early.stopped and stop_reason != "stopped":
        stop_reason = "early_stopping"

    final_state = run.snapshot(epoch)
    if run.early.best_params is not None and stop_reason != "stopped":
        run.net.flat[...] = run.early.best_params
    return FitResult(
        network=run.net,
        history=history,
        checkpoint=final_state,
        standardizer=scaler,
        classes=data.classes,
        stop_reason=stop_reason,
        best_epoch=run.early.best_epoch,
    )


#: About how many optimizer steps go between two flushes of subnormal state (see trainyard.trainer.optimizers).
FLUSH_STEPS = 64


class _Run:
    """A network, its optimizer, its shuffling and its early stopping: one training run's state."""

    def __init__(self, spec: TrainSpec, train: Dataset, val: Dataset | None):
        self.spec, self.val = spec, val
        self.net = net = build_network(spec, train)
        _check_range(spec, datasets.Split(train, val))
        self.opt = make_optimizer(spec.optimizer, net.flat, net.decay_mask)
        self.rng = np.random.default_rng(np.random.SeedSequence(spec.seed).spawn(2)[1])
        self.early = _EarlyStopper(spec.early_stopping)
        self.loop = _Loop(spec, net, self.opt, train, self.rng)
        # Subnormals are flushed at the end of every epoch that completes another FLUSH_STEPS steps or so.
        self.flush_every = max(1, FLUSH_STEPS // len(self.loop.batches))

    def train_epoch(self, epoch: int) -> EpochRecord:
        spec, net = self.spec, self.net
        t0 = time.perf_counter()
        lr = learning_rate(spec.optimizer.lr, spec.lr_schedule, epoch, spec.epochs)
        # Overflow is expected when a run diverges; _check_finite reports it as TrainingDiverged.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            train_loss, train_acc, grad_norms = self.loop.run_epoch(lr)
            if epoch % self.flush_every == 0:
                self.opt.flush_subnormals()
            val_loss = val_acc = None
            if self.val is not None:
                val_loss, val_acc = net.evaluate(self.val.X, self.val.y)
            weight_norms = net.weight_norms()
            _check_finite(epoch, train_loss, val_loss, net.flat, weight_norms, grad_norms)
        record = EpochRecord(
            epoch, train_loss, val_loss, train_acc, val_acc, lr, time.perf_counter() - t0, weight_norms, grad_norms,
        )
        self.early.update(record, net.flat)
        return record

    def live(self, record: EpochRecord) -> EpochRecord:
        """``record`` with this moment's weights and a way to checkpoint it, for ``on_epoch``."""
        return replace(
            record,
            _flat=self.net.flat.copy(),
            _shapes=self.net.block_shapes,
            _checkpoint=lambda: self.snapshot(record.epoch),
        )

    def snapshot(self, epoch: int) -> Checkpoint:
        early = self.early
        return Checkpoint(
            epoch=epoch,
            fingerprint=self.spec.fingerprint(),
            params=self.net.flat.copy(),
            optimizer=self.opt.state(),
            rng_state=self.rng.bit_generator.state,
            early=early.state(),
            best_params=None if early.best_params is None else early.best_params.copy(),
        )

    def restore(self, ckpt: Checkpoint) -> int:
        """Load ``ckpt``; return the epoch it was taken after."""
        flat = self.net.flat
        ckpt.check_resumes(self.spec, flat)
        flat[...] = ckpt.params
        self.opt.load_state(ckpt.optimizer)
        self.rng.bit_generator.state = ckpt.rng_state
        self.early.load(ckpt.early, ckpt.best_params)
        return ckpt.epoch


def _check_finite(
    epoch: int,
    train_loss: float,
    val_loss: float | None,
    flat: np.ndarray,
    weight_norms: tuple[float, ...],
    grad_norms: tuple[float, ...],
) -> None:
    """Raise TrainingDiverged unless every number of the epoch's record, and every weight, is finite."""
    if not math.isfinite(train_loss):
        raise TrainingDiverged(epoch, f"train loss is {train_loss}")
    if val_loss is not None and not math.isfinite(val_loss):
        raise TrainingDiverged(epoch, f"validation loss is {val_loss}")
    if not math.isfinite(flat.sum()) and not np.isfinite(flat).all():  # a sum of finite weights may overflow
        raise TrainingDiverged(epoch, "a weight is no longer finite")
    for what, norms in (("weight", weight_norms), ("gradient", grad_norms)):
        bad = [value for value in norms if not math.isfinite(value)]
        if bad:
            raise TrainingDiverged(epoch, f"a layer's {what} norm is {bad[0]}")


class _Loop:
    """One epoch of mini-batch training, with every buffer made up front."""

    def __init__(self, spec: TrainSpec, net: Network, opt: Optimizer, train: Dataset, rng: np.random.Generator):
        self.net, self.opt, self.rng = net, opt, rng
        n = train.n_samples
        self.n = n
        self.batch = n if spec.batch_size is None else min(spec.batch_size, n)
        self.shuffle = spec.shuffle and self.batch < n  # a full batch's order changes nothing
        self.X = np.ascontiguousarray(train.X, dtype=net.dtype)  # a copy only for float32
        self.T = net.head.targets(train.y, net.dtype)
        self.classify = net.head.is_classifier
        if self.batch == n:
            net.load_batch(self.X, self.T)
        starts = range(0, n, self.batch)
        self.batches = [(i, min(i + self.batch, n), net.workspace(min(i + self.batch, n) - i)) for i in starts]

    def run_epoch(self, lr: float) -> tuple[float, float | None, tuple[float, ...]]:
        """Train one epoch; return the mean loss, the accuracy and the last batch's gradient norms."""
        net, step, grad, n = self.net, self.opt.step, self.net.grad_flat, self.n
        scale = self.opt.grad_scale(lr)
        if self.batch == n:
            loss_sum, correct = net.backprop(net.workspace(n), scale)
            grad_norms = net.grad_norms(scale)
            step(grad, lr)
            return loss_sum / n, (correct / n if self.classify else None), grad_norms
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        take, X, T, backprop = np.take, self.X, self.T, net.backprop
        loss_sum, correct = 0.0, 0
        for start, stop, ws in self.batches:
            idx = order[start:stop]
            take(X, idx, axis=0, out=ws.x, mode="clip")
            take(T, idx, axis=0, out=ws.y, mode="clip")
            step_loss, step_correct = backprop(ws, scale)
            if stop == n:  # the optimizer uses the gradient buffer as scratch: measure it first
                grad_norms = net.grad_norms(scale)
            step(grad, lr)
            loss_sum += step_loss
            correct += step_correct
        return loss_sum / n, (correct / n if self.classify else None), grad_norms
