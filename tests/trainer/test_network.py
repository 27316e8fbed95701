"""The network's maths: gradients against finite differences, a hand-worked step, layout and stability."""

import numpy as np
import pytest

from trainyard.trainer import Network
from trainyard.trainer.layers import ACTIVATIONS, HEADS

HEAD_CASES = {
    # head name: (n_outputs, targets for 6 samples)
    "softmax_cross_entropy": (3, np.array([0, 1, 2, 2, 1, 0])),
    "sigmoid_binary_cross_entropy": (1, np.array([0, 1, 1, 0, 1, 0])),
    "identity_mse": (2, np.linspace(-1, 1, 12).reshape(6, 2)),
}


def numeric_grads(net: Network, X, y, h=1e-6):
    """Central differences of the batch-mean loss for every parameter."""
    out = []
    for p in net.params:
        g = np.zeros_like(p)
        it = np.nditer(p, flags=["multi_index"])
        for _ in it:
            i = it.multi_index
            old = p[i]
            p[i] = old + h
            up, _ = net.loss_and_grads(X, y)
            p[i] = old - h
            down, _ = net.loss_and_grads(X, y)
            p[i] = old
            g[i] = (up - down) / (2 * h)
        out.append(g)
    return out


@pytest.mark.parametrize("head", list(HEAD_CASES))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_gradients_match_finite_differences(activation, head):
    n_out, y = HEAD_CASES[head]
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6, 4))
    net = Network([4, 5, 3, n_out], [activation, activation], head, init="normal", rng=rng)
    for p in net.params:  # larger weights so every unit is off-centre and biases matter
        p[...] = rng.normal(scale=0.7, size=p.shape)
    loss, grads = net.loss_and_grads(X, y)
    numeric = numeric_grads(net, X, y)
    assert np.isfinite(loss)
    for g, n, p in zip(grads, numeric, net.params):
        assert g.shape == p.shape
        rel = np.linalg.norm(g - n) / max(np.linalg.norm(g) + np.linalg.norm(n), 1e-12)
        assert rel < 1e-6, (activation, head, rel)


def test_relu_gradients_away_from_kinks():
    """ReLU's kink is where finite differences lie; keep pre-activations off zero and check again."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(8, 3))
    net = Network([3, 6, 3], ["relu"], "softmax_cross_entropy", init="he", rng=rng)
    z = X @ net.params[0] + net.params[1]
    assert np.min(np.abs(z)) > 1e-4
    _, grads = net.loss_and_grads(X, np.arange(8) % 3)
    numeric = numeric_grads(net, X, np.arange(8) % 3)
    for g, n in zip(grads, numeric):
        assert np.allclose(g, n, rtol=1e-6, atol=1e-9)


def test_hand_worked_logistic_step():
    """One sigmoid unit, two samples, worked by hand."""
    net = Network([2, 1], [], "sigmoid_binary_cross_entropy", init="zeros")
    W, b = net.params
    W[...] = [[0.5], [-1.0]]
    b[...] = [0.25]
    X = np.array([[1.0, 2.0], [0.0, 1.0]])
    y = np.array([1, 0])
    z = np.array([0.5 - 2.0 + 0.25, -1.0 + 0.25])  # -1.25, -0.75
    p = 1 / (1 + np.exp(-z))
    expected_loss = np.mean([-np.log(p[0]), -np.log(1 - p[1])])
    loss, (gW, gb) = net.loss_and_grads(X, y)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    err = p - y  # d loss / d z per sample
    assert np.allclose(gW[:, 0], (X * err[:, None]).mean(axis=0), rtol=1e-12)
    assert np.allclose(gb, [err.mean()], rtol=1e-12)


def test_params_are_the_arrays_the_network_computes_with():
    net = Network([3, 4, 2 + 1], ["tanh"], "softmax_cross_entropy", rng=np.random.default_rng(0))
    shapes = [p.shape for p in net.params]
    assert shapes == [(3, 4), (4,), (4, 3), (3,)]
    X = np.eye(3)
    before = net.predict_proba(X)
    net.params[3][...] = [0.0, 0.0, 50.0]  # the last bias now decides everything
    after = net.predict_proba(X)
    assert not np.allclose(before, after)
    assert (net.predict(X) == 2).all()
    assert np.allclose(after.sum(axis=1), 1.0)


def test_set_params_loads_saved_weights():
    a = Network([3, 4, 3], ["relu"], "softmax_cross_entropy", rng=np.random.default_rng(0))
    b = Network([3, 4, 3], ["relu"], "softmax_cross_entropy", rng=np.random.default_rng(1))
    X = np.random.default_rng(2).normal(size=(5, 3))
    b.set_params([p.copy() for p in a.params])
    assert np.array_equal(a.decision_function(X), b.decision_function(X))
    with pytest.raises(ValueError, match="shape"):
        b.set_params([np.zeros((4, 3)), *a.params[1:]])


def test_predict_shapes_and_binary_labels():
    rng = np.random.default_rng(0)
    net = Network([2, 3, 1], ["relu"], "sigmoid_binary_cross_entropy", rng=rng)
    X = rng.normal(size=(5, 2))
    proba = net.predict_proba(X)
    assert proba.shape == (5, 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    labels = net.predict(X)
    assert labels.shape == (5,) and set(labels.tolist()) <= {0, 1}
    assert (labels == (proba[:, 1] > 0.5)).all()


@pytest.mark.parametrize("head", ["softmax_cross_entropy", "sigmoid_binary_cross_entropy"])
def test_huge_logits_stay_finite(head):
    n_out = 3 if head == "softmax_cross_entropy" else 1
    net = Network([2, n_out], [], head, init="zeros")
    net.params[0][...] = 1000.0
    net.params[0][:, 0] = -1000.0
    X = np.array([[1.0, 1.0], [-1.0, -1.0]])
    y = np.array([0, 1]) if n_out == 3 else np.array([1, 0])
    loss, grads = net.loss_and_grads(X, y)
    assert np.isfinite(loss) and loss > 100  # confidently wrong on at least one sample
    assert all(np.isfinite(g).all() for g in grads)
    assert np.isfinite(net.predict_proba(X)).all()


def test_sigmoid_hidden_activation_does_not_overflow():
    net = Network([1, 2, 1], ["sigmoid"], "identity_mse", init="zeros")
    net.params[0][...] = 1e4
    out = net.decision_function(np.array([[-1.0], [1.0]]))
    assert np.isfinite(out).all()


@pytest.mark.parametrize("init", ["xavier", "he", "normal"])
def test_init_is_seeded_and_scaled(init):
    a = Network([200, 300, 2], ["relu"], "softmax_cross_entropy", init=init, rng=np.random.default_rng(3))
    b = Network([200, 300, 2], ["relu"], "softmax_cross_entropy", init=init, rng=np.random.default_rng(3))
    c = Network([200, 300, 2], ["relu"], "softmax_cross_entropy", init=init, rng=np.random.default_rng(4))
    assert all(np.array_equal(p, q) for p, q in zip(a.params, b.params))
    assert not np.array_equal(a.params[0], c.params[0])
    W = a.params[0]
    assert (a.params[1] == 0).all()
    expected_std = {"xavier": np.sqrt(2 / 500), "he": np.sqrt(2 / 200), "normal": 0.1}[init]
    assert W.std() == pytest.approx(expected_std, rel=0.03)
    if init == "xavier":
        assert np.abs(W).max() <= np.sqrt(6 / 500)


def test_float32_network_computes_in_float32():
    net = Network([3, 4, 1], ["tanh"], "sigmoid_binary_cross_entropy", dtype=np.float32)
    assert all(p.dtype == np.float32 for p in net.params)
    loss, grads = net.loss_and_grads(np.ones((2, 3)), np.array([0, 1]))
    assert all(g.dtype == np.float32 for g in grads)
    assert np.isfinite(loss)


def test_perceptron_rule_gradient():
    """The perceptron's 'gradient' is -(y - y_hat) x: SGD with lr 1 adds (y - y_hat) x."""
    net = Network([2, 1], [], "perceptron", init="zeros")
    X = np.array([[0.0, 1.0]])
    loss, (gW, gb) = net.loss_and_grads(X, np.array([1]))  # z = 0 -> y_hat = 0, a mistake
    assert loss == 1.0
    assert np.array_equal(gW[:, 0], [0.0, -1.0]) and np.array_equal(gb, [-1.0])
    net.params[1][...] = 0.5  # now z = 0.5 -> y_hat = 1, right
    loss, (gW, gb) = net.loss_and_grads(X, np.array([1]))
    assert loss == 0.0 and not gW.any() and not gb.any()


def test_heads_registry_names_every_head():
    assert set(HEADS) == {"softmax_cross_entropy", "sigmoid_binary_cross_entropy", "identity_mse", "perceptron"}
    with pytest.raises(ValueError, match="unknown activation"):
        Network([2, 2, 1], ["swish"], "identity_mse")
