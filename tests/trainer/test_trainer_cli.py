"""Tests for the offline CLI, ``python -m trainyard.trainer SPEC.json [--data CSV --target COL] [--out W.npz]``.

Each test runs the CLI as a subprocess, as a user would.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from factories import xor

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])

XOR_SPEC = xor(name="xor-cli", optimizer={"name": "adam", "lr": 0.05}, epochs=300, batch_size=None)
# The seed notebook's OR example, with the perceptron.
OR_PERCEPTRON_SPEC = {
    "model": {"type": "perceptron"},
    "dataset": {"name": "or"},
    "optimizer": {"name": "sgd", "lr": 0.1},
    "epochs": 10,
    "batch_size": 1,
    "shuffle": False,
}
# Linear regression on sine with plain SGD at lr 10: the loss overflows (epoch 17 with seed 0).
DIVERGING_SPEC = {
    "dataset": {"name": "sine"},
    "model": {"hidden": []},
    "optimizer": {"name": "sgd", "lr": 10.0},
    "epochs": 200,
    "seed": 0,
}


def run_cli(*args: Any, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-P", "-m", "trainyard.trainer", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_spec(tmp_path: Path, spec: dict | str, name: str = "spec.json") -> Path:
    path = tmp_path / name
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return path


def assert_clean_failure(proc: subprocess.CompletedProcess, code: int) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "error" in proc.stderr
    assert proc.stdout.strip() == "", proc.stdout


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


# ------------------------------------------------------------------ training
def test_xor_mlp_trains_and_saves_weights(tmp_path):
    spec = write_spec(tmp_path, XOR_SPEC)
    out = tmp_path / "w.npz"
    proc = run_cli(spec, "--out", out)
    assert proc.returncode == 0, proc.stderr

    summary = json.loads(proc.stdout)
    assert summary["name"] == "xor-cli"
    assert summary["epoch"] == 300
    assert summary["train_accuracy"] == 1.0
    assert summary["stop_reason"] == "completed"
    assert summary["val_loss"] is None and summary["val_accuracy"] is None
    assert 0.0 <= summary["train_loss"] < 0.1
    assert "weight_norms" not in summary and "grad_norms" not in summary

    # the progress bar on stderr (not a terminal: a line per tenth of the run)
    assert "epoch 300/300" in proc.stderr
    assert "loss" in proc.stderr
    assert "epoch 30/300" in proc.stderr

    assert out.is_file()
    with np.load(out, allow_pickle=False) as npz:
        weights = {k: npz[k] for k in npz.files}
    assert sorted(weights) == ["W1", "W2", "b1", "b2"]
    assert weights["W1"].shape == (2, 8)
    assert weights["b1"].shape == (8,)
    assert weights["W2"].shape == (8, 1)
    assert weights["b2"].shape == (1,)
    assert all(np.isfinite(w).all() for w in weights.values())

    hidden = np.tanh(XOR_X @ weights["W1"] + weights["b1"])
    p = sigmoid(hidden @ weights["W2"] + weights["b2"])[:, 0]
    assert (p > 0.5).astype(int).tolist() == [0, 1, 1, 0]


def test_quiet_has_no_progress_bar(tmp_path):
    proc = run_cli(write_spec(tmp_path, XOR_SPEC), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["train_accuracy"] == 1.0
    assert "epoch" not in proc.stderr


def test_or_perceptron_from_the_seed_notebook(tmp_path):
    spec = write_spec(tmp_path, OR_PERCEPTRON_SPEC)
    out = tmp_path / "or.npz"
    proc = run_cli(spec, "--out", out)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["epoch"] == 10
    assert summary["train_accuracy"] == 1.0
    assert "epoch 10/10" in proc.stderr

    with np.load(out, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["W1", "b1"]
        W, b = npz["W1"], npz["b1"]
    assert W.shape == (2, 1) and b.shape == (1,)
    step = ((XOR_X @ W + b)[:, 0] > 0).astype(int)
    assert step.tolist() == [0, 1, 1, 1]


def _separable_csv(path: Path, rows: int = 40) -> Path:
    """Two classes far apart on x1; the label is the *first* column."""
    lines = ["label,x1,x2"]
    for i in range(rows):
        positive = i % 2 == 0
        x1 = (2.0 if positive else -2.0) + 0.05 * (i % 7)
        x2 = -1.0 + 0.1 * (i % 13)
        lines.append(f"{'pos' if positive else 'neg'},{x1:.3f},{x2:.3f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_trains_on_a_csv_with_a_target_column(tmp_path):
    csv = _separable_csv(tmp_path / "toy.csv")
    spec = write_spec(
        tmp_path,
        {
            "dataset": {"upload": "toy", "standardize": True},
            "model": {"hidden": [{"units": 4, "activation": "tanh"}]},
            "optimizer": {"name": "adam", "lr": 0.05},
            "epochs": 60,
            "batch_size": 8,
        },
    )
    out = tmp_path / "toy.npz"
    proc = run_cli(spec, "--data", csv, "--target", "label", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["epoch"] == 60
    assert summary["train_accuracy"] == 1.0
    # an upload holds out 0.2 by default: 8 of 40 rows
    assert summary["val_accuracy"] == 1.0
    assert summary["val_loss"] is not None
    with np.load(out, allow_pickle=False) as npz:
        files = set(npz.files)
        assert npz["W1"].shape == (2, 4)  # x1, x2: the label column is not a feature
        assert npz["W2"].shape == (4, 1)  # two classes: one sigmoid output
        assert npz["mean"].shape == (2,) and npz["scale"].shape == (2,)
    assert files == {"W1", "b1", "W2", "b2", "mean", "scale"}


def test_csv_target_defaults_to_the_last_column(tmp_path):
    csv = tmp_path / "last.csv"
    lines = ["x1,x2,y"] + [f"{(1.5 if i % 2 else -1.5) + 0.01 * i:.3f},{0.1 * (i % 5):.2f},{i % 2}" for i in range(40)]
    csv.write_text("\n".join(lines) + "\n")
    spec = write_spec(
        tmp_path,
        {"dataset": {"name": "xor"}, "optimizer": {"name": "sgd", "lr": 0.5}, "epochs": 30, "batch_size": None},
    )
    proc = run_cli(spec, "--data", csv, "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["train_accuracy"] == 1.0
    assert summary["val_accuracy"] is None  # the spec's xor default: nothing held out


# ------------------------------------------------------------------- failures
@pytest.mark.parametrize(
    "mutation, field",
    [
        ({"learning_rate": 0.1}, "learning_rate"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": "300"}, "epochs"),
        ({"model": {"hidden": [{"units": 8, "activation": "gelu"}]}}, "model.hidden.0.activation"),
        ({"optimizer": {"name": "adam", "lr": 0.05, "momentum": 0.9}}, "optimizer.momentum"),
    ],
    ids=["unknown-key", "epochs-0", "epochs-string", "activation", "nested-unknown-key"],
)
def test_invalid_spec_exits_2_naming_the_field(tmp_path, mutation, field):
    spec = write_spec(tmp_path, {**XOR_SPEC, **mutation})
    out = tmp_path / "w.npz"
    proc = run_cli(spec, "--out", out)
    assert_clean_failure(proc, 2)
    assert "invalid spec" in proc.stderr
    assert re.search(rf"^\s+{re.escape(field)}: ", proc.stderr, re.MULTILINE), proc.stderr
    assert not out.exists()


def test_nan_in_json_text_exits_2_naming_the_field(tmp_path):
    text = json.dumps({**XOR_SPEC, "optimizer": {"name": "adam", "lr": "@"}}).replace('"@"', "NaN")
    proc = run_cli(write_spec(tmp_path, text))
    assert_clean_failure(proc, 2)
    assert "optimizer.lr" in proc.stderr
    assert "finite" in proc.stderr


def test_cross_field_rule_exits_2_with_its_message(tmp_path):
    spec = write_spec(tmp_path, {**OR_PERCEPTRON_SPEC, "early_stopping": {"monitor": "val_loss"}})
    proc = run_cli(spec)
    assert_clean_failure(proc, 2)
    assert "early_stopping.monitor" in proc.stderr


@pytest.mark.parametrize("text", ["not json at all", '{"dataset": {"name": "xor"},', "", "[]"])
def test_not_a_json_object_exits_2(tmp_path, text):
    proc = run_cli(write_spec(tmp_path, text))
    assert_clean_failure(proc, 2)
    assert "invalid spec" in proc.stderr


def test_missing_spec_file_exits_2(tmp_path):
    missing = tmp_path / "nope.json"
    proc = run_cli(missing)
    assert_clean_failure(proc, 2)
    assert "nope.json" in proc.stderr


def test_missing_csv_exits_2(tmp_path):
    proc = run_cli(write_spec(tmp_path, XOR_SPEC), "--data", tmp_path / "missing.csv")
    assert_clean_failure(proc, 2)
    assert "missing.csv" in proc.stderr


def test_unknown_csv_target_exits_2(tmp_path):
    csv = _separable_csv(tmp_path / "toy.csv")
    proc = run_cli(write_spec(tmp_path, XOR_SPEC), "--data", csv, "--target", "nosuchcolumn")
    assert_clean_failure(proc, 2)
    assert "nosuchcolumn" in proc.stderr


def test_upload_spec_without_data_exits_2(tmp_path):
    proc = run_cli(write_spec(tmp_path, {"dataset": {"upload": "abc"}}))
    assert_clean_failure(proc, 2)
    assert "dataset.upload" in proc.stderr


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"dataset": {"name": "xor"}, "model": {"hidden": [{"units": 4096}] * 16}}, "model.hidden"),
        ({"dataset": {"name": "sine"}, "model": {"type": "perceptron"}}, "model.type"),
        ({"dataset": {"name": "xor"}, "loss": "mse"}, "loss"),
    ],
    ids=["too-many-parameters", "perceptron-on-regression", "mse-on-classification"],
)
def test_spec_that_does_not_fit_the_data_exits_2(tmp_path, spec, field):
    proc = run_cli(write_spec(tmp_path, spec))
    assert_clean_failure(proc, 2)
    assert f"{field}:" in proc.stderr


def test_accuracy_early_stopping_on_regression_is_refused(tmp_path):
    """Monitoring an accuracy on a regression task can never stop training (accuracy is None).

    It should be refused as a spec that does not fit the data, naming the field.
    """
    spec = {
        "dataset": {"name": "sine", "n_samples": 40},
        "early_stopping": {"monitor": "val_accuracy", "patience": 2},
        "epochs": 30,
    }
    proc = run_cli(write_spec(tmp_path, spec), "--quiet")
    assert proc.returncode == 2, (proc.returncode, proc.stdout)
    assert "early_stopping.monitor" in proc.stderr


def test_diverging_spec_exits_1(tmp_path):
    spec = write_spec(tmp_path, DIVERGING_SPEC)
    out = tmp_path / "w.npz"
    first = run_cli(spec, "--out", out)
    assert_clean_failure(first, 1)
    match = re.search(r"diverged at epoch (\d+)", first.stderr)
    assert match, first.stderr
    assert 1 <= int(match.group(1)) < DIVERGING_SPEC["epochs"]
    assert not out.exists()
    # seeded, so deterministic: the same epoch again
    second = run_cli(spec, "--quiet")
    assert second.returncode == 1
    assert re.search(r"diverged at epoch (\d+)", second.stderr).group(1) == match.group(1)


def test_out_without_npz_suffix_names_the_file_it_wrote(tmp_path):
    """``--out weights`` must not report a file that does not exist (np.savez appends ``.npz``)."""
    out = tmp_path / "weights"
    proc = run_cli(write_spec(tmp_path, OR_PERCEPTRON_SPEC), "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"weights saved to (.+)$", proc.stderr, re.MULTILINE)
    assert match, proc.stderr
    reported = Path(match.group(1).strip())
    assert reported.is_file(), f"reported {reported}, wrote {sorted(p.name for p in tmp_path.iterdir())}"


def test_out_in_a_missing_directory_is_a_clean_error(tmp_path):
    """An unwritable ``--out`` is a usage error (2), not a traceback with the 'diverged' status 1."""
    out = tmp_path / "no" / "such" / "dir" / "w.npz"
    proc = run_cli(write_spec(tmp_path, OR_PERCEPTRON_SPEC), "--out", out, "--quiet")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "error" in proc.stderr
