"""The trainer's promises under random valid specs: a bounded, seeded campaign of hypothesis examples.

Every option of the spec is drawn (every dataset, model, optimizer, schedule
and early-stopping setting, float32 and float64), on the built-ins and on
small uploads whose columns range from 1e-300 to 1e300.  For each spec:

- ``fit`` succeeds, or raises ``SpecError`` naming a field or
  ``TrainingDiverged`` naming an epoch, and nothing else (a numpy warning
  is an error under this suite's settings);
- ``check`` refuses exactly what ``fit`` refuses, on the same field;
- a successful run's records and weights hold finite numbers only;
- the same spec trains bit for bit the same;
- a run stopped at a random epoch and resumed from its checkpoint's bytes
  ends bit for bit as the run never stopped;
- a full-batch epoch's training accuracy is ``predict``'s accuracy on the
  previous epoch's weights.

The default profile is seeded (``derandomize``) and sized to run in well under
a minute on one core.  ``HYPOTHESIS_PROFILE=trainer-campaign-full`` runs the
issue's 12,000 specs instead (about three minutes).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from trainyard.trainer import STOP, Checkpoint, Dataset, SpecError, TrainingDiverged, TrainSpec, build_network, check
from trainyard.trainer import fit as train
from trainyard.trainer.datasets import BUILTIN_NAMES, builtin_shape, load_builtin, prepare

settings.register_profile(
    "trainer-campaign",
    max_examples=2500,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("trainer-campaign-full", settings.get_profile("trainer-campaign"), max_examples=12_000)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "")
CAMPAIGN = settings.get_profile(PROFILE if PROFILE.startswith("trainer-campaign") else "trainer-campaign")

SYNTHETIC = ("moons", "circles", "spirals", "sine")
#: Mini-batch steps of one run at most (its epochs are cut to fit): each spec trains four times.
MAX_STEPS = 2000
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "identity")
#: Hyper-parameters near the ends of float32's and float64's ranges, beside ordinary ones.
TINY = (1e-300, 1e-46, 1e-40, 1e-30, 1e-12)


def log_uniform(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(math.log10(low), math.log10(high)).map(lambda e: float(10.0**e))


def mostly(common: st.SearchStrategy, rare: st.SearchStrategy, odds: int = 6) -> st.SearchStrategy:
    """``rare`` once in ``odds`` draws, ``common`` otherwise."""
    return st.integers(1, odds).flatmap(lambda i: rare if i == 2 else common)  # not 1: hypothesis favours bounds


def probability() -> st.SearchStrategy[float]:
    return st.one_of(st.just(0.0), st.floats(0.0, 0.999), st.sampled_from([0.5, 0.9, 0.99, 0.999]))


def epsilon() -> st.SearchStrategy[float]:
    return mostly(log_uniform(1e-10, 1.0), st.sampled_from(TINY))


@st.composite
def optimizers(draw) -> dict:
    name = draw(st.sampled_from(["sgd", "adam", "rmsprop"]))
    out = {"name": name, "lr": draw(mostly(log_uniform(1e-4, 10.0), st.sampled_from([1e-45, 1e-20, 10.0]), 8))}
    if draw(st.booleans()):
        out["weight_decay"] = draw(st.one_of(st.just(0.0), log_uniform(1e-6, 1.0)))
    if name == "sgd":
        out["momentum"] = draw(probability())
        out["nesterov"] = out["momentum"] > 0 and draw(st.booleans())
    elif name == "adam":
        out |= {"beta1": draw(probability()), "beta2": draw(probability()), "eps": draw(epsilon())}
    else:
        out |= {"rho": draw(probability()), "eps": draw(epsilon())}
    return out


@st.composite
def schedules(draw, lr: float) -> dict | None:
    kind = draw(st.sampled_from([None, "step", "exponential", "cosine"]))
    gamma = draw(st.one_of(st.floats(0.01, 1.0), st.sampled_from([1e-5, 1e-20, 1.0])))
    if kind == "step":
        return {"type": "step", "step_size": draw(st.integers(1, 4)), "gamma": gamma}
    if kind == "exponential":
        return {"type": "exponential", "gamma": gamma}
    if kind == "cosine":
        return {"type": "cosine", "t_max": draw(st.none() | st.integers(1, 6)), "min_lr": draw(st.floats(0.0, lr))}
    return None


@st.composite
def uploads(draw) -> Dataset:
    """A small table whose columns each live at their own scale, from 1e-300 to 1e300."""
    n = draw(st.integers(4, 40))
    n_features = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    exponents = st.sampled_from([-300, -200, -45, -20, 0, 0, 0, 20, 40, 200, 300])
    scales = [10.0 ** draw(exponents) for _ in range(n_features)]
    X = rng.normal(size=(n, n_features)) * np.array(scales)
    names = tuple(f"x{i}" for i in range(n_features))
    if draw(st.booleans()):
        return Dataset(X=X, y=rng.normal(size=n), task="regression", feature_names=names, name="upload")
    k = draw(st.integers(2, 3))
    y = np.arange(n) % k if draw(st.booleans()) else rng.integers(0, k, size=n)
    classes = tuple(f"c{i}" for i in sorted(set(y.tolist())))
    y = np.searchsorted(np.array(sorted(set(y.tolist()))), y)
    if len(classes) < 2:
        y, classes = np.arange(n) % 2, ("c0", "c1")
    return Dataset(X=X, y=y, task="classification", feature_names=names, classes=classes, name="upload")


@st.composite
def cases(draw) -> tuple[TrainSpec, Dataset]:
    """A valid spec and the data it trains on."""
    source = draw(st.sampled_from([*BUILTIN_NAMES, "upload", "upload"]))
    gate = source in ("or", "and", "xor")
    fractions = st.sampled_from([None, 0.0, 0.1, 0.25, 0.5])
    fraction = draw(mostly(st.none(), st.sampled_from([0.1, 0.5])) if gate else fractions)
    dataset: dict = {"standardize": draw(st.booleans())}
    if source == "upload":
        data = draw(uploads())
        dataset |= {"upload": "campaign", "test_fraction": 0.2 if fraction is None else fraction}
    else:
        dataset |= {"name": source, "test_fraction": fraction}
        if source in SYNTHETIC:
            dataset |= {"n_samples": draw(st.integers(4, 300)), "noise": draw(st.none() | st.floats(0.0, 1.0))}
        data = load_builtin(source, n_samples=dataset.get("n_samples"), noise=dataset.get("noise"), seed=0)
    mlp = data.task == "regression" or draw(st.integers(0, 4)) > 0
    if not mlp:
        model: dict = {"type": "perceptron", "init": draw(st.sampled_from(["zeros", "normal"]))}
    else:
        layers = draw(st.lists(st.fixed_dictionaries(
            {"units": st.integers(1, 32), "activation": st.sampled_from(ACTIVATIONS)}), max_size=3))
        model = {"type": "mlp", "hidden": layers, "init": draw(st.sampled_from(["xavier", "he", "normal"]))}
    optimizer = draw(optimizers())
    held_out = dataset["test_fraction"]
    if held_out is None:
        held_out = 0.0 if gate else 0.2
    monitors = ["train_loss", "train_accuracy"] + (["val_loss", "val_accuracy"] if held_out > 0 else [])
    early = None
    if draw(st.booleans()):
        early = {"monitor": draw(st.sampled_from(monitors)), "patience": draw(st.integers(1, 4)),
                 "min_delta": draw(st.sampled_from([0.0, 1e-3, 0.5])), "restore_best": draw(st.booleans())}
    fields = {
        "dataset": dataset, "model": model, "optimizer": optimizer,
        "loss": draw(mostly(st.just("auto"), st.sampled_from(["cross_entropy", "mse"])) if mlp else st.just("auto")),
        "lr_schedule": draw(schedules(optimizer["lr"])),
        "epochs": draw(st.integers(1, 8)),
        "batch_size": draw(st.sampled_from([None, None, 1, 3, 16, 64])),
        "shuffle": draw(st.booleans()), "dtype": draw(st.sampled_from(["float64", "float32"])),
        "seed": draw(st.integers(0, 2**32 - 1)), "early_stopping": early,
    }
    n = data.n_samples if source == "upload" else builtin_shape(source, n_samples=dataset.get("n_samples")).n_samples
    steps = -(-n // (fields["batch_size"] or n))
    fields["epochs"] = max(1, min(fields["epochs"], MAX_STEPS // steps))
    return TrainSpec.model_validate(fields), data


def outcome(spec: TrainSpec, data: Dataset, **kwargs):
    """``fit``'s result, or the documented error it raised (anything else fails the campaign)."""
    try:
        return train(spec, data, **kwargs)
    except SpecError as exc:
        assert exc.field.split(".")[0] in TrainSpec.model_fields, exc
        assert str(exc).startswith(f"{exc.field}: ")
        return exc
    except TrainingDiverged as exc:
        assert 1 <= exc.epoch <= spec.epochs and f"epoch {exc.epoch}" in str(exc)
        return exc


def metrics(history) -> list[dict]:
    return [record.metrics() | {"seconds": 0.0} for record in history]


def same(a, b) -> None:
    """Two outcomes of one spec, bit for bit (records but their wall time, weights, or the error)."""
    if isinstance(a, Exception):
        assert type(a) is type(b) and str(a) == str(b)
        return
    assert metrics(a.history) == metrics(b.history)
    assert a.network.flat.tobytes() == b.network.flat.tobytes()
    assert (a.stop_reason, a.best_epoch) == (b.stop_reason, b.best_epoch)


@CAMPAIGN
@given(case=cases(), stop=st.floats(0.0, 1.0))
def test_campaign(case, stop):
    spec, data = case
    note(f"spec: {spec.model_dump_json(exclude_defaults=True)}")
    if spec.dataset.model_dump().get("upload"):
        note(f"upload: X={data.X.tolist()!r} y={data.y.tolist()!r} task={data.task}")
    checked = None
    try:
        check(spec, data if spec.dataset.model_dump().get("upload") else None)
    except SpecError as exc:
        checked = exc

    records = []
    result = outcome(spec, data, on_epoch=records.append)
    if checked is not None or isinstance(result, SpecError):  # check() refuses exactly what fit() refuses
        assert isinstance(result, SpecError) and checked is not None, (checked, result)
        assert checked.field == result.field, (checked, result)
        event(f"refused: {result.field}")
        return
    event(f"{type(result).__name__}: {getattr(result, 'stop_reason', '')}")

    if isinstance(result, TrainingDiverged):
        assert len(records) == result.epoch - 1
    else:
        for record in result.history:
            json.dumps(record.metrics(), allow_nan=False)
        assert np.isfinite(result.network.flat).all()
        assert result.stop_reason in ("completed", "early_stopping")

    same(result, outcome(spec, data))

    # stop after a random epoch before the end (before the divergence), resume from the checkpoint's bytes
    if records:
        at = 1 + int(stop * (len(records) - 1))
        first = train(spec, data, on_epoch=lambda r: STOP if r.epoch == at else None)
        assert first.stop_reason == "stopped" and first.checkpoint.epoch == at
        resumed = outcome(spec, data, checkpoint=Checkpoint.from_bytes(first.checkpoint.to_bytes()))
        event("stopped and resumed")
        if isinstance(result, TrainingDiverged):
            same(result, resumed)
        else:
            assert metrics(first.history + resumed.history) == metrics(result.history)
            assert resumed.network.flat.tobytes() == result.network.flat.tobytes()
            assert (resumed.stop_reason, resumed.best_epoch) == (result.stop_reason, result.best_epoch)

    # a full batch's training accuracy is predict's on the weights the epoch started from
    split, _ = prepare(data, test_fraction=spec.dataset.held_out, seed=spec.seed, standardize=spec.dataset.standardize)
    train_set = split.train
    full_batch = spec.batch_size is None or spec.batch_size >= train_set.n_samples
    if records and full_batch and records[0].train_accuracy is not None:
        net = build_network(spec, train_set)
        assert train_set.n_samples <= net.chunk_rows()  # one chunk: the very products the batch computed
        event("full-batch accuracy checked against predict")
        for record, weights in zip(records, [net.params, *(r.weights for r in records)]):
            net.set_params([np.array(w) for w in weights])
            with np.errstate(over="ignore", invalid="ignore"):
                accuracy = float(np.mean(net.predict(train_set.X) == train_set.y))
            assert record.train_accuracy == accuracy, (record.epoch, record.train_accuracy, accuracy)
