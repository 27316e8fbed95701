"""Activations and output heads as small in-place kernels, found by name.

Layout.  The training kernels keep activations *feature-major*, an array of
shape ``(units, n)`` for a batch of ``n`` samples (``Network`` adds a row of
ones below each hidden layer's so the next layer's bias rides in its matrix
product).  Every kernel here works in place on such arrays, and the output
heads take logits of shape ``(n_outputs, n)``, so a training step allocates
next to nothing.

Derivatives are written in terms of the activation's *output* ``a`` (as in
scikit-learn's ``DERIVATIVES``), so the pre-activations need not be kept.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import numpy as np

LEAKY_SLOPE = 0.01


# Each kernel gets ``s``, a preallocated float array of the layer's shape, as scratch space.
def _relu(a: np.ndarray, s: np.ndarray) -> None:
    np.maximum(a, 0.0, out=a)


def _relu_grad(a: np.ndarray, delta: np.ndarray, s: np.ndarray) -> None:
    np.greater(a, 0.0, out=s)  # 1.0 where active: a float mask multiplies faster than a bool one
    delta *= s


def _leaky_relu(a: np.ndarray, s: np.ndarray) -> None:
    np.multiply(a, LEAKY_SLOPE, out=s)
    np.maximum(a, s, out=a)


def _leaky_relu_grad(a: np.ndarray, delta: np.ndarray, s: np.ndarray) -> None:
    # slope 1 where a > 0, LEAKY_SLOPE elsewhere
    np.greater(a, 0.0, out=s)
    s *= 1.0 - LEAKY_SLOPE
    s += LEAKY_SLOPE
    delta *= s


def _tanh(a: np.ndarray, s: np.ndarray) -> None:
    np.tanh(a, out=a)


def _tanh_grad(a: np.ndarray, delta: np.ndarray, s: np.ndarray) -> None:
    # d tanh = 1 - a**2
    np.multiply(a, a, out=s)
    np.subtract(1.0, s, out=s)
    delta *= s


def _sigmoid(a: np.ndarray, s: np.ndarray | None = None) -> None:
    # sigmoid(z) = (1 + tanh(z / 2)) / 2: never overflows
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5


def _sigmoid_grad(a: np.ndarray, delta: np.ndarray, s: np.ndarray) -> None:
    # d sigmoid = a * (1 - a)
    np.subtract(1.0, a, out=s)
    s *= a
    delta *= s


def _identity(a: np.ndarray, s: np.ndarray) -> None:
    pass


def _identity_grad(a: np.ndarray, delta: np.ndarray, s: np.ndarray) -> None:
    pass


@dataclass(frozen=True)
class Activation:
    forward: Callable[[np.ndarray, np.ndarray], None]  # (a, scratch): a = f(a) in place
    backward: Callable[[np.ndarray, np.ndarray, np.ndarray], None]  # (a, delta, scratch): delta *= f'(z)


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(_relu, _relu_grad),
    "leaky_relu": Activation(_leaky_relu, _leaky_relu_grad),
    "tanh": Activation(_tanh, _tanh_grad),
    "sigmoid": Activation(_sigmoid, _sigmoid_grad),
    "identity": Activation(_identity, _identity_grad),
}


def activate(name: str, z: np.ndarray) -> np.ndarray:
    """Apply a hidden activation to a fresh copy of ``z`` (any shape)."""
    a = np.array(z, copy=True)
    ACTIVATIONS[name].forward(a, np.empty_like(a))
    return a


# ---------------------------------------------------------------------------- heads
class Head(ABC):
    """The output layer and its loss, for ``n_outputs`` output units.

    ``targets`` turns labels into the array the kernels gather batches from;
    ``loss_delta`` takes the output logits ``z`` of shape ``(n_outputs, n)``,
    overwrites them with ``d (scale * mean loss) / d z`` and returns
    ``(sum of per-sample losses, number of correct predictions or 0)``.
    """

    name: str
    is_classifier = True

    def __init__(self, n_outputs: int):
        self.n_outputs = n_outputs

    def target_shape(self, n: int, dtype: np.dtype) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype of the targets of ``n`` samples, as ``targets`` makes them."""
        return (n,), np.dtype(dtype if self.n_outputs == 1 else np.int64)

    def targets(self, y: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Labels as the kernels want them: int class indices (float 0/1 for one output)."""
        if self.n_outputs == 1:
            return np.ascontiguousarray(y, dtype=dtype)
        return np.ascontiguousarray(y, dtype=np.int64)

    @abstractmethod
    def loss_delta(
        self, z: np.ndarray, y: np.ndarray, rows: np.ndarray, scale: float
    ) -> tuple[float, int]: ...

    @abstractmethod
    def proba(self, z: np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(n, n_classes)``, from logits of shape ``(n, n_outputs)``."""

    def predict(self, z: np.ndarray) -> np.ndarray:
        """Predictions from logits of shape ``(n, n_outputs)``."""
        if self.n_outputs == 1:
            return (z[:, 0] > 0.0).astype(np.int64)
        return np.argmax(z, axis=1)

    @abstractmethod
    def losses(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-sample losses for logits ``(n, n_outputs)`` (evaluation path)."""


class SoftmaxCrossEntropy(Head):
    """Softmax over ``k >= 3`` outputs with categorical cross-entropy.

    ``loss = log(sum_j exp(z_j - m)) - (z_y - m)`` with ``m = max_j z_j``
    (log-sum-exp, finite for any finite logits); ``d loss / d z = p - onehot(y)``.
    """

    name = "softmax_cross_entropy"

    def loss_delta(self, z, y, rows, scale):
        k, n = z.shape
        at_y = y * n + rows  # flat positions of the true classes: flat indexing is the fast kind
        flat = z.reshape(-1)
        z -= z.max(axis=0)
        zy = flat[at_y]
        correct = _first_max_hits(z, zy, y)
        np.exp(z, out=z)
        total = np.dot(_ones(k, z.dtype), z)
        loss = float(np.log(total).sum() - zy.sum())
        total *= n / scale
        z /= total
        flat[at_y] -= scale / n
        return loss, correct

    def proba(self, z):
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def losses(self, z, y):
        z = z - z.max(axis=1, keepdims=True)
        return np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]


class SigmoidBinaryCrossEntropy(Head):
    """One sigmoid output for two classes, with binary cross-entropy.

    ``loss = softplus(z) - y z = (max(z, 0) - y z) + log1p(exp(-|z|))``, summed per sample: with ``y`` 0 or 1
    the bracket is ``max(z, 0)`` or ``max(-z, 0)`` exactly, so no sample's loss and no sum is ever negative;
    ``d loss / d z = sigmoid(z) - y``.
    """

    name = "sigmoid_binary_cross_entropy"

    def loss_delta(self, z, y, rows, scale):
        n = z.shape[1]
        zr = z[0]
        correct = int(np.count_nonzero((zr > 0.0) == (y > 0.5)))
        loss = float(_binary_cross_entropy(zr, y).sum())
        _sigmoid(zr)
        zr -= y
        zr *= scale / n
        return loss, correct

    def proba(self, z):
        p1 = activate("sigmoid", z[:, 0])
        return np.stack([1.0 - p1, p1], axis=1)

    def losses(self, z, y):
        return _binary_cross_entropy(z[:, 0], y)


class IdentityMSE(Head):
    """Identity outputs with mean squared error over samples and outputs.

    ``loss = mean_j (z_j - y_j)**2`` per sample; ``d loss / d z = 2 (z - y) / k``.
    """

    name = "identity_mse"
    is_classifier = False

    def target_shape(self, n, dtype):
        return (n, self.n_outputs), np.dtype(dtype)

    def targets(self, y, dtype):
        y = np.asarray(y, dtype=dtype)
        return np.ascontiguousarray(y.reshape(len(y), -1))

    def loss_delta(self, z, y, rows, scale):
        k, n = z.shape
        z -= y.T
        flat = z.reshape(-1)
        loss = float(np.dot(flat, flat)) / k
        z *= 2.0 * scale / (k * n)
        return loss, 0

    def proba(self, z):
        raise TypeError("predict_proba applies to classification, not regression")

    def predict(self, z):
        return z

    def losses(self, z, y):
        d = z - y.reshape(len(y), -1)
        return (d * d).mean(axis=1)


class PerceptronRule(Head):
    """Rosenblatt's step output.  The "loss" is the error rate (0-1 loss).

    Two classes: one output, ``y_hat = 1 if z > 0 else 0`` and the gradient
    ``-(y - y_hat) x``, so that plain SGD gives the rule ``w += lr (y - y_hat) x``.
    More classes: ``y_hat = argmax z``; a mistake moves the true class's
    weights towards ``x`` and the predicted class's away from it.

    The error count cannot overflow, so a logit that did (NaN or infinite)
    makes the loss NaN: the run has diverged, as an MLP's would.
    """

    name = "perceptron"

    def loss_delta(self, z, y, rows, scale):
        k, n = z.shape
        if k == 1:
            zr = z[0]
            finite = _finite(zr)
            y_hat = zr > 0.0
            np.subtract(y_hat, y, out=zr)  # -(y - y_hat)
            errors = int(np.count_nonzero(zr))
            zr *= scale / n
            return float(errors) if finite else math.nan, n - errors
        finite = _finite(z.reshape(-1))
        y_hat = z.argmax(axis=0)
        errors = int(np.count_nonzero(y_hat != y))
        z[...] = 0.0
        z[y_hat, rows] = scale / n
        z[y, rows] -= scale / n
        return float(errors) if finite else math.nan, n - errors

    def proba(self, z):
        raise TypeError("a perceptron gives labels, not probabilities; use predict")

    def losses(self, z, y):
        errors = (self.predict(z) != y).astype(np.float64)
        errors[~np.isfinite(z).all(axis=1)] = math.nan
        return errors


@functools.cache
def _ones(n: int, dtype: np.dtype) -> np.ndarray:
    ones = np.ones(n, dtype=dtype)
    ones.flags.writeable = False
    return ones


def _first_max_hits(z: np.ndarray, zy: np.ndarray, y: np.ndarray) -> int:
    """Samples whose first maximum is the true class, as ``predict`` breaks ties, from logits ``z`` of shape
    ``(k, n)`` less their column maxima (so each column's maxima are 0) and ``zy``, the true classes' entries.

    Without ties (exactly one 0 per column, the usual case) a hit is a 0 in ``zy``; with them, ``argmax``.
    """
    n = z.shape[1]
    if np.count_nonzero(z == 0.0) == n:
        return n - int(np.count_nonzero(zy))
    return int(np.count_nonzero(z.argmax(axis=0) == y))


def _finite(v: np.ndarray) -> bool:
    """Whether every value of the 1-D ``v`` is finite: cheap enough for every step, even of batches of one."""
    if len(v) == 1:
        return math.isfinite(v[0])
    return math.isfinite(np.dot(v, v)) or bool(np.isfinite(v).all())  # the dot overflows first


def _binary_cross_entropy(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample ``softplus(z) - y z`` for labels ``y`` of 0 or 1, each ``>= 0`` (no cancellation of sums)."""
    loss = np.abs(z)
    np.negative(loss, out=loss)
    np.exp(loss, out=loss)
    np.log1p(loss, out=loss)
    loss += np.maximum(z, 0.0) - z * y
    return loss


HEADS: dict[str, type[Head]] = {
    h.name: h for h in (SoftmaxCrossEntropy, SigmoidBinaryCrossEntropy, IdentityMSE, PerceptronRule)
}
