"""Optimizers and learning-rate schedules.

An optimizer owns the flat parameter array of a ``Network`` and updates it in
place with one verb, ``step(grad, lr)``; its state is a dict of arrays and
numbers so a checkpoint can save and restore it exactly.  Weight decay adds
``weight_decay * W`` to the gradient of every weight (not of the biases)
before the update (L2 regularisation).

Subnormal numbers.  A moment (momentum, Adam's ``m`` and ``v``, RMSprop's
mean square) of a parameter whose gradient stays zero (a dead ReLU unit, an
input that is always 0) decays geometrically until it is subnormal, and then
stays there: the smallest subnormals times 0.9 round back to themselves.
Arithmetic on subnormals takes the CPU's slow path (docs/decisions.md says
how slow), and numpy cannot set flush-to-zero, so :meth:`Optimizer.flush_subnormals` zeroes them; training
calls it every few dozen steps, at epoch ends (so a resumed run does the same).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from .spec import CosineSchedule, ExponentialSchedule, OptimizerSpec, ScheduleSpec, StepSchedule


class Optimizer(ABC):
    """Updates ``params`` (a flat array) in place from gradients of the same shape.

    ``grad_scale(lr)`` is the factor the caller multiplies the gradient by
    before ``step`` (``Network.backprop(ws, scale=...)`` does it for free in
    the output layer): 1 for most optimizers, ``lr`` for SGD, which then
    needs one pass over the parameters less.
    """

    def __init__(self, params: np.ndarray, decay_mask: np.ndarray, weight_decay: float):
        self.params = params
        self.decay = decay_mask * weight_decay if weight_decay else None
        self._tmp = np.empty_like(params)
        self._decay_scaled: tuple[float, np.ndarray | None] = (1.0, self.decay)

    #: Names of the state arrays that decay by a constant factor each step (see the module's note).
    _decaying: tuple[str, ...] = ()

    def grad_scale(self, lr: float) -> float:
        return 1.0

    def flush_subnormals(self) -> None:
        """Set the subnormal values of the decaying state to zero (they contribute nothing but slow every step)."""
        for name in self._decaying:
            array = getattr(self, name)
            np.abs(array, out=self._tmp)
            np.copyto(array, 0.0, where=self._tmp < np.finfo(array.dtype).tiny)

    def step(self, grad: np.ndarray, lr: float) -> None:
        """One update with learning rate ``lr`` from ``grad * grad_scale(lr)``.

        ``grad`` is used as scratch space.
        """
        if self.decay is not None:
            scale = self.grad_scale(lr)
            if self._decay_scaled[0] != scale:
                self._decay_scaled = (scale, self.decay * scale)
            np.multiply(self.params, self._decay_scaled[1], out=self._tmp)
            grad += self._tmp
        self._update(grad, lr)

    @abstractmethod
    def _update(self, grad: np.ndarray, lr: float) -> None: ...

    @abstractmethod
    def state(self) -> dict[str, np.ndarray | int]:
        """The optimizer's state, as arrays and ints (copies)."""

    @abstractmethod
    def load_state(self, state: dict[str, np.ndarray | int]) -> None: ...


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``v = momentum * v - lr * g`` and ``p += v``, or with Nesterov
    ``p += momentum * v - lr * g`` (Sutskever et al., 2013; the formulation
    of scikit-learn and Keras).  Takes ``lr * g`` (``grad_scale(lr) == lr``)
    and keeps ``u = -v``.  Below ``MIN_FOLDED_LR`` it takes ``g`` itself and
    multiplies by ``lr`` in the step, so the gradient (and its norm) never
    underflows in the backward pass.
    """

    #: The smallest learning rate folded into the backward pass: ``lr * g`` keeps ``g``'s digits above it.
    MIN_FOLDED_LR = 1e-6

    _decaying = ("velocity",)

    def __init__(self, params, decay_mask, *, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, decay_mask, weight_decay)
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity = np.zeros_like(params)  # u = -v

    def grad_scale(self, lr):
        # A schedule may reach 0 or a rate whose product with g underflows: gradient norms must stay measurable.
        return lr if lr >= self.MIN_FOLDED_LR else 1.0

    def _update(self, grad, lr):  # grad holds lr * g, or g when lr < MIN_FOLDED_LR
        if lr == 0.0:
            grad[...] = 0.0
        elif lr < self.MIN_FOLDED_LR:
            grad *= lr
        if self.momentum:
            u = self.velocity
            u *= self.momentum
            u += grad
            if not self.nesterov:
                self.params -= u
                return
            np.multiply(u, self.momentum, out=self._tmp)
            grad += self._tmp
        self.params -= grad

    def state(self):
        return {"velocity": self.velocity.copy()}

    def load_state(self, state):
        self.velocity[...] = state["velocity"]


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015).

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g**2``,
    ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - b1**t)``
    and ``v_hat = v / (1 - b2**t)``.

    To save passes over the parameters it keeps ``m / (1 - b1)`` and
    ``v / (1 - b2)`` and folds the constant factors into two scalars; the
    update is the formula above, exactly up to rounding.
    """

    _decaying = ("m", "v")

    def __init__(self, params, decay_mask, *, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(params, decay_mask, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        # m / (1 - beta1) and v / (1 - beta2) as the rows of one array: one call decays both
        self.moments = np.zeros((2, params.size), dtype=params.dtype)
        self.m, self.v = self.moments
        self._betas = np.array([[beta1], [beta2]], dtype=params.dtype)
        self.t = 0

    def _update(self, grad, lr):
        # ``grad`` doubles as the scratch array: four arrays in cache instead of five.
        b1, b2, m, v = self.beta1, self.beta2, self.m, self.v
        self.t += 1
        self.moments *= self._betas
        m += grad
        np.multiply(grad, grad, out=grad)
        v += grad
        # sqrt(v_hat) = c * sqrt(self.v), c = sqrt((1 - b2) / (1 - b2**t))
        c = math.sqrt((1.0 - b2) / (1.0 - b2**self.t))
        # lr * m_hat / (sqrt(v_hat) + eps) = s * self.m / (sqrt(self.v) + eps / c)
        s = lr * (1.0 - b1) / (1.0 - b1**self.t) / c
        np.sqrt(v, out=grad)
        grad += self.eps / c
        np.divide(m, grad, out=grad)
        grad *= s
        self.params -= grad

    def state(self):
        return {"m": self.m.copy(), "v": self.v.copy(), "t": self.t}

    def load_state(self, state):
        self.m[...] = state["m"]
        self.v[...] = state["v"]
        self.t = int(state["t"])


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton, 2012): ``s = rho s + (1 - rho) g**2``; ``p -= lr g / (sqrt(s) + eps)``."""

    _decaying = ("sq",)

    def __init__(self, params, decay_mask, *, rho=0.9, eps=1e-8, weight_decay=0.0):
        super().__init__(params, decay_mask, weight_decay)
        self.rho, self.eps = rho, eps
        self.sq = np.zeros_like(params)

    def _update(self, grad, lr):
        tmp, sq = self._tmp, self.sq
        np.multiply(grad, grad, out=tmp)
        tmp *= 1.0 - self.rho
        sq *= self.rho
        sq += tmp
        np.sqrt(sq, out=tmp)
        tmp += self.eps
        np.divide(grad, tmp, out=grad)
        grad *= lr
        self.params -= grad

    def state(self):
        return {"sq": self.sq.copy()}

    def load_state(self, state):
        self.sq[...] = state["sq"]


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}


def make_optimizer(spec: OptimizerSpec, params: np.ndarray, decay_mask: np.ndarray) -> Optimizer:
    """The optimizer a spec names, over a network's flat parameters."""
    hyper = spec.model_dump(exclude={"name", "lr"})
    return OPTIMIZERS[spec.name](params, decay_mask, **hyper)


def _step(base: float, s: StepSchedule, k: int, epochs: int) -> float:
    return base * s.gamma ** (k // s.step_size)


def _exponential(base: float, s: ExponentialSchedule, k: int, epochs: int) -> float:
    return base * s.gamma**k


def _cosine(base: float, s: CosineSchedule, k: int, epochs: int) -> float:
    t_max = s.t_max or epochs
    if k >= t_max:
        return s.min_lr
    return s.min_lr + (base - s.min_lr) * (1.0 + math.cos(math.pi * k / t_max)) / 2.0


SCHEDULES = {"step": _step, "exponential": _exponential, "cosine": _cosine}


def learning_rate(base: float, schedule: ScheduleSpec | None, epoch: int, epochs: int) -> float:
    """The learning rate of 1-based ``epoch`` under ``schedule`` (constant without one)."""
    if schedule is None:
        return base
    return SCHEDULES[schedule.type](base, schedule, epoch - 1, epochs)
