"""Each optimizer against its textbook update, step by step; schedules against their formulas."""

import math

import numpy as np
import pytest

from trainyard.trainer import TrainSpec, fit
from trainyard.trainer.optimizers import SGD, Adam, RMSprop, learning_rate, make_optimizer

STEPS = 6
LR = 0.05


def run(opt_cls, **hyper):
    rng = np.random.default_rng(0)
    params = rng.normal(size=10)
    mask = np.ones(10)
    mask[-3:] = 0.0  # the last three are "biases"
    grads = [rng.normal(size=10) for _ in range(STEPS)]
    start = params.copy()
    opt = opt_cls(params, mask, **hyper)
    trajectory = []
    for g in grads:
        opt.step(g * opt.grad_scale(LR), LR)
        trajectory.append(params.copy())
    return start, mask, grads, trajectory


def textbook_sgd(p, mask, grads, momentum=0.0, nesterov=False, weight_decay=0.0):
    """Sutskever et al. (2013): v = mu v - lr g; p += v, or p += mu v - lr g with Nesterov."""
    v = np.zeros_like(p)
    out = []
    for g in grads:
        g = g + weight_decay * mask * p
        v = momentum * v - LR * g
        p = p + (momentum * v - LR * g if nesterov else v)
        out.append(p)
    return out


def textbook_adam(p, mask, grads, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    out = []
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * mask * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        p = p - LR * m_hat / (np.sqrt(v_hat) + eps)
        out.append(p)
    return out


def textbook_rmsprop(p, mask, grads, rho=0.9, eps=1e-8, weight_decay=0.0):
    s = np.zeros_like(p)
    out = []
    for g in grads:
        g = g + weight_decay * mask * p
        s = rho * s + (1 - rho) * g * g
        p = p - LR * g / (np.sqrt(s) + eps)
        out.append(p)
    return out


CASES = [
    (SGD, textbook_sgd, {}),
    (SGD, textbook_sgd, {"momentum": 0.9}),
    (SGD, textbook_sgd, {"momentum": 0.8, "nesterov": True}),
    (SGD, textbook_sgd, {"momentum": 0.9, "weight_decay": 0.1}),
    (Adam, textbook_adam, {}),
    (Adam, textbook_adam, {"beta1": 0.5, "beta2": 0.9, "eps": 1e-3}),
    (Adam, textbook_adam, {"weight_decay": 0.01}),
    (RMSprop, textbook_rmsprop, {}),
    (RMSprop, textbook_rmsprop, {"rho": 0.5, "eps": 1e-4, "weight_decay": 0.2}),
]


@pytest.mark.parametrize("opt_cls,textbook,hyper", CASES)
def test_updates_follow_the_textbook(opt_cls, textbook, hyper):
    start, mask, grads, ours = run(opt_cls, **hyper)
    expected = textbook(start, mask, grads, **hyper)
    for step, (a, b) in enumerate(zip(ours, expected), start=1):
        assert np.allclose(a, b, rtol=1e-12, atol=1e-14), f"step {step}"


def test_weight_decay_spares_biases():
    params = np.ones(4)
    mask = np.array([1.0, 1.0, 0.0, 0.0])
    SGD(params, mask, weight_decay=0.5).step(np.zeros(4), 1.0)
    assert params.tolist() == [0.5, 0.5, 1.0, 1.0]
    params = np.ones(4)
    SGD(params, mask, weight_decay=0.5).step(np.zeros(4), 0.1)  # the decay is scaled by lr as well
    assert params.tolist() == pytest.approx([0.95, 0.95, 1.0, 1.0])


def test_state_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=5) for _ in range(4)]
    a = np.ones(5)
    opt_a = Adam(a, np.ones(5))
    for g in grads:
        opt_a.step(g.copy(), LR)
    b = np.ones(5)
    opt_b = Adam(b, np.ones(5))
    for g in grads[:2]:
        opt_b.step(g.copy(), LR)
    c = b.copy()
    opt_c = Adam(c, np.ones(5))
    opt_c.load_state(opt_b.state())
    for g in grads[2:]:
        opt_c.step(g.copy(), LR)
    assert np.array_equal(a, c)


def test_make_optimizer_from_spec():
    spec = TrainSpec.model_validate(
        {"dataset": {"name": "xor"}, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.5, "nesterov": True}}
    )
    opt = make_optimizer(spec.optimizer, np.zeros(3), np.ones(3))
    assert isinstance(opt, SGD) and opt.momentum == 0.5 and opt.nesterov


def test_schedules():
    def spec(schedule):
        return TrainSpec.model_validate(
            {"dataset": {"name": "xor"}, "optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 100,
             "lr_schedule": schedule}
        ).lr_schedule

    assert learning_rate(0.1, None, 50, 100) == 0.1
    step = spec({"type": "step", "step_size": 10, "gamma": 0.5})
    assert [learning_rate(0.1, step, e, 100) for e in (1, 10, 11, 21)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    exp = spec({"type": "exponential", "gamma": 0.9})
    assert learning_rate(0.1, exp, 3, 100) == pytest.approx(0.1 * 0.81)
    cos = spec({"type": "cosine", "min_lr": 0.01})
    assert learning_rate(0.1, cos, 1, 100) == pytest.approx(0.1)
    assert learning_rate(0.1, cos, 51, 100) == pytest.approx(0.01 + 0.09 * (1 + math.cos(math.pi / 2)) / 2)
    assert learning_rate(0.1, cos, 100, 100) == pytest.approx(0.01, abs=1e-4)
    short = spec({"type": "cosine", "t_max": 10})
    assert learning_rate(0.1, short, 11, 100) == 0.0


# ------------------------------------------------------------ subnormal state


def test_flush_subnormals_zeroes_stuck_moments_only():
    """A moment whose gradient stays zero decays to the smallest subnormals and sticks there (5e-324 * 0.9
    rounds back to 5e-324); flushing zeroes exactly those."""
    opt = Adam(np.ones(4), np.ones(4))
    opt.step(np.array([1e-3, 1e-3, 0.0, 1.0]), 1e-3)
    for _ in range(8000):
        opt.step(np.array([0.0, 0.0, 0.0, 1.0]), 1e-3)
    tiny = np.finfo(np.float64).tiny
    assert 0 < abs(opt.m[0]) < tiny  # stuck: no further step moves it
    normal_v = opt.v[[0, 3]].copy()
    opt.flush_subnormals()
    assert opt.m[0] == opt.m[1] == opt.m[2] == 0.0 and opt.m[3] > tiny
    assert np.array_equal(opt.v[[0, 3]], normal_v)  # v decays by 0.999: still far from subnormal


def test_training_keeps_no_subnormal_optimizer_state():
    """float32 digits with Adam: without the flush, 1,100 moments of dead units are subnormal after 40 epochs."""
    spec = TrainSpec.model_validate({
        "dataset": {"name": "digits", "test_fraction": 0.2},
        "model": {"hidden": [{"units": 128, "activation": "relu"}, {"units": 64, "activation": "relu"}]},
        "optimizer": {"name": "adam", "lr": 1e-3}, "epochs": 40, "batch_size": 32, "seed": 0, "dtype": "float32",
    })
    state = fit(spec).checkpoint.optimizer
    tiny = np.finfo(np.float32).tiny
    for name in ("m", "v"):
        assert not np.any((state[name] != 0) & (np.abs(state[name]) < tiny)), name
