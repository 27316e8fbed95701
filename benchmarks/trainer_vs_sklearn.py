"""Trainer speed against scikit-learn's MLPClassifier, same data, same process.

Each workload trains the same architecture, batch size, optimizer and number
of epochs with both, ``--repeats`` times in alternation, and reports the
median samples/s (epochs/s for XOR) of each, the median of the paired ratios
ours / scikit-learn's (each pair ran back to back, so a slow spell of a shared
machine cancels out) and the issue's target.  ``on_epoch`` is ``None``; the last columns show what a full
per-epoch record costs on top: a callback that takes every epoch's weight
copies and norms, as a tracker storing weights every epoch does.

    pip install -e '.[bench]'
    python benchmarks/trainer_vs_sklearn.py            # all workloads
    python benchmarks/trainer_vs_sklearn.py digits xor  # some

Not a test: numbers depend on the machine; run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from record import add_option, record
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_info

from trainyard.trainer import Dataset, TrainSpec, fit, load_builtin


@dataclass
class Workload:
    name: str
    data: Callable[[], Dataset]
    hidden: list[int]
    activation: str
    batch_size: int | None
    optimizer: dict
    epochs: int
    target: float  # ours / scikit-learn
    dtype: str = "float64"
    unit: str = "samples/s"


def digits_train() -> Dataset:
    ds = load_builtin("digits")
    return ds.subset(np.arange(1437))  # the 80 % a test_fraction of 0.2 trains on


def xor() -> Dataset:
    return load_builtin("xor")


def dense() -> Dataset:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60_000, 784))
    w = rng.standard_normal((784, 10))
    y = np.argmax(X @ w + rng.standard_normal((60_000, 10)), axis=1)
    return Dataset(X=X, y=y.astype(np.int64), task="classification",
                   feature_names=tuple(f"x{i}" for i in range(784)), classes=tuple(str(i) for i in range(10)))


WORKLOADS = {
    "digits": [Workload("digits 64-128-64-10 adam b32", digits_train, [128, 64], "relu", 32,
                        {"name": "adam", "lr": 1e-3}, 30, 3.0)],
    "xor": [Workload("xor 2-8-1 adam full batch", xor, [8], "tanh", None,
                     {"name": "adam", "lr": 0.01}, 5000, 3.0, unit="epochs/s")],
    "dense": [
        Workload("dense 784-256-128-10 sgd+mom b128 f64", dense, [256, 128], "relu", 128,
                 {"name": "sgd", "lr": 0.01, "momentum": 0.9}, 2, 1.5),
        Workload("dense 784-256-128-10 sgd+mom b128 f32", dense, [256, 128], "relu", 128,
                 {"name": "sgd", "lr": 0.01, "momentum": 0.9}, 2, 2.5, dtype="float32"),
    ],
}


def spec_for(w: Workload) -> TrainSpec:
    return TrainSpec.model_validate({
        "name": w.name,
        "dataset": {"name": "xor", "test_fraction": 0.0},  # the data itself is passed to fit
        "model": {"type": "mlp", "hidden": [{"units": u, "activation": w.activation} for u in w.hidden],
                  "init": "xavier"},
        "optimizer": w.optimizer,
        "epochs": w.epochs,
        "batch_size": w.batch_size,
        "dtype": w.dtype,
        "seed": 0,
    })


def time_ours(w: Workload, data: Dataset, full_record: bool) -> float:
    spec = spec_for(w)

    kept = []

    def everything(record):  # what a tracker keeping every epoch's weights does with a record
        kept.append((record.weights, record.weight_norms, record.grad_norms))

    t = time.perf_counter()
    fit(spec, data, on_epoch=everything if full_record else None)
    return time.perf_counter() - t


def time_sklearn(w: Workload, data: Dataset) -> float:
    opt = w.optimizer
    clf = MLPClassifier(
        hidden_layer_sizes=tuple(w.hidden), activation=w.activation, solver=opt["name"],
        learning_rate_init=opt["lr"], momentum=opt.get("momentum", 0.0), nesterovs_momentum=False,
        batch_size=w.batch_size or len(data.X), max_iter=w.epochs, alpha=0.0, shuffle=True,
        tol=0.0, n_iter_no_change=10**9, random_state=0,
    )
    X = data.X.astype(np.float64)  # the reference always trains in float64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        clf.fit(X, data.y)
        return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD", help=f"any of {', '.join(WORKLOADS)}")
    parser.add_argument("--repeats", type=int, default=7)
    add_option(parser)
    args = parser.parse_args()
    unknown = sorted(set(args.workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}")
    blas = ", ".join(f"{i['internal_api']} {i.get('architecture', '')} x{i['num_threads']}" for i in threadpool_info())
    print(f"numpy {np.__version__}; thread pools: {blas}; median of {args.repeats} runs\n")
    print("| workload | unit | ours | scikit-learn | ratio | target | ours + full record | record cost |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for key in args.workloads or WORKLOADS:
        for w in WORKLOADS[key]:
            data = w.data()
            work = w.epochs * (1 if w.unit == "epochs/s" else len(data.X))
            ours, ref, full = [], [], []
            for _ in range(args.repeats):
                ours.append(time_ours(w, data, full_record=False))
                ref.append(time_sklearn(w, data))
                full.append(time_ours(w, data, full_record=True))
            o, r, f = (statistics.median(v) for v in (ours, ref, full))
            ratio = statistics.median(b / a for a, b in zip(ours, ref))
            cost = statistics.median(c / a - 1 for a, c in zip(ours, full))
            print(f"| {w.name} | {w.unit} | {work / o:,.0f} | {work / r:,.0f} | {ratio:.2f}x | "
                  f">= {w.target}x | {work / f:,.0f} | {cost:+.0%} |", flush=True)
            record(args.record, benchmark="trainer", figure=w.name, unit=w.unit, ours=work / o,
                   reference="scikit-learn MLPClassifier", reference_value=work / r, ratio=ratio,
                   target=f">= {w.target}x", met=ratio >= w.target)


if __name__ == "__main__":
    main()
