"""The numeric edges a campaign of random specs found (issue 27): each defect's spec, as a regression test."""

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from trainyard.trainer import Dataset, Network, SpecError, TrainingDiverged, TrainSpec, build_network, check, fit
from trainyard.trainer.datasets import load_builtin
from trainyard.trainer.layers import SigmoidBinaryCrossEntropy


def spec(**fields) -> TrainSpec:
    return TrainSpec.model_validate(fields)


def table(columns: dict[str, np.ndarray], labels: np.ndarray) -> Dataset:
    """A two-class dataset of the given feature columns, as an upload would give it."""
    return Dataset(X=np.column_stack(list(columns.values())), y=labels, task="classification",
                   feature_names=tuple(columns), classes=("no", "yes"))


def finite_json(record) -> str:
    return json.dumps(record.metrics(), allow_nan=False)  # ValueError on NaN or infinity


# -------------------------------------------------------- 1. ties are not correct
def test_training_accuracy_counts_tied_logits_as_predict_does():
    """One dead ReLU unit makes every logit 0: ``predict`` answers class 0 (the first maximum) for every flower."""
    s = spec(dataset={"name": "iris", "test_fraction": 0.0}, model={"hidden": [{"units": 1}]},
             optimizer={"name": "sgd", "lr": 0.1}, epochs=1, batch_size=None, seed=5)
    data = load_builtin("iris")
    initial = build_network(s, data)
    expected = float(np.mean(initial.predict(data.X) == data.y))
    assert expected == pytest.approx(1 / 3)
    assert fit(s).history[0].train_accuracy == expected


def test_early_stopping_on_train_accuracy_does_not_keep_a_tied_epoch():
    s = spec(dataset={"name": "iris", "test_fraction": 0.0}, model={"hidden": [{"units": 1}]},
             optimizer={"name": "sgd", "lr": 0.1}, epochs=3, batch_size=None, seed=5,
             early_stopping={"monitor": "train_accuracy", "patience": 5})
    assert all(h.train_accuracy < 1.0 for h in fit(s).history)


# ------------------------------------------------------- 2. norms of huge weights
ADAM_OVERFLOW = {"dataset": {"name": "xor"}, "model": {"hidden": []},
                 "optimizer": {"name": "adam", "lr": 0.3, "beta2": 0.0, "eps": 1e-300},
                 "epochs": 1, "batch_size": 1, "seed": 24796641}


def test_norms_of_huge_finite_weights_are_finite():
    records = []
    try:
        fit(spec(**ADAM_OVERFLOW), on_epoch=records.append)
    except TrainingDiverged as exc:
        assert exc.epoch == 1
        return
    (record,) = records
    assert max(np.abs(record.weights[0]).max(), 0) > 1e290  # the spec still makes weights near the top of float64
    assert all(math.isfinite(v) for v in record.weight_norms + record.grad_norms)
    finite_json(record)


@pytest.mark.parametrize("dtype,magnitude", [
    *[("float64", m) for m in (1e-300, 1e-200, 1e-30, 1.0, 1e30, 1e300)],
    *[("float32", m) for m in (1e-37, 1e-30, 1e-20, 1.0, 1e20, 1e37)],
])
def test_norms_are_scale_safe(dtype, magnitude):
    net = Network([3, 4, 1], ["tanh"], "sigmoid_binary_cross_entropy", dtype=dtype)
    net.flat[...] = magnitude
    net.grad_flat[...] = magnitude
    expected = [magnitude * math.sqrt(w.size) for w in (net.params[0], net.params[2])]
    assert net.weight_norms() == pytest.approx(expected, rel=1e-6)
    assert net.grad_norms() == pytest.approx(expected, rel=1e-6)


def test_a_norm_beyond_float_range_is_divergence():
    from trainyard.trainer.fit import _check_finite

    with pytest.raises(TrainingDiverged, match="epoch 3: .*norm"):
        _check_finite(3, 0.5, None, np.zeros(2), (math.inf,), (1.0,))


# -------------------------------------------------- 3. perceptron logits overflow
def _huge_rows(scale: float, n: int = 20) -> Dataset:
    rng = np.random.default_rng(0)
    X = rng.uniform(0.5, 2.0, size=(n, 2)) * scale
    return table({"a": X[:, 0], "b": X[:, 1]}, (X[:, 0] > X[:, 1]).astype(np.int64))


@pytest.mark.parametrize("dtype,scale", [("float32", 1e20), ("float64", 1e200)])
def test_perceptron_with_overflowing_logits_diverges(dtype, scale):
    s = spec(dataset={"upload": "big", "test_fraction": 0.0}, model={"type": "perceptron"},
             optimizer={"name": "sgd", "lr": 0.1}, epochs=5, batch_size=None, dtype=dtype)
    with pytest.raises((TrainingDiverged, SpecError)) as raised:
        fit(s, _huge_rows(scale))
    assert "epoch" in str(raised.value) or "dtype" in str(raised.value)


def test_perceptron_loss_of_non_finite_logits_is_nan():
    net = Network([2, 1], [], "perceptron", init="zeros")
    loss, _ = net.evaluate(np.array([[1e300, 1e300]]), np.array([1]))
    assert loss == 1.0  # zero weights answer 0: one error in one row
    net.flat[...] = 1e300
    with np.errstate(over="ignore", invalid="ignore"):
        loss, _ = net.evaluate(np.array([[1e300, 1e300]]), np.array([1]))
    assert math.isnan(loss)


# -------------------------------------------- 4. hyper-parameters below the dtype
@pytest.mark.parametrize("optimizer,field", [
    ({"name": "rmsprop", "lr": 0.01, "eps": 1e-46}, "optimizer.eps"),
    ({"name": "adam", "lr": 0.01, "eps": 1e-40}, "optimizer.eps"),
    ({"name": "sgd", "lr": 1e-39}, "optimizer.lr"),
    ({"name": "sgd", "lr": 0.1, "weight_decay": 1e-45}, "optimizer.weight_decay"),
])
def test_a_hyper_parameter_float32_cannot_represent_is_refused(optimizer, field):
    s = spec(dataset={"name": "xor"}, optimizer=optimizer, epochs=3, batch_size=None, dtype="float32")
    for attempt in (check, fit):
        with pytest.raises(SpecError) as refused:
            attempt(s)
        assert refused.value.field == field and "float32" in refused.value.message
    fit(s.model_copy(update={"dtype": "float64"}))  # float64 holds it


def test_float64_refuses_what_it_cannot_represent_either():
    s = spec(dataset={"name": "xor"}, optimizer={"name": "adam", "eps": 1e-310}, epochs=1)
    with pytest.raises(SpecError) as refused:
        check(s)
    assert refused.value.field == "optimizer.eps"


# --------------------------------------------------- 5. standardising extremes
def _threshold_set(scale: float, n: int = 40) -> Dataset:
    x = np.linspace(1.0, 2.0, n) * scale
    return table({"x": x}, (x > 1.5 * scale).astype(np.int64))


@pytest.mark.parametrize("scale", [1e-300, 1e-160, 1.0, 1e200])
def test_standardising_tiny_and_huge_columns(scale):
    s = spec(dataset={"upload": "x", "test_fraction": 0.0, "standardize": True},
             optimizer={"name": "adam", "lr": 0.1}, epochs=200, batch_size=None)
    result = fit(s, _threshold_set(scale))
    assert result.final.train_accuracy == 1.0
    assert result.standardizer.scale[0] == pytest.approx(np.linspace(1.0, 2.0, 40).std() * scale)


def test_standardising_errors_name_the_standardize_field():
    data = table({"x": np.array([1.7e308, 1.7e308, -1.7e308, -1.7e308, 1.7e308])}, np.array([1, 1, 0, 0, 1]))
    s = spec(dataset={"upload": "x", "test_fraction": 0.0, "standardize": True}, epochs=1)
    with pytest.raises(SpecError) as refused:
        fit(s, data)
    assert refused.value.field == "dataset.standardize" and "column(s) 0" in refused.value.message


# ------------------------------------------------------------ 6. float32's range
@pytest.mark.parametrize("value,what", [(1e300, "too large"), (1e-46, "too small")])
def test_float32_refuses_features_it_cannot_hold(value, what):
    data = table({"fine": np.arange(6.0), "extreme": np.array([0.0, value, 1.0, value, 2.0, 0.5])},
                 np.array([0, 1, 0, 1, 0, 1]))
    s = spec(dataset={"upload": "x", "test_fraction": 0.0}, epochs=2, dtype="float32")
    for attempt in (check, fit):
        with pytest.raises(SpecError) as refused:
            attempt(s, data)
        assert refused.value.field == "dtype"
        assert "'extreme'" in refused.value.message and what in refused.value.message
    check(s.model_copy(update={"dtype": "float64"}), data)  # float64 holds them


def test_float32_accepts_what_standardising_brings_into_range():
    data = table({"x": np.array([0.0, 1e300, 2e300, 3e300])}, np.array([0, 0, 1, 1]))
    fit(spec(dataset={"upload": "x", "test_fraction": 0.0, "standardize": True}, epochs=2, dtype="float32"), data)


# ----------------------------------------------- 7. SGD's norms under a tiny lr
def test_sgd_gradient_norms_survive_a_vanishing_learning_rate():
    records = []
    fit(spec(dataset={"name": "xor"}, model={"hidden": [{"units": 4, "activation": "tanh"}]},
             optimizer={"name": "sgd", "lr": 0.1}, lr_schedule={"type": "exponential", "gamma": 1e-5},
             epochs=12, batch_size=None, dtype="float32"), on_epoch=records.append)
    assert records[-1].lr < 1e-50
    # the weights all but stop moving after a few epochs: the true norm stays what it was
    settled = records[3].grad_norms[0]
    assert settled > 0.01
    for record in records[4:]:
        assert record.grad_norms[0] == pytest.approx(settled, rel=1e-3)


# ------------------------------------------------ 8. evaluation in chunks (RSS)
RSS_PROBE = textwrap.dedent("""
    import json, resource
    from trainyard.trainer import fit, TrainSpec, check, load_builtin
    spec = TrainSpec.model_validate(json.loads({spec!r}))
    check(spec)
    data = load_builtin("sine", n_samples=spec.dataset.n_samples, seed=spec.seed)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = fit(spec, data)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({{"grown_kb": after - before, "val_loss": result.final.val_loss}}))
""")


def test_validation_of_a_large_held_out_set_is_evaluated_in_chunks():
    """900,000 held-out rows through 256 ReLU units: one pass would hold two 1.8 GB temporaries."""
    s = {"dataset": {"name": "sine", "n_samples": 1_000_000, "test_fraction": 0.9},
         "model": {"hidden": [{"units": 256}]}, "epochs": 1, "batch_size": 2000}
    probe = RSS_PROBE.format(spec=json.dumps(s))
    out = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert math.isfinite(report["val_loss"])
    assert report["grown_kb"] < 250_000, report  # kilobytes on Linux: the data is 16 MB, a chunk 32 MB


def test_predict_in_chunks_equals_one_pass():
    rng = np.random.default_rng(0)
    net = Network([3, 40, 30, 4], ["relu", "tanh"], "softmax_cross_entropy", rng=rng)
    X = rng.normal(size=(20_000, 3))
    one_pass = X
    for i, act in enumerate(["relu", "tanh", None]):
        one_pass = one_pass @ net.params[2 * i] + net.params[2 * i + 1]
        one_pass = {"relu": lambda a: np.maximum(a, 0), "tanh": np.tanh, None: lambda a: a}[act](one_pass)
    np.testing.assert_allclose(net.decision_function(X), one_pass, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(net.predict(X[:7]), net.predict(X)[:7])


# ------------------------------------------------ 9. binary cross-entropy >= 0
def test_binary_cross_entropy_is_never_negative():
    """Large, correctly signed logits: the loss is tiny; summed as two large sums it came out at -3.6e-15."""
    rng = np.random.default_rng(0)
    head = SigmoidBinaryCrossEntropy(1)
    negatives = 0
    for _ in range(200):
        y = rng.integers(0, 2, size=64).astype(np.float64)
        z = ((2 * y - 1) * rng.uniform(30, 60, size=64))[None, :].copy()
        loss, correct = head.loss_delta(z, y, np.arange(64), 1.0)
        assert correct == 64
        negatives += loss < 0.0
    assert negatives == 0
    assert (head.losses(z.T * 1.0, y) >= 0).all()


# ------------------------------------------------------- 10. restore_best
def test_restore_best_restores_even_when_early_stopping_never_triggered():
    s = spec(dataset={"name": "moons", "test_fraction": 0.3, "noise": 0.3},
             model={"hidden": [{"units": 64}, {"units": 64}]}, optimizer={"name": "adam", "lr": 0.05},
             epochs=40, batch_size=8, seed=0,
             early_stopping={"monitor": "val_loss", "patience": 1000, "restore_best": True})
    weights = {}
    result = fit(s, on_epoch=lambda r: weights.__setitem__(r.epoch, r.weights))
    assert result.stop_reason == "completed"
    best = min(result.history, key=lambda h: h.val_loss)
    assert result.best_epoch == best.epoch < 40
    assert all(np.array_equal(p, q) for p, q in zip(result.network.params, weights[best.epoch]))
    kept = fit(s.model_copy(update={"early_stopping": s.early_stopping.model_copy(update={"restore_best": False})}))
    assert all(np.array_equal(p, q) for p, q in zip(kept.network.params, weights[40]))
