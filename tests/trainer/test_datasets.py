"""Tests for trainyard.trainer.datasets (built-ins, CSV loading, splitting, standardising)."""

from __future__ import annotations

import io
import json
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainyard.trainer import SpecError, check
from trainyard.trainer.datasets import (
    BUILTIN_NAMES,
    MAX_FEATURES,
    MAX_SAMPLES,
    Dataset,
    DatasetError,
    Split,
    Standardizer,
    builtin_info,
    builtin_shape,
    load_builtin,
    load_csv,
    prepare,
    shape_of,
    train_val_split,
)

SYNTHETIC = ("moons", "circles", "spirals", "sine")
FIXED = ("or", "and", "xor", "iris", "digits")

EXPECTED = {
    # name: (task, n_samples, n_features, n_classes, n_outputs)
    "or": ("classification", 4, 2, 2, 1),
    "and": ("classification", 4, 2, 2, 1),
    "xor": ("classification", 4, 2, 2, 1),
    "moons": ("classification", 200, 2, 2, 1),
    "circles": ("classification", 200, 2, 2, 1),
    "spirals": ("classification", 300, 2, 3, 3),
    "sine": ("regression", 200, 1, 0, 1),
    "iris": ("classification", 150, 4, 3, 3),
    "digits": ("classification", 1797, 64, 10, 10),
}


def knn_loo_accuracy(X: np.ndarray, y: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy (a proxy for 'learnable')."""
    d = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :k]
    votes = np.apply_along_axis(np.bincount, 1, y[nn], minlength=int(y.max()) + 1)
    return float((votes.argmax(1) == y).mean())


# ---------------------------------------------------------------------------
# built-ins
# ---------------------------------------------------------------------------


def test_builtin_names_match_info():
    info = builtin_info()
    assert tuple(d["name"] for d in info) == BUILTIN_NAMES
    assert set(BUILTIN_NAMES) == set(EXPECTED)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_shapes_dtypes(name):
    task, n, f, k, outputs = EXPECTED[name]
    ds = load_builtin(name)
    assert isinstance(ds, Dataset)
    assert ds.name == name
    assert ds.task == task
    assert ds.X.shape == (n, f)
    assert ds.X.dtype == np.float64
    assert ds.X.flags.c_contiguous
    assert np.isfinite(ds.X).all()
    assert (ds.n_samples, ds.n_features, ds.n_classes, ds.n_outputs) == (n, f, k, outputs)
    assert len(ds.feature_names) == f
    assert all(isinstance(s, str) for s in ds.feature_names)
    if task == "classification":
        assert ds.y.shape == (n,)
        assert ds.y.dtype == np.int64
        assert len(ds.classes) == k
        assert set(np.unique(ds.y)) == set(range(k))
    else:
        assert ds.y.shape == (n, 1)
        assert ds.y.dtype == np.float64
        assert ds.classes == ()


@pytest.mark.parametrize(
    "name, y",
    [("or", [0, 1, 1, 1]), ("and", [0, 0, 0, 1]), ("xor", [0, 1, 1, 0])],
)
def test_truth_tables_exact(name, y):
    ds = load_builtin(name)
    np.testing.assert_array_equal(ds.X, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(ds.y, y)
    assert ds.classes == ("0", "1")
    # the seed does not matter for fixed tables
    np.testing.assert_array_equal(load_builtin(name, seed=5).y, y)


def test_builtin_info_is_json_and_consistent():
    info = builtin_info()
    assert json.loads(json.dumps(info)) == info
    for d in info:
        task, n, f, k, outputs = EXPECTED[d["name"]]
        assert d["task"] == task
        assert d["n_features"] == f
        assert d["n_classes"] == k
        assert d["n_outputs"] == outputs
        assert d["description"]
        if d["name"] in SYNTHETIC:
            assert d["n_samples_applies"] and d["noise_applies"]
            assert d["n_samples"] == n
            assert d["fixed_n_samples"] is None
            assert d["source"] is None
        else:
            assert not d["n_samples_applies"] and not d["noise_applies"]
            assert d["n_samples"] is None and d["noise"] is None
            assert d["fixed_n_samples"] == n
    by_name = {d["name"]: d for d in info}
    assert [by_name[n]["noise"] for n in SYNTHETIC] == [0.1, 0.05, 0.2, 0.1]
    for name in ("iris", "digits"):
        assert "CC BY 4.0" in by_name[name]["licence"]
        assert "scikit-learn" in by_name[name]["source"]
        assert "UCI" in by_name[name]["source"]


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_seed_reproducible_and_sensitive(name):
    a = load_builtin(name, seed=7)
    b = load_builtin(name, seed=7)
    c = load_builtin(name, seed=8)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    # default seed is 0
    np.testing.assert_array_equal(load_builtin(name).X, load_builtin(name, seed=0).X)


@pytest.mark.parametrize("name", ["moons", "circles", "spirals"])
@pytest.mark.parametrize("n", [4, 7, 200, 301])
def test_synthetic_classes_balanced(name, n):
    ds = load_builtin(name, n_samples=n)
    counts = np.bincount(ds.y, minlength=ds.n_classes)
    assert counts.sum() == n
    assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_custom_size_and_noise(name):
    ds = load_builtin(name, n_samples=50, noise=0.0, seed=3)
    assert ds.n_samples == 50
    if name != "sine":
        assert ds.n_classes == EXPECTED[name][3]


def test_noise_zero_geometry():
    circles = load_builtin("circles", noise=0)
    radius = np.hypot(circles.X[:, 0], circles.X[:, 1])
    np.testing.assert_allclose(radius[circles.y == 0], 1.0)
    np.testing.assert_allclose(radius[circles.y == 1], 0.5)

    moons = load_builtin("moons", noise=0)
    upper = moons.X[moons.y == 0]
    lower = moons.X[moons.y == 1]
    np.testing.assert_allclose(np.hypot(upper[:, 0], upper[:, 1]), 1.0)
    assert (upper[:, 1] >= 0).all()
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1.0, lower[:, 1] - 0.5), 1.0)
    assert (lower[:, 1] <= 0.5).all()

    sine = load_builtin("sine", noise=0)
    assert (np.abs(sine.X) <= np.pi).all()
    np.testing.assert_allclose(sine.y[:, 0], np.sin(sine.X[:, 0]))


def test_noise_scales_sine_residuals():
    ds = load_builtin("sine", n_samples=20_000, noise=0.3, seed=1)
    residual = ds.y[:, 0] - np.sin(ds.X[:, 0])
    assert abs(residual.std() - 0.3) < 0.01
    assert abs(residual.mean()) < 0.01


@pytest.mark.parametrize("name", ["moons", "circles", "spirals"])
@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_classification_is_learnable(name, seed):
    ds = load_builtin(name, seed=seed)
    assert knn_loo_accuracy(ds.X, ds.y) > 0.9


def test_iris():
    ds = load_builtin("iris")
    assert ds.X.shape == (150, 4)
    assert ds.classes == ("setosa", "versicolor", "virginica")
    assert ds.feature_names == ("sepal_length", "sepal_width", "petal_length", "petal_width")
    np.testing.assert_array_equal(np.bincount(ds.y), [50, 50, 50])
    np.testing.assert_array_equal(ds.X[0], [5.1, 3.5, 1.4, 0.2])
    assert ds.y[0] == 0 and ds.y[-1] == 2
    assert ds.X.min() > 0 and ds.X.max() < 8


def test_digits():
    ds = load_builtin("digits")
    assert ds.X.shape == (1797, 64)
    assert ds.classes == tuple(str(i) for i in range(10))
    assert ds.feature_names[0] == "pixel_0_0"
    assert ds.feature_names[9] == "pixel_1_1"
    assert ds.feature_names[-1] == "pixel_7_7"
    counts = np.bincount(ds.y, minlength=10)
    assert counts.sum() == 1797
    assert (counts >= 170).all() and (counts <= 190).all()
    assert ds.X.min() == 0 and ds.X.max() == 16
    np.testing.assert_array_equal(ds.X, np.round(ds.X))
    assert ds.y[0] == 0 and ds.y[1] == 1


@pytest.mark.parametrize("name", ["iris", "digits"])
def test_cache_cannot_be_corrupted(name):
    first = load_builtin(name)
    original_X = first.X.copy()
    original_y = first.y.copy()
    first.X[:] = -1.0
    first.y[:] = 0
    second = load_builtin(name)
    np.testing.assert_array_equal(second.X, original_X)
    np.testing.assert_array_equal(second.y, original_y)
    assert second.X is not first.X
    assert second.X.flags.writeable  # the caller gets its own copy


def test_truth_table_cannot_be_corrupted():
    a = load_builtin("xor")
    a.X[:] = 9.0
    np.testing.assert_array_equal(load_builtin("xor").X, [[0, 0], [0, 1], [1, 0], [1, 1]])


def test_unknown_builtin_lists_names():
    with pytest.raises(DatasetError, match=r"unknown built-in dataset 'mnist'.*or, and, xor.*digits"):
        load_builtin("mnist")


@pytest.mark.parametrize("name", FIXED)
def test_fixed_builtins_refuse_n_samples_and_noise(name):
    with pytest.raises(DatasetError, match="n_samples"):
        load_builtin(name, n_samples=10)
    with pytest.raises(DatasetError, match="noise"):
        load_builtin(name, noise=0.1)


@pytest.mark.parametrize(
    "n_samples, match",
    [
        (3, "between 4 and 1000000"),
        (0, "between 4 and 1000000"),
        (-5, "between 4 and 1000000"),
        (MAX_SAMPLES + 1, "between 4 and 1000000"),
        (10.0, "must be an integer"),
        ("10", "must be an integer"),
        (True, "must be an integer"),
    ],
)
def test_bad_n_samples(n_samples, match):
    with pytest.raises(DatasetError, match=match):
        load_builtin("moons", n_samples=n_samples)


@pytest.mark.parametrize(
    "noise, match",
    [
        (-0.1, "between 0 and 10"),
        (10.5, "between 0 and 10"),
        (math.nan, "finite"),
        (math.inf, "finite"),
        ("0.1", "must be a number"),
        (True, "must be a number"),
    ],
)
def test_bad_noise(noise, match):
    with pytest.raises(DatasetError, match=match):
        load_builtin("spirals", noise=noise)


def test_bad_seed():
    with pytest.raises(DatasetError, match="seed"):
        load_builtin("moons", seed=-1)
    with pytest.raises(DatasetError, match="seed"):
        load_builtin("moons", seed=1.5)


def test_edge_n_samples_and_noise_accepted():
    assert load_builtin("sine", n_samples=4).n_samples == 4
    assert load_builtin("circles", noise=10).n_samples == 200
    assert load_builtin("moons", n_samples=np.int64(12)).n_samples == 12


# ---------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------


def test_subset_keeps_metadata():
    ds = load_builtin("iris")
    sub = ds.subset(np.array([0, 50, 100]))
    assert sub.X.shape == (3, 4)
    np.testing.assert_array_equal(sub.y, [0, 1, 2])
    assert sub.classes == ds.classes
    assert sub.feature_names == ds.feature_names
    assert sub.name == ds.name and sub.task == ds.task
    mask = ds.y == 2
    assert ds.subset(mask).n_samples == 50
    assert ds.subset([]).n_samples == 0
    sub.X[:] = 0  # a copy
    assert ds.X[0, 0] == 5.1


def test_subset_bad_index():
    ds = load_builtin("xor")
    with pytest.raises(DatasetError, match="out of range"):
        ds.subset([4])
    with pytest.raises(DatasetError, match="boolean mask"):
        ds.subset([True, False])
    with pytest.raises(DatasetError, match="integers"):
        ds.subset([0.5])


def test_dataset_validates():
    X = np.zeros((3, 2))
    with pytest.raises(DatasetError, match="feature names"):
        Dataset(X=X, y=np.zeros(3, dtype=np.int64), task="classification",
                feature_names=("a",), classes=("0", "1"))
    with pytest.raises(DatasetError, match="class indices"):
        Dataset(X=X, y=np.array([0, 1, 2]), task="classification",
                feature_names=("a", "b"), classes=("0", "1"))
    with pytest.raises(DatasetError, match="at least 2 classes"):
        Dataset(X=X, y=np.zeros(3, dtype=np.int64), task="classification",
                feature_names=("a", "b"), classes=("0",))
    with pytest.raises(DatasetError, match="NaN"):
        Dataset(X=np.full((3, 2), np.nan), y=np.zeros(3), task="regression", feature_names=("a", "b"))
    reg = Dataset(X=X, y=np.arange(3.0), task="regression", feature_names=("a", "b"))
    assert reg.y.shape == (3, 1) and reg.n_outputs == 1 and reg.n_classes == 0
    multi = Dataset(X=X, y=np.ones((3, 2)), task="regression", feature_names=("a", "b"))
    assert multi.n_outputs == 2


# ---------------------------------------------------------------------------
# load_csv
# ---------------------------------------------------------------------------

IRIS_LIKE = (
    "sepal_length,sepal_width,petal_length,petal_width,species\n"
    "5.1,3.5,1.4,0.2,setosa\n"
    "7.0,3.2,4.7,1.4,versicolor\n"
    "6.3,3.3,6.0,2.5,virginica\n"
    "4.9,3.0,1.4,0.2,setosa\n"
)


def check_iris_like(ds: Dataset) -> None:
    assert ds.task == "classification"
    assert ds.X.shape == (4, 4) and ds.X.dtype == np.float64
    assert ds.feature_names == ("sepal_length", "sepal_width", "petal_length", "petal_width")
    assert ds.classes == ("setosa", "versicolor", "virginica")
    np.testing.assert_array_equal(ds.y, [0, 1, 2, 0])
    np.testing.assert_array_equal(ds.X[1], [7.0, 3.2, 4.7, 1.4])


def test_csv_from_path_str_and_pathlike(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text(IRIS_LIKE, encoding="utf-8")
    ds = load_csv(path)
    check_iris_like(ds)
    assert ds.name == "flowers"
    check_iris_like(load_csv(str(path)))
    assert load_csv(path, name="mine").name == "mine"


def test_csv_from_bytes_and_file_objects(tmp_path):
    check_iris_like(load_csv(IRIS_LIKE.encode()))
    check_iris_like(load_csv(bytearray(IRIS_LIKE.encode())))
    check_iris_like(load_csv(io.StringIO(IRIS_LIKE)))
    check_iris_like(load_csv(io.BytesIO(IRIS_LIKE.encode())))
    path = tmp_path / "f.csv"
    path.write_text(IRIS_LIKE, encoding="utf-8")
    with open(path, "rb") as fh:
        check_iris_like(load_csv(fh))
    with open(path, encoding="utf-8", newline="") as fh:
        check_iris_like(load_csv(fh))


def test_csv_bom_crlf_whitespace_and_blank_lines():
    text = "\ufeff a , b ,label\r\n 1 , 2.5 , x \r\n\r\n3,-4e-1,y\r\n\r\n"
    ds = load_csv(text.encode("utf-8"))
    assert ds.feature_names == ("a", "b")
    assert ds.classes == ("x", "y")
    np.testing.assert_array_equal(ds.X, [[1.0, 2.5], [3.0, -0.4]])
    # non-ASCII whitespace (no-break space) around a number is whitespace too
    assert load_csv("a,label\n\u00a01\u00a0,x\n2,y\n".encode()).X[0, 0] == 1.0
    # BOM in a text stream too
    assert load_csv(io.StringIO(text)).feature_names == ("a", "b")


def test_csv_quoted_cells():
    ds = load_csv(b'a,"b, with comma",label\n"1","2","class one"\n3,4,"class two"\n')
    assert ds.feature_names == ("a", "b, with comma")
    assert ds.classes == ("class one", "class two")


def test_csv_numeric_regression_target():
    ds = load_csv(b"x,y\n0,0.5\n1,1.5\n2,2.25\n")
    assert ds.task == "regression"
    assert ds.y.shape == (3, 1) and ds.y.dtype == np.float64
    np.testing.assert_array_equal(ds.y[:, 0], [0.5, 1.5, 2.25])
    assert ds.classes == () and ds.n_outputs == 1


def test_csv_target_in_middle_column():
    ds = load_csv(b"a,label,b\n1,cat,2\n3,dog,4\n5,cat,6\n", target="label")
    assert ds.feature_names == ("a", "b")
    np.testing.assert_array_equal(ds.X, [[1, 2], [3, 4], [5, 6]])
    assert ds.classes == ("cat", "dog")
    np.testing.assert_array_equal(ds.y, [0, 1, 0])


def test_csv_auto_rule():
    # integers with few distinct values -> classification, sorted numerically
    ds = load_csv(b"x,y\n1,10\n2,2\n3,-1\n4,2\n5,10.0\n")
    assert ds.task == "classification"
    assert ds.classes == ("-1", "2", "10")
    np.testing.assert_array_equal(ds.y, [2, 1, 0, 1, 2])
    # a non-integer value -> regression
    assert load_csv(b"x,y\n1,1\n2,2.5\n").task == "regression"
    # integers with more than 50 distinct values -> regression
    rows = "".join(f"{i},{i}\n" for i in range(51))
    assert load_csv(("x,y\n" + rows).encode()).task == "regression"
    rows50 = "".join(f"{i},{i}\n" for i in range(50))
    assert load_csv(("x,y\n" + rows50).encode()).task == "classification"
    # any non-numeric cell -> classification with string labels sorted as strings
    mixed = load_csv(b"x,y\n1,b\n2,10\n3,9\n")
    assert mixed.task == "classification"
    assert mixed.classes == ("10", "9", "b")


def test_csv_explicit_task():
    cls = load_csv(b"x,y\n1,0.5\n2,1.5\n3,0.5\n", task="classification")
    assert cls.classes == ("0.5", "1.5")
    np.testing.assert_array_equal(cls.y, [0, 1, 0])
    reg = load_csv(b"x,y\n1,0\n2,1\n3,0\n", task="regression")
    assert reg.task == "regression"
    np.testing.assert_array_equal(reg.y[:, 0], [0, 1, 0])
    with pytest.raises(DatasetError, match=r"line 3, column 'y': 'cat' is not a number"):
        load_csv(b"x,y\n1,0\n2,cat\n", task="regression")
    with pytest.raises(DatasetError, match="task must be"):
        load_csv(b"x,y\n1,0\n2,1\n", task="clustering")


def test_csv_builtin_files_round_trip_through_loader():
    # the packaged files are in the same format load_csv reads
    import gzip
    from importlib.resources import files

    iris = load_csv((files("trainyard.trainer") / "data" / "iris.csv").read_bytes())
    np.testing.assert_array_equal(iris.X, load_builtin("iris").X)
    raw = gzip.decompress((files("trainyard.trainer") / "data" / "digits.csv.gz").read_bytes())
    assert load_csv(raw).n_classes == 10


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "is empty.*no data rows"),
        (b"\n\n", "is empty.*no data rows"),
        (b"a,b,label\n", "has a header but no data rows"),
        (b"a,,label\n1,2,x\n", r"line 1: header column 2 has an empty name"),
        (b"a,b,a\n1,2,3\n", r"line 1: duplicate column name 'a' \(columns 1 and 3\)"),
        (b"only\n1\n2\n", r"only one column \('only'\)"),
        (
            b"a,b,c,label\n1,2,3,x\n4,5,6,y\n1,2,3,x\n1,2,3,y\n1,2,3,x\n7,8,z\n",
            r"line 7 has 3 cells, the header has 4",
        ),
        (b"a,b,label\n1,2,x\n1,2,3,y\n", r"line 3 has 4 cells, the header has 3"),
        (
            b"sepal,petal_width,label\n1,2,x\n1,2,x\n1,2,y\n5,abc,y\n",
            r"line 5, column 'petal_width': 'abc' is not a number",
        ),
        (b"a,b,label\n1,,x\n", r"line 2, column 'b': empty cell"),
        (b"a,b,label\n1,2,x\n1,NaN,y\n", r"line 3, column 'b': 'NaN' is not a finite number"),
        (b"a,b,label\ninf,2,x\n", r"line 2, column 'a': 'inf' is not a finite number"),
        (b"a,b,label\n-Infinity,2,x\n", r"line 2, column 'a': '-Infinity' is not a finite number"),
        (b"a,b,label\n1_000,2,x\n", r"line 2, column 'a': '1_000' is not a number"),
        (b"a,b,label\n1,2,x\n3,4,\n", r"line 3, column 'label': empty target cell"),
        (b"a,b,y\n1,2,0.5\n3,4,nan\n", r"line 3, column 'y': 'nan' is not a finite number"),
        (b"a,b,label\n1,2,x\n3,4,x\n", r"only one class \('x'\)"),
        (b"a,b,label\n1,2,\xff\n", r"not valid UTF-8.*0xff at line 2"),
        (b'a,b,label\n1,2,x\n1,2,"x\n', r"line 3: malformed CSV"),
        (b'a,b,label\n1,2,"x"y\n1,2,z\n', r"line 2: malformed CSV"),
    ],
)
def test_csv_errors(data, match):
    with pytest.raises(DatasetError, match=match):
        load_csv(data)


def test_csv_error_names_the_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"a,b\n1,x\n1,zz\n2,\n")
    with pytest.raises(DatasetError, match=r"bad\.csv.*line 4, column 'b': empty target cell"):
        load_csv(path)


def test_csv_target_not_found_lists_columns():
    with pytest.raises(DatasetError, match=r"target column 'kind' is not among the columns.*'a', 'b', 'label'"):
        load_csv(b"a,b,label\n1,2,x\n3,4,y\n", target="kind")


def test_csv_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="cannot read CSV"):
        load_csv(tmp_path / "nope.csv")


def test_csv_bad_source_type():
    with pytest.raises(DatasetError, match="path, bytes or a file object"):
        load_csv(12)


def test_csv_too_many_features():
    header = ",".join(f"f{i}" for i in range(MAX_FEATURES + 1)) + ",label\n"
    with pytest.raises(DatasetError, match=f"{MAX_FEATURES + 1} feature columns; at most {MAX_FEATURES}"):
        load_csv(header.encode())


def test_csv_max_features_accepted():
    header = ",".join(f"f{i}" for i in range(MAX_FEATURES)) + ",label\n"
    row = ",".join(["1"] * MAX_FEATURES)
    ds = load_csv((header + row + ",a\n" + row + ",b\n").encode())
    assert ds.X.shape == (2, MAX_FEATURES)


def test_csv_too_many_rows(monkeypatch):
    import trainyard.trainer.datasets.csvfile as mod

    monkeypatch.setattr(mod, "MAX_SAMPLES", 3)
    assert load_csv(b"a,y\n1,0\n2,1\n3,0\n").n_samples == 3
    with pytest.raises(DatasetError, match="more than 3 data rows"):
        load_csv(b"a,y\n1,0\n2,1\n3,0\n4,1\n")


def test_csv_too_many_classes():
    rows = "".join(f"{i},c{i}\n" for i in range(1001))
    with pytest.raises(DatasetError, match="1001 distinct values.*at most 1000 classes"):
        load_csv(("x,y\n" + rows).encode())


# ---------------------------------------------------------------------------
# train_val_split
# ---------------------------------------------------------------------------


def test_stratified_split_iris_proportions():
    ds = load_builtin("iris")
    split = train_val_split(ds, 0.2, seed=0)
    assert isinstance(split, Split)
    assert split.val is not None
    np.testing.assert_array_equal(np.bincount(split.val.y), [10, 10, 10])
    np.testing.assert_array_equal(np.bincount(split.train.y), [40, 40, 40])
    assert split.train.classes == ds.classes and split.val.feature_names == ds.feature_names
    # disjoint and complete: every original row appears exactly once
    rows = np.vstack([split.train.X, split.val.X])
    assert sorted(map(tuple, rows)) == sorted(map(tuple, ds.X))


def test_stratified_split_digits_proportions():
    ds = load_builtin("digits")
    split = train_val_split(ds, 0.25, seed=3)
    counts = np.bincount(ds.y)
    val_counts = np.bincount(split.val.y, minlength=10)
    np.testing.assert_array_equal(val_counts, np.floor(0.25 * counts + 0.5).astype(int))


def test_split_deterministic_by_seed():
    ds = load_builtin("moons")
    a = train_val_split(ds, 0.3, seed=1)
    b = train_val_split(ds, 0.3, seed=1)
    c = train_val_split(ds, 0.3, seed=2)
    np.testing.assert_array_equal(a.train.X, b.train.X)
    np.testing.assert_array_equal(a.val.X, b.val.X)
    assert not np.array_equal(a.val.X, c.val.X)
    assert a.val.n_samples == 60 and a.train.n_samples == 140


def test_split_zero_fraction():
    ds = load_builtin("or")
    split = train_val_split(ds, 0.0, seed=0)
    assert split.val is None
    np.testing.assert_array_equal(split.train.X, ds.X)
    np.testing.assert_array_equal(split.train.y, ds.y)
    assert split.train is ds  # nothing held out: no copy of what may be a large dataset


def test_split_xor_half_is_valid():
    # each XOR class has 2 rows: one goes to validation, one stays in training
    split = train_val_split(load_builtin("xor"), 0.5, seed=0)
    np.testing.assert_array_equal(np.bincount(split.train.y), [1, 1])
    np.testing.assert_array_equal(np.bincount(split.val.y), [1, 1])


def test_split_clamps_to_keep_a_training_row_per_class():
    split = train_val_split(load_builtin("xor"), 0.9, seed=0)
    np.testing.assert_array_equal(np.bincount(split.train.y), [1, 1])
    split = train_val_split(load_builtin("xor"), 0.01, seed=0)  # rounds to 0, raised to 1
    np.testing.assert_array_equal(np.bincount(split.val.y), [1, 1])


@pytest.mark.parametrize("name", ["or", "and"])
def test_split_impossible_single_row_class(name):
    with pytest.raises(DatasetError, match=r"too small for test_fraction 0.25: class '\d' has only 1 row"):
        train_val_split(load_builtin(name), 0.25, seed=0)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, math.nan, "0.2", True])
def test_split_bad_fraction(fraction):
    with pytest.raises(DatasetError, match="test_fraction"):
        train_val_split(load_builtin("moons"), fraction, seed=0)


def test_split_regression():
    ds = load_builtin("sine")
    split = train_val_split(ds, 0.25, seed=4)
    assert split.val.n_samples == 50 and split.train.n_samples == 150
    assert split.val.y.shape == (50, 1)
    again = train_val_split(ds, 0.25, seed=4)
    np.testing.assert_array_equal(split.val.X, again.val.X)
    tiny = Dataset(X=np.zeros((2, 1)), y=np.array([1.0, 2.0]), task="regression", feature_names=("x",))
    s = train_val_split(tiny, 0.9, seed=0)
    assert (s.train.n_samples, s.val.n_samples) == (1, 1)
    single = tiny.subset([0])
    with pytest.raises(DatasetError, match="too small"):
        train_val_split(single, 0.5, seed=0)
    assert train_val_split(single, 0.0, seed=0).train.n_samples == 1


def test_split_ignores_absent_classes():
    ds = load_builtin("iris").subset(np.arange(100))  # only setosa and versicolor
    split = train_val_split(ds, 0.2, seed=0)
    np.testing.assert_array_equal(np.bincount(split.val.y, minlength=3), [10, 10, 0])


# ---------------------------------------------------------------------------
# Standardizer / prepare
# ---------------------------------------------------------------------------


def test_standardizer_fit_transform():
    X = np.array([[1.0, 10.0, 5.0], [3.0, 30.0, 5.0], [5.0, 50.0, 5.0]])
    s = Standardizer.fit(X)
    np.testing.assert_allclose(s.mean, [3.0, 30.0, 5.0])
    np.testing.assert_allclose(s.scale, [np.std([1, 3, 5]), np.std([10, 30, 50]), 1.0])
    Z = s.transform(X)
    assert Z is not X and Z.dtype == np.float64
    np.testing.assert_allclose(Z.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z[:, :2].std(0), 1.0)
    np.testing.assert_array_equal(Z[:, 2], 0.0)
    assert X[0, 0] == 1.0  # input untouched


def test_standardizer_zero_variance_no_nan():
    X = np.full((5, 2), 0.1)  # constant columns whose mean is not exact in floating point
    s = Standardizer.fit(X)
    Z = s.transform(X)
    assert np.isfinite(Z).all()
    np.testing.assert_array_equal(Z, 0.0)
    np.testing.assert_array_equal(s.scale, 1.0)
    one_row = Standardizer.fit(np.array([[1.0, 2.0]]))
    np.testing.assert_array_equal(one_row.transform([[1.0, 2.0]]), [[0.0, 0.0]])


def test_standardizer_dtype_and_shape():
    s = Standardizer.fit(np.array([[0.0, 0.0], [2.0, 4.0]]))
    z32 = s.transform(np.array([[2.0, 4.0]], dtype=np.float32))
    assert z32.dtype == np.float32
    np.testing.assert_allclose(z32, [[1.0, 1.0]])
    assert s.transform(np.array([[2, 4]])).dtype == np.float64
    np.testing.assert_allclose(s.transform([2.0, 0.0]), [1.0, -1.0])
    with pytest.raises(DatasetError, match="expects shape"):
        s.transform(np.zeros((3, 3)))
    with pytest.raises(DatasetError, match="NaN"):
        Standardizer.fit([[np.nan, 1.0]])
    with pytest.raises(ValueError):
        s.mean[0] = 1.0  # read-only


def test_prepare_uses_train_statistics_only():
    ds = load_builtin("iris")
    split, scaler = prepare(ds, test_fraction=0.2, seed=0, standardize=True)
    raw = train_val_split(ds, 0.2, seed=0)
    np.testing.assert_allclose(scaler.mean, raw.train.X.mean(0))
    np.testing.assert_allclose(scaler.scale, raw.train.X.std(0))
    assert not np.allclose(scaler.mean, ds.X.mean(0))
    np.testing.assert_allclose(split.train.X.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(split.train.X.std(0), 1.0)
    np.testing.assert_allclose(split.val.X, (raw.val.X - raw.train.X.mean(0)) / raw.train.X.std(0))
    np.testing.assert_array_equal(split.val.y, raw.val.y)
    assert split.train.classes == ds.classes and split.train.name == "iris"


def test_prepare_without_standardizing_and_without_val():
    ds = load_builtin("sine")
    split, scaler = prepare(ds, test_fraction=0.1, seed=0, standardize=False)
    assert scaler is None
    np.testing.assert_array_equal(split.train.X, train_val_split(ds, 0.1, 0).train.X)
    split, scaler = prepare(ds, test_fraction=0.0, seed=0, standardize=True)
    assert split.val is None and scaler is not None
    np.testing.assert_allclose(split.train.X.mean(0), 0.0, atol=1e-12)
    np.testing.assert_array_equal(split.train.y, ds.y)


def test_prepare_digits_constant_pixels_no_nan():
    split, scaler = prepare(load_builtin("digits"), test_fraction=0.2, seed=0, standardize=True)
    assert (scaler.scale == 1.0).any()  # pixel_0_0 is always 0
    assert np.isfinite(split.train.X).all() and np.isfinite(split.val.X).all()


def test_csv_quoted_cell_after_space():
    ds = load_csv(b'a,label\n1, "x, y"\n2,z\n')
    assert ds.classes == ("x, y", "z")


# ---------------------------------------------------------------------------
# property: stratified split invariants
# ---------------------------------------------------------------------------

@settings(max_examples=60, deadline=None, database=None)
@given(
    counts=st.lists(st.integers(min_value=2, max_value=40), min_size=2, max_size=5),
    fraction=st.floats(min_value=0.01, max_value=0.99),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_stratified_split_invariants(counts, fraction, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    X = np.arange(y.size, dtype=np.float64).reshape(-1, 1)  # row id as the feature
    ds = Dataset(X=X, y=y, task="classification", feature_names=("id",),
                 classes=tuple(f"c{i}" for i in range(len(counts))))
    split = train_val_split(ds, fraction, seed)
    train_ids = split.train.X[:, 0]
    val_ids = split.val.X[:, 0]
    assert np.intersect1d(train_ids, val_ids).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_ids, val_ids])), X[:, 0])
    np.testing.assert_array_equal(y[train_ids.astype(int)], split.train.y)
    val_counts = np.bincount(split.val.y, minlength=len(counts))
    train_counts = np.bincount(split.train.y, minlength=len(counts))
    assert (val_counts >= 1).all() and (train_counts >= 1).all()
    expected = np.clip(np.floor(fraction * np.array(counts) + 0.5), 1, np.array(counts) - 1)
    np.testing.assert_array_equal(val_counts, expected)
    again = train_val_split(ds, fraction, seed)
    np.testing.assert_array_equal(again.val.X, split.val.X)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_a_builtins_shape_is_known_without_generating_it(name):
    options = {"n_samples": 37} if name in ("moons", "circles", "spirals", "sine") else {}
    assert builtin_shape(name, **options) == shape_of(load_builtin(name, **options))


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("name", ["xor", "spirals", "sine", "iris"])
def test_the_shape_counts_the_training_rows_the_split_leaves(name, fraction):
    data = load_builtin(name)
    assert shape_of(data).n_train(fraction) == train_val_split(data, fraction, seed=0).train.n_samples


def test_the_shape_refuses_the_split_the_data_refuses():
    data = load_builtin("or")  # one row of class 0
    with pytest.raises(DatasetError, match="class '0' has only 1 row"):
        shape_of(data).n_train(0.5)
    with pytest.raises(DatasetError, match="class '0' has only 1 row"):
        train_val_split(data, 0.5, seed=0)


def test_checking_a_spec_on_a_million_row_builtin_builds_no_data():
    spec = {"dataset": {"name": "spirals", "n_samples": 1_000_000}, "model": {"hidden": [{"units": 4096}]},
            "batch_size": None}
    tracemalloc.start()
    try:
        with pytest.raises(SpecError, match="working values") as refused:  # 800,000 rows x 4,101 units: too many
            check(spec)
        check({**spec, "batch_size": 32})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.field == "batch_size"
    assert peak < 1_000_000  # the million rows' features alone are 16 MB
