"""Training end to end: the seed's examples, real datasets, determinism, resume, stopping, divergence."""

import numpy as np
import pytest

from trainyard.trainer import STOP, Checkpoint, SpecError, TrainingDiverged, TrainSpec, fit, load_csv

GATE_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])


def spec(**fields) -> TrainSpec:
    return TrainSpec.model_validate(fields)


def perceptron(gate: str, *, epochs=10, seed=0, shuffle=False) -> TrainSpec:
    """The seed notebook's setting: zero weights, lr 0.1, one sample at a time, 10 epochs."""
    return spec(
        dataset={"name": gate}, model={"type": "perceptron"}, optimizer={"name": "sgd", "lr": 0.1},
        epochs=epochs, batch_size=1, shuffle=shuffle, seed=seed,
    )


def xor_mlp(**overrides) -> TrainSpec:
    fields = dict(
        dataset={"name": "xor"}, model={"hidden": [{"units": 8, "activation": "tanh"}]},
        optimizer={"name": "sgd", "lr": 0.5, "momentum": 0.9}, epochs=300, batch_size=4, seed=0,
    )
    return spec(**{**fields, **overrides})


# ------------------------------------------------------------ the seed notebook
def test_seed_or_example_done_right():
    """The notebook's perceptron answers 1 for [0, 0]; the correct rule does not."""
    result = fit(perceptron("or"))
    assert result.network.predict(GATE_INPUTS).tolist() == [0, 1, 1, 1]
    W, b = result.network.params
    # Worked by hand: the first mistakes on [0, 1] and [1, 0] add 0.1 to each weight and to the bias,
    # the mistake on [0, 0] then takes 0.1 off the bias; after that every answer is right.
    assert np.allclose(W[:, 0], [0.1, 0.1]) and np.allclose(b, [0.0])
    assert result.history[-1].train_accuracy == 1.0


@pytest.mark.parametrize("gate,truth", [("or", [0, 1, 1, 1]), ("and", [0, 0, 0, 1])])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perceptron_learns_or_and_and(gate, truth, seed):
    result = fit(perceptron(gate, epochs=20, seed=seed, shuffle=True))
    assert result.network.predict(GATE_INPUTS).tolist() == truth


@pytest.mark.parametrize("seed", range(5))
def test_perceptron_never_learns_xor(seed):
    seen = []
    fit(perceptron("xor", epochs=200, seed=seed, shuffle=True),
        on_epoch=lambda r: seen.append((r.train_accuracy, r.weights)))
    assert len(seen) == 200
    # XOR is not linearly separable: no weights the rule ever reaches classify all four points.
    for _, weights in seen:
        W, b = weights
        pred = (GATE_INPUTS @ W[:, 0] + b[0] > 0).astype(int)
        assert pred.tolist() != [0, 1, 1, 0]
    assert all(acc < 1.0 for acc, _ in seen)


@pytest.mark.parametrize("gate,truth", [("or", [0, 1, 1, 1]), ("xor", [0, 1, 1, 0])])
def test_mlp_learns_or_and_xor(gate, truth):
    result = fit(xor_mlp(dataset={"name": gate}))
    assert result.network.predict(GATE_INPUTS).tolist() == truth
    assert result.final.train_loss < 0.05


# --------------------------------------------------------------- real datasets
@pytest.mark.slow
def test_iris_held_out_accuracy():
    """30 held-out flowers make one split's accuracy move in steps of 3.3 %; average ten splits."""
    accuracies = []
    for seed in range(10):
        s = spec(
            dataset={"name": "iris", "test_fraction": 0.2, "standardize": True},
            model={"hidden": [{"units": 16, "activation": "tanh"}]},
            optimizer={"name": "adam", "lr": 0.01}, epochs=100, batch_size=16, seed=seed,
        )
        accuracies.append(fit(s).final.val_accuracy)
    assert np.mean(accuracies) >= 0.93
    assert min(accuracies) >= 0.85


@pytest.mark.slow
def test_digits_held_out_accuracy_within_30_epochs():
    s = spec(
        dataset={"name": "digits", "test_fraction": 0.2, "standardize": True},
        model={"hidden": [{"units": 128, "activation": "relu"}, {"units": 64, "activation": "relu"}], "init": "he"},
        optimizer={"name": "adam", "lr": 0.001}, epochs=30, batch_size=32, seed=0,
    )
    result = fit(s)
    assert len(result.history) == 30
    assert result.final.val_accuracy >= 0.96


def test_spirals_and_sine_learn():
    spirals = fit(spec(
        dataset={"name": "spirals", "standardize": True},
        model={"hidden": [{"units": 32, "activation": "relu"}, {"units": 32, "activation": "relu"}]},
        optimizer={"name": "adam", "lr": 0.01}, epochs=150, batch_size=32,
    ))
    assert spirals.final.val_accuracy >= 0.9
    sine = fit(spec(
        dataset={"name": "sine"}, model={"hidden": [{"units": 32, "activation": "tanh"}]},
        optimizer={"name": "adam", "lr": 0.01}, epochs=300, batch_size=32,
    ))
    assert sine.final.train_accuracy is None and sine.final.val_accuracy is None
    assert sine.final.val_loss < 0.05  # noise 0.1 puts the floor near 0.01


def test_user_csv_through_fit():
    rows = ["a,b,label"] + [f"{i / 10},{(i % 7) / 7},{'yes' if i % 2 else 'no'}" for i in range(60)]
    data = load_csv("\n".join(rows).encode(), target="label")
    result = fit(spec(dataset={"upload": "abc", "test_fraction": 0.25}, epochs=5), data)
    assert result.classes == ("no", "yes")
    assert len(result.history) == 5 and result.final.val_loss is not None


def test_upload_without_data_is_refused():
    with pytest.raises(SpecError, match="dataset.upload"):
        fit(spec(dataset={"upload": "abc"}))


# ------------------------------------------------------------ records & result
def test_records_carry_metrics_weights_and_norms():
    records = []
    result = fit(xor_mlp(epochs=5), on_epoch=records.append)
    assert [r.epoch for r in records] == [1, 2, 3, 4, 5]
    r = records[-1]
    assert [w.shape for w in r.weights] == [(2, 8), (8,), (8, 1), (1,)]
    assert all(np.array_equal(a, b) for a, b in zip(r.weights, result.network.params))
    assert len(r.weight_norms) == 2 and len(r.grad_norms) == 2
    assert r.weight_norms[0] == pytest.approx(np.linalg.norm(r.weights[0]))
    assert r.lr == 0.5 and r.seconds > 0 and r.val_loss is None and 0 <= r.train_accuracy <= 1
    # the weights are copies: later epochs did not change the first record's
    assert not np.array_equal(records[0].weights[0], records[-1].weights[0])
    assert all(h.weights is None for h in result.history)
    assert [h.metrics() for h in result.history] == [x.metrics() for x in records]


def test_float32_trains_in_float32():
    result = fit(xor_mlp(dtype="float32"))
    assert all(p.dtype == np.float32 for p in result.network.params)
    assert result.network.predict(GATE_INPUTS).tolist() == [0, 1, 1, 0]


def test_learning_rate_of_zero_keeps_gradient_norms_and_weights():
    """A cosine schedule with t_max < epochs ends at min_lr 0: SGD then stands still (no momentum)."""
    records = []
    fit(xor_mlp(epochs=6, optimizer={"name": "sgd", "lr": 0.5},
                lr_schedule={"type": "cosine", "t_max": 3, "min_lr": 0.0}), on_epoch=records.append)
    assert [r.lr for r in records][3:] == [0.0, 0.0, 0.0]
    assert all(g > 0 for r in records for g in r.grad_norms)
    assert all(np.array_equal(a, b) for a, b in zip(records[3].weights, records[5].weights))


def test_schedule_sets_each_epochs_lr():
    lrs = [r.lr for r in fit(xor_mlp(epochs=5, lr_schedule={"type": "exponential", "gamma": 0.5})).history]
    assert lrs == pytest.approx([0.5, 0.25, 0.125, 0.0625, 0.03125])


# ------------------------------------------------------ determinism and resume
def assert_same_run(a, b):
    assert [h.metrics() | {"seconds": 0} for h in a.history] == [h.metrics() | {"seconds": 0} for h in b.history]
    assert all(np.array_equal(p, q) for p, q in zip(a.network.params, b.network.params))


@pytest.mark.parametrize("optimizer", [
    {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
    {"name": "adam", "lr": 0.01, "weight_decay": 0.001},
    {"name": "rmsprop", "lr": 0.005},
])
def test_same_spec_same_result_bit_for_bit(optimizer):
    s = spec(dataset={"name": "moons"}, model={"hidden": [{"units": 16}]}, optimizer=optimizer,
             epochs=20, batch_size=16, seed=3)
    assert_same_run(fit(s), fit(s))
    other = fit(s.model_copy(update={"seed": 4}))
    assert not np.array_equal(other.network.params[0], fit(s).network.params[0])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("stop_at", [1, 17])
def test_stop_and_resume_is_bit_identical(stop_at, dtype):
    s = spec(dataset={"name": "circles", "test_fraction": 0.25},
             model={"hidden": [{"units": 12, "activation": "tanh"}]},
             optimizer={"name": "adam", "lr": 0.01}, lr_schedule={"type": "cosine"}, epochs=40, batch_size=10,
             dtype=dtype, seed=11, early_stopping={"monitor": "val_loss", "patience": 1000})
    straight = fit(s)

    first = fit(s, on_epoch=lambda r: STOP if r.epoch == stop_at else None)
    assert first.stop_reason == "stopped" and first.checkpoint.epoch == stop_at
    blob = first.checkpoint.to_bytes()
    resumed = fit(s, checkpoint=Checkpoint.from_bytes(blob))
    assert resumed.history[0].epoch == stop_at + 1
    assert [h.metrics() | {"seconds": 0} for h in first.history + resumed.history] == [
        h.metrics() | {"seconds": 0} for h in straight.history
    ]
    assert all(np.array_equal(p, q) for p, q in zip(resumed.network.params, straight.network.params))


def test_checkpoint_from_inside_on_epoch_resumes_too():
    s = xor_mlp(epochs=30, batch_size=2)
    straight = fit(s)
    saved = {}
    fit(s, on_epoch=lambda r: saved.setdefault("c", r.checkpoint().to_bytes()) if r.epoch == 12 else None)
    resumed = fit(s, checkpoint=Checkpoint.from_bytes(saved["c"]))
    assert all(np.array_equal(p, q) for p, q in zip(resumed.network.params, straight.network.params))


def test_checkpoint_of_another_spec_is_refused():
    c = fit(xor_mlp(epochs=3)).checkpoint
    with pytest.raises(SpecError, match="different spec"):
        fit(xor_mlp(epochs=3, seed=1), checkpoint=c)
    more = fit(xor_mlp(epochs=6, name="longer"), checkpoint=c)  # more epochs is fine
    assert [h.epoch for h in more.history] == [4, 5, 6]


def test_checkpoint_bytes_are_npz_without_pickle():
    blob = fit(xor_mlp(epochs=2)).checkpoint.to_bytes()
    assert blob[:2] == b"PK"
    with pytest.raises(ValueError, match="not a trainer checkpoint"):
        Checkpoint.from_bytes(b"definitely not a zip")


# ------------------------------------------------------------ stopping & errors
def test_on_epoch_stop():
    result = fit(xor_mlp(epochs=50), on_epoch=lambda r: STOP if r.epoch == 7 else None)
    assert result.stop_reason == "stopped" and len(result.history) == 7


def test_early_stopping_stops_and_restores_best():
    s = spec(dataset={"name": "moons", "test_fraction": 0.3, "noise": 0.3},
             model={"hidden": [{"units": 64}, {"units": 64}]}, optimizer={"name": "adam", "lr": 0.05},
             epochs=500, batch_size=8, seed=0,
             early_stopping={"monitor": "val_loss", "patience": 5, "restore_best": True})
    result = fit(s)
    assert result.stop_reason == "early_stopping"
    assert len(result.history) < 500
    best = min(result.history, key=lambda h: h.val_loss)
    assert result.best_epoch == best.epoch
    assert len(result.history) == best.epoch + 5
    # the network holds the best epoch's weights, not the last
    from trainyard.trainer.datasets import load_builtin, prepare
    split, scaler = prepare(load_builtin("moons", noise=0.3, seed=0), test_fraction=0.3, seed=0, standardize=False)
    loss, _ = result.network.evaluate(split.val.X, split.val.y)
    assert loss == pytest.approx(best.val_loss, rel=1e-9)


def test_divergence_names_the_epoch():
    s = spec(dataset={"name": "sine"}, model={"hidden": [{"units": 16, "activation": "relu"}]},
             optimizer={"name": "sgd", "lr": 10.0}, epochs=100, batch_size=8)
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch \d+") as info:
        fit(s)
    assert 1 <= info.value.epoch <= 100


def test_loss_must_fit_the_task():
    with pytest.raises(SpecError, match="loss"):
        fit(xor_mlp(loss="mse"))
    with pytest.raises(SpecError, match="loss"):
        fit(spec(dataset={"name": "sine"}, loss="cross_entropy"))
    with pytest.raises(SpecError, match="model.type"):
        fit(spec(dataset={"name": "sine"}, model={"type": "perceptron"}))


def test_test_fraction_too_large_for_the_gate():
    with pytest.raises(SpecError, match="test_fraction"):
        fit(xor_mlp(dataset={"name": "or", "test_fraction": 0.5}))  # AND's and OR's lone class can't be split


def test_check_refuses_what_fit_would_refuse_without_training():
    """``check`` runs every test ``fit`` makes before its first epoch: the API refuses such specs at submission."""
    from trainyard.trainer import check

    too_large = xor_mlp(model={"hidden": [{"units": 4096}, {"units": 4096}]}, epochs=1_000_000)
    for bad, field in [
        (too_large, "model.hidden"),
        (xor_mlp(loss="mse"), "loss"),
        (xor_mlp(dataset={"name": "or", "test_fraction": 0.5}), "dataset.test_fraction"),
        (xor_mlp(batch_size=None, dataset={"name": "moons", "n_samples": 100_000},
                 model={"hidden": [{"units": 4096}]}), "batch_size"),
    ]:
        with pytest.raises(SpecError) as refused:
            check(bad)
        assert refused.value.field == field
        with pytest.raises(SpecError) as also:
            fit(bad)
        assert also.value.field == field
    assert check(xor_mlp().model_dump()) == xor_mlp()  # a dict is validated; a good spec comes back
