"""``Network``: a multi-layer perceptron (or Rosenblatt's perceptron) in numpy.

All parameters live in one flat array.  Layer ``l`` owns a block of shape
``(fan_in + 1, fan_out)`` whose first ``fan_in`` rows are ``W_l`` and whose
last row is ``b_l``; ``params`` holds views of those blocks, so
``params = [W1, b1, W2, b2, ...]`` are the very arrays the network computes
with, and an optimizer updates all of them with a handful of in-place
operations on the flat array.  Gradients have the same layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .layers import ACTIVATIONS, HEADS, Head

INITS = ("xavier", "he", "normal", "zeros")
NORMAL_INIT_STD = 0.1
#: Working values (as ``spec.check_fits_data`` counts them) of one chunk of evaluation: 32 MB in float64.
EVAL_WORKING_VALUES = 1 << 22


def _init_block(init: str, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Initial weights of shape ``(fan_in, fan_out)``, drawn in float64."""
    if init == "xavier":  # Glorot & Bengio (2010), uniform
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, size=(fan_in, fan_out))
    if init == "he":  # He et al. (2015), normal
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
    if init == "normal":
        return rng.normal(0.0, NORMAL_INIT_STD, size=(fan_in, fan_out))
    if init == "zeros":
        return np.zeros((fan_in, fan_out))
    raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")


@dataclass
class Workspace:
    """Preallocated buffers for batches of ``n`` rows (feature-major, see ``layers``)."""

    n: int
    x: np.ndarray  # (n, n_features): the batch, sample-major
    y: np.ndarray  # the batch's targets
    acts: list[np.ndarray]  # per hidden layer (units + 1, n), last row ones
    deltas: list[np.ndarray]  # per layer (units, n); the last is the output's
    scratch: list[np.ndarray]  # per hidden layer (units, n)
    rows: np.ndarray = field(repr=False)  # arange(n)
    ones: np.ndarray = field(repr=False)  # n ones
    # The passes as lists of (kernel arguments) made once, so a step only calls kernels.
    forward: list[tuple] = field(default_factory=list, repr=False)
    backward: list[tuple] = field(default_factory=list, repr=False)


class Network:
    """A feed-forward network trained by backpropagation.

    Parameters
    ----------
    sizes : list of int
        ``[n_features, hidden_1, ..., n_outputs]``.
    activations : list of str
        One hidden activation per hidden layer (``len(sizes) - 2`` names).
    head : str
        The output and loss, a key of ``layers.HEADS``.
    init : str
        ``xavier``, ``he``, ``normal`` or ``zeros``; biases start at zero.
    rng : numpy.random.Generator
        Draws the initial weights.
    dtype : numpy dtype
        ``float64`` or ``float32``.
    """

    def __init__(
        self,
        sizes: list[int],
        activations: list[str],
        head: str,
        *,
        init: str = "xavier",
        rng: np.random.Generator | None = None,
        dtype: type | np.dtype = np.float64,
    ):
        if len(activations) != len(sizes) - 2:
            raise ValueError(f"{len(sizes) - 2} hidden layers need as many activations, got {len(activations)}")
        unknown = [a for a in activations if a not in ACTIVATIONS]
        if unknown:
            raise ValueError(f"unknown activation {unknown[0]!r}; choose one of {', '.join(ACTIVATIONS)}")
        self.sizes = list(sizes)
        self.activations = list(activations)
        self.head: Head = HEADS[head](sizes[-1])
        self.dtype = np.dtype(dtype)
        rng = rng if rng is not None else np.random.default_rng(0)

        shapes = [(fan_in + 1, fan_out) for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
        self.flat = np.empty(sum(a * b for a, b in shapes), dtype=self.dtype)
        self.grad_flat = np.zeros_like(self.flat)
        self._blocks = _carve(self.flat, shapes)
        self._grad_blocks = _carve(self.grad_flat, shapes)
        for block in self._blocks:
            block[:-1] = _init_block(init, block.shape[0] - 1, block.shape[1], rng)
            block[-1] = 0.0
        self.params: list[np.ndarray] = [p for blk in self._blocks for p in (blk[:-1], blk[-1])]
        self.grads: list[np.ndarray] = [g for blk in self._grad_blocks for g in (blk[:-1], blk[-1])]
        # Each W is the leading, contiguous part of its block: flat views make its norm one dot product.
        self._w_flat = [b[:-1].reshape(-1) for b in self._blocks]
        self._dw_flat = [b[:-1].reshape(-1) for b in self._grad_blocks]
        #: 1.0 for every weight, 0.0 for every bias: weight decay spares biases.
        self.decay_mask = np.zeros_like(self.flat)
        for blk in _carve(self.decay_mask, shapes):
            blk[:-1] = 1.0
        self._workspaces: dict[int, Workspace] = {}
        self._eval_workspaces: dict[int, Workspace] = {}

    # ------------------------------------------------------------------ public
    @property
    def n_layers(self) -> int:
        return len(self._blocks)

    @property
    def block_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(fan_in + 1, fan_out)`` of each layer's block ``[[W], [b]]`` in ``flat``."""
        return tuple(b.shape for b in self._blocks)

    def set_params(self, values: list[np.ndarray]) -> None:
        """Copy ``values`` (same order and shapes as ``params``) into the network."""
        if len(values) != len(self.params):
            raise ValueError(f"expected {len(self.params)} arrays, got {len(values)}")
        for p, v in zip(self.params, values):
            if np.shape(v) != p.shape:
                raise ValueError(f"shape {np.shape(v)} does not match {p.shape}")
            p[...] = v

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Output-layer values before the head, shape ``(n_samples, n_outputs)``.

        The rows go through in chunks (see ``chunk_rows``) with the training
        kernels, so the working memory is bounded whatever ``n_samples``, and
        a chunk of ``n`` rows gives, bit for bit, the logits a training batch
        of the same rows computes.
        """
        a = np.asarray(X, dtype=self.dtype)
        if a.ndim != 2 or a.shape[1] != self.sizes[0]:
            raise ValueError(f"X must have shape (n_samples, {self.sizes[0]}), got {a.shape}")
        n = len(a)
        out = np.empty((n, self.sizes[-1]), dtype=self.dtype)
        rows = self.chunk_rows()
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            ws = self._eval_workspace(stop - start)
            ws.x[...] = a[start:stop]
            self._forward(ws)
            out[start:stop] = ws.deltas[-1].T
        return out

    def chunk_rows(self) -> int:
        """Rows per chunk of evaluation: ``EVAL_WORKING_VALUES`` worth, or the largest training batch's rows.

        A full batch's rows go through in one chunk, so training accuracy and
        ``predict``'s agree exactly; such a batch already fits the working-set
        limit (``spec.MAX_WORKING_VALUES``).
        """
        per_row = 3 * sum(self.sizes)  # activations, deltas and scratch, as spec.check_fits_data counts them
        return max(1, EVAL_WORKING_VALUES // per_row, max(self._workspaces, default=0))

    def _eval_workspace(self, n: int) -> Workspace:
        """Buffers for evaluating ``n`` rows, apart from training's (a full batch's stay loaded); a few are kept."""
        ws = self._eval_workspaces.get(n)
        if ws is None:
            if len(self._eval_workspaces) >= 2:  # a chunk and a last, shorter one
                self._eval_workspaces.clear()
            ws = self._eval_workspaces[n] = self._new_workspace(n)
        return ws

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class labels ``0..k-1`` (0/1 for two classes), or values for regression."""
        return self.head.predict(self.decision_function(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities of shape ``(n_samples, n_classes)``."""
        return self.head.proba(self.decision_function(X))

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
        """Mean loss and accuracy (None for regression) on ``(X, y)``."""
        z = self.decision_function(X)
        loss = float(self.head.losses(z, self.head.targets(y, self.dtype)).mean())
        if not self.head.is_classifier:
            return loss, None
        return loss, float(np.mean(self.head.predict(z) == y))

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """Batch-mean loss and its gradients, in the order and shapes of ``params``.

        ``X`` has shape ``(n_samples, n_features)``; ``y`` holds class labels
        ``0..k-1`` of shape ``(n_samples,)``, or regression targets.  The
        gradients returned are fresh copies.
        """
        ws = self.load_batch(np.asarray(X, dtype=self.dtype), self.head.targets(np.asarray(y), self.dtype))
        loss_sum, _ = self.backprop(ws)
        return loss_sum / ws.n, [g.copy() for g in self.grads]

    # ------------------------------------------------------------- training kernels
    def workspace(self, n: int) -> Workspace:
        """The buffers for batches of ``n`` rows, made once and reused."""
        ws = self._workspaces.get(n)
        if ws is None:
            ws = self._workspaces[n] = self._new_workspace(n)
        return ws

    def _new_workspace(self, n: int) -> Workspace:
        dt = self.dtype
        x = np.empty((n, self.sizes[0]), dtype=dt)
        acts = [np.ones((units + 1, n), dtype=dt) for units in self.sizes[1:-1]]
        deltas = [np.empty((units, n), dtype=dt) for units in self.sizes[1:]]
        scratch = [np.empty((u, n), dt) for u in self.sizes[1:-1]]
        y = np.empty(*self.head.target_shape(n, dt))
        ws = Workspace(n, x, y, acts, deltas, scratch, np.arange(n), np.ones(n, dtype=dt))
        self._plan(ws)
        return ws

    def _plan(self, ws: Workspace) -> None:
        """Bind every view and kernel a step of ``ws`` uses, in the order it uses them.

        Hidden activations carry a row of ones, so layers after the first
        get their bias inside the matrix product.  The first layer reads the
        batch as gathered, without a column of ones (which would cost a copy
        of the whole training set), and adds and sums its bias explicitly.
        """
        blocks, grads, last = self._blocks, self._grad_blocks, len(self._blocks) - 1
        kernels = [ACTIVATIONS[a] for a in self.activations]
        inputs = [ws.x.T, *ws.acts]  # layer i's input, (fan_in [+ 1], n)
        outputs = [a[:-1] for a in ws.acts] + [ws.deltas[last]]
        for i in range(last + 1):
            first = i == 0
            w_t = blocks[i][:-1].T if first else blocks[i].T
            bias = blocks[i][-1][:, None] if first else None
            activate, scratch = (kernels[i].forward, ws.scratch[i]) if i < last else (None, None)
            ws.forward.append((w_t, inputs[i], outputs[i], bias, activate, scratch))
        for i in range(last, -1, -1):
            first = i == 0
            grad = grads[i][:-1] if first else grads[i]
            bias_grad = grads[i][-1] if first else None
            back = None
            if not first:
                back = (blocks[i][:-1], ws.deltas[i - 1], kernels[i - 1].backward, ws.acts[i - 1][:-1],
                        ws.scratch[i - 1])
            ws.backward.append((inputs[i], ws.deltas[i].T, grad, bias_grad, ws.deltas[i], back))

    def load_batch(self, X: np.ndarray, targets: np.ndarray) -> Workspace:
        """Copy a batch into its workspace (the slow path; ``fit`` gathers in place)."""
        ws = self.workspace(len(X))
        ws.x[...] = X
        ws.y[...] = targets
        return ws

    def backprop(self, ws: Workspace, scale: float = 1.0) -> tuple[float, int]:
        """Forward and backward pass over the batch in ``ws``.

        Leaves the gradients of ``scale`` times the batch-mean loss in
        ``grad_flat`` and returns the summed loss and the number of correct
        predictions.
        """
        dot = np.dot
        self._forward(ws)
        loss_sum, correct = self.head.loss_delta(ws.deltas[-1], ws.y, ws.rows, scale)
        for a_in, delta_t, grad, bias_grad, delta, back in ws.backward:
            dot(a_in, delta_t, out=grad)  # [dW; db] = [a; 1] delta.T
            if bias_grad is not None:
                dot(delta, ws.ones, out=bias_grad)  # db = delta summed over the batch
            if back is not None:
                w, delta_in, derivative, a, scratch = back
                dot(w, delta, out=delta_in)  # delta of the layer below, before its activation
                derivative(a, delta_in, scratch)
        return loss_sum, correct

    @staticmethod
    def _forward(ws: Workspace) -> None:
        """The forward pass over the batch in ``ws``: the output logits end in ``ws.deltas[-1]``."""
        dot = np.dot
        for w_t, a_in, a_out, bias, activate, scratch in ws.forward:
            dot(w_t, a_in, out=a_out)  # z = W.T a + b, feature-major
            if bias is not None:
                a_out += bias
            if activate is not None:
                activate(a_out, scratch)

    def weight_norms(self) -> tuple[float, ...]:
        """Frobenius norm of each layer's ``W`` (``inf`` only when the norm exceeds the float range)."""
        return tuple(norm(w) for w in self._w_flat)

    def grad_norms(self, scale: float = 1.0) -> tuple[float, ...]:
        """Frobenius norm of each layer's ``dW`` from the latest ``backprop(ws, scale)``, before a step."""
        return tuple(norm(g) / scale for g in self._dw_flat)


def norm(v: np.ndarray) -> float:
    """The Euclidean norm of the 1-D ``v``, as a Python float, free of overflow and underflow.

    One dot product when ``v . v`` is a normal number (the usual case); else
    ``m * ||v / m||`` with ``m = max |v|``, which is exact up to rounding for
    every finite ``v`` whose norm is within the float range, and ``inf`` beyond it.
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        squares = float(np.dot(v, v))
        if np.finfo(v.dtype).tiny <= squares < math.inf or v.size == 0:
            return math.sqrt(squares)
        m = float(np.max(np.abs(v)))
        if m == 0.0 or not math.isfinite(m):
            return m
        scaled = v / v.dtype.type(m)
        return m * math.sqrt(float(np.dot(scaled, scaled)))


def _carve(flat: np.ndarray, shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    blocks, start = [], 0
    for rows, cols in shapes:
        blocks.append(flat[start : start + rows * cols].reshape(rows, cols))
        start += rows * cols
    return blocks
