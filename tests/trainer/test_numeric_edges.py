"""The numeric edges a campaign of random specs found (issue 27): each defect's spec, as a regression test."""

import json

import numpy as np
import pytest

from trainyard.trainer import Dataset, TrainSpec, build_network, fit
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
