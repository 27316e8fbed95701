"""Epochs: idempotent batched writes, exact float64, field selection and downsampling; weights and checkpoints."""

from __future__ import annotations

import datetime as dt
import math
import os

import numpy as np
import pytest
from sqlalchemy import event, func, select

from trainyard.service.storage import repo
from trainyard.service.storage.models import Epoch, Run

EXACT = [
    0.1,
    1 / 3,
    math.pi,
    2.0**-52,
    1e-300,
    5e-324,  # the smallest subnormal
    1.7976931348623157e308,
    123456789.12345679,
    -2.5e-8,
    0.30000000000000004,
]


def _write(Session, run_id, rows) -> int:
    with Session() as s, s.begin():
        return repo.write_epochs(session=s, run_id=run_id, rows=rows)


def _epochs(Session, run_id, **kwargs):
    with Session() as s:
        return repo.get_epochs(session=s, run_id=run_id, **kwargs)


def _count(Session, run_id) -> int:
    with Session() as s:
        return s.scalar(select(func.count()).select_from(Epoch).where(Epoch.run_id == run_id))


def _row(epoch: int, **metrics) -> dict:
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "lr": 0.1, "seconds": 0.01, **metrics}


def test_write_epochs_is_idempotent(Session, make_run):
    run = make_run()
    batch = [_row(1), _row(2), _row(3)]
    assert _write(Session, run.id, batch) == 3
    assert _write(Session, run.id, batch) == 0  # the same batch replayed
    assert _count(Session, run.id) == 3
    assert _write(Session, run.id, [_row(3, train_loss=99.0), _row(4), _row(4)]) == 1  # overlap, and a repeat
    assert _count(Session, run.id) == 4
    got = _epochs(Session, run.id, fields=["train_loss"])
    assert got == [{"epoch": e, "train_loss": 1.0 / e} for e in (1, 2, 3, 4)]  # the first write wins
    with Session() as s:
        assert repo.get_run(session=s, run_id=run.id).epochs_done == 4


def test_epochs_done_is_the_highest_epoch_stored(Session, make_run):
    run = make_run()
    _write(Session, run.id, [_row(5), _row(6)])
    _write(Session, run.id, [_row(2)])  # a late replay of an older epoch
    with Session() as s:
        assert repo.get_run(session=s, run_id=run.id).epochs_done == 6
    assert _write(Session, run.id, []) == 0


def test_write_epochs_stores_every_field(Session, make_run):
    run = make_run()
    when = dt.datetime(2030, 5, 1, 8, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    row = {
        "epoch": np.int64(1),
        "train_loss": np.float64(0.5),
        "val_loss": 0.6,
        "train_accuracy": 0.75,
        "val_accuracy": np.float32(0.5),
        "lr": 0.01,
        "seconds": 0.002,
        "weight_norms": (1.5, 2.5),
        "grad_norms": np.array([0.1, 0.2]),
        "recorded_at": when,
    }
    _write(
        Session,
        run.id,
        [row, {"epoch": 2, "train_loss": float("nan"), "val_loss": float("inf"), "grad_norms": [float("-inf"), 1.0]}],
    )
    got = _epochs(Session, run.id)
    assert got[0] == {
        "epoch": 1,
        "train_loss": 0.5,
        "val_loss": 0.6,
        "train_accuracy": 0.75,
        "val_accuracy": 0.5,
        "lr": 0.01,
        "seconds": 0.002,
        "weight_norms": [1.5, 2.5],
        "grad_norms": [0.1, 0.2],
    }
    # neither SQLite nor JSONB can hold NaN or infinities: they are stored as null
    assert got[1] == {
        "epoch": 2,
        "train_loss": None,
        "val_loss": None,
        "train_accuracy": None,
        "val_accuracy": None,
        "lr": None,
        "seconds": None,
        "weight_norms": [],
        "grad_norms": [None, 1.0],
    }
    with Session() as s:
        recorded = s.scalars(select(Epoch.recorded_at).where(Epoch.run_id == run.id).order_by(Epoch.epoch)).all()
    assert recorded[0] == when and recorded[0].tzinfo == dt.timezone.utc
    assert recorded[1].tzinfo == dt.timezone.utc


def test_float64_round_trips_exactly(Session, make_run):
    run = make_run()
    rows = [
        {"epoch": i + 1, **dict.fromkeys(repo.EPOCH_METRICS, x), "weight_norms": EXACT, "grad_norms": [x]}
        for i, x in enumerate(EXACT)
    ]
    _write(Session, run.id, rows)
    got = _epochs(Session, run.id)
    for x, row in zip(EXACT, got, strict=True):
        for field in repo.EPOCH_METRICS:
            assert row[field] == x and type(row[field]) is float, (field, x, row[field])
        assert row["weight_norms"] == EXACT and row["grad_norms"] == [x]
    with Session() as s, s.begin():
        repo.finish_run(session=s, run_id=run.id, status="succeeded", summary=dict(final_val_loss=EXACT[1]))
    with Session() as s:
        assert repo.get_run(session=s, run_id=run.id).final_val_loss == 1 / 3


def test_write_epochs_refuses_bad_rows(Session, make_run):
    run = make_run()
    naive = dt.datetime(2030, 1, 1)
    for bad in (
        [{"epoch": 1, "loss": 1.0}],
        [{"train_loss": 1.0}],
        [{"epoch": "1"}],
        [{"epoch": True}],
        [_row(1), {"epoch": 2, "recorded_at": naive}],
    ):
        with pytest.raises(ValueError):
            _write(Session, run.id, bad)
    with pytest.raises(LookupError):
        _write(Session, "0" * 32, [_row(1)])
    with pytest.raises(LookupError):
        _write(Session, "0" * 32, [])
    assert _count(Session, run.id) == 0


def test_get_epochs_since_and_fields(Session, make_run):
    run = make_run()
    _write(Session, run.id, [_row(e, val_loss=2.0 / e) for e in range(1, 11)])
    got = _epochs(Session, run.id, since=7, fields=["val_loss", "train_loss", "val_loss"])
    assert got == [{"epoch": e, "val_loss": 2.0 / e, "train_loss": 1.0 / e} for e in (8, 9, 10)]
    assert list(got[0]) == ["epoch", "val_loss", "train_loss"]
    assert _epochs(Session, run.id, since=10) == []
    assert _epochs(Session, run.id, fields=[]) == [{"epoch": e} for e in range(1, 11)]
    assert _epochs(Session, "0" * 32) == []
    assert list(_epochs(Session, run.id)[0]) == ["epoch", *repo.EPOCH_FIELDS]


def test_get_epochs_refuses_bad_arguments(Session, make_run):
    run = make_run()
    for kwargs, message in [
        (dict(fields=["train_loss", "no such"]), "unknown epoch field"),
        (dict(fields=["recorded_at"]), "unknown epoch field"),
        (dict(fields="train_loss"), "list of field names"),
        (dict(max_points=1), "at least 2"),
        (dict(max_points=0), "at least 2"),
    ]:
        with pytest.raises(ValueError, match=message):
            _epochs(Session, run.id, **kwargs)


def _curves(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    epochs = np.arange(1, n + 1)
    train = 1.0 / np.sqrt(epochs) + rng.normal(0, 1e-3, n)
    val = 1.2 / np.sqrt(epochs) + rng.normal(0, 1e-3, n)
    accuracy = 1 - train / 2
    return [
        {
            "epoch": int(e),
            "train_loss": float(t),
            "val_loss": None if e % 10 == 0 else float(v),
            "train_accuracy": float(a),
            "lr": 0.01,
            "seconds": 0.001,
            "weight_norms": [1.0],
            "grad_norms": [0.5],
        }
        for e, t, v, a in zip(epochs, train, val, accuracy)
    ]


def test_downsampling_keeps_a_one_epoch_spike(Session, make_run):
    run = make_run()
    rows = _curves(5000)
    rows[2717]["train_loss"] = 50.0  # one diverging epoch, 2718
    rows[3140]["val_loss"] = -1.0  # and one dip, 3141
    _write(Session, run.id, rows)
    got = _epochs(Session, run.id, fields=["train_loss", "val_loss"], max_points=1000)
    epochs = [row["epoch"] for row in got]
    assert len(got) == 1000  # the budget is used, not squandered
    assert epochs == sorted(set(epochs))
    assert epochs[0] == 1 and epochs[-1] == 5000
    assert {"epoch": 2718, "train_loss": 50.0, "val_loss": rows[2717]["val_loss"]} in got
    assert 3141 in epochs
    assert all(row == {k: rows[row["epoch"] - 1][k] for k in ("epoch", "train_loss", "val_loss")} for row in got)


@pytest.mark.parametrize("max_points", [2, 3, 5, 17, 100, 999, 4999, 5000, 6000])
def test_downsampling_respects_max_points(max_points):
    n = 5000
    rows = _curves(n, seed=max_points)
    series = [np.asarray([r[f] for r in rows], dtype=float) for f in ("train_loss", "val_loss", "train_accuracy")]
    kept = repo.downsample(series, n, max_points)
    assert len(kept) == min(n, max_points)
    assert kept[0] == 0 and kept[-1] == n - 1
    assert np.all(np.diff(kept) > 0)
    if max_points >= n:
        assert len(kept) == n
    elif max_points >= 2 + 2 * len(series):  # room for one bucket: the interior's extremes are kept
        for values in series:
            interior = values[1:-1]
            assert np.nanmin(interior) in values[kept] and np.nanmax(interior) in values[kept]


def test_downsampling_list_fields_only_and_short_runs(Session, make_run):
    run = make_run()
    _write(Session, run.id, _curves(50))
    got = _epochs(Session, run.id, fields=["weight_norms"], max_points=10)
    assert len(got) == 10 and got[0]["epoch"] == 1 and got[-1]["epoch"] == 50
    assert len(_epochs(Session, run.id, max_points=50)) == 50
    assert [r["epoch"] for r in _epochs(Session, run.id, since=48, max_points=2)] == [49, 50]
    assert [r["epoch"] for r in _epochs(Session, run.id, since=45, max_points=2)] == [46, 50]


def test_downsampling_with_all_null_buckets():
    values = np.full(100, np.nan)
    values[[0, 99]] = 1.0
    kept = repo.downsample([values], 100, 10)
    assert kept[0] == 0 and kept[-1] == 99 and len(kept) == 10
    assert np.diff(kept).max() <= 14  # spread over the run: no long gap


def test_downsampling_returns_as_many_points_as_asked(Session, make_run):
    """2,000 epochs at max_points=250 gave about 120 points (a bucket's minimum and maximum are often one epoch); a
    field null at every epoch (no validation data) gave the first and the last epoch alone."""
    run = make_run()
    rows = _curves(2000)
    _write(Session, run.id, [{key: value for key, value in row.items() if key != "val_accuracy"} for row in rows])
    assert len(_epochs(Session, run.id, fields=["train_loss", "val_loss"], max_points=250)) == 250
    nulls = _epochs(Session, run.id, fields=["val_accuracy"], max_points=250)
    assert len(nulls) == 250 and all(row["val_accuracy"] is None for row in nulls)
    with Session() as s:
        curves = repo.get_curves(session=s, run_ids=[run.id], fields=["train_loss"], max_points=250)
    assert len(curves[run.id]["epoch"]) == 250


# --------------------------------------------------------------------------- weights and checkpoints


def test_get_curves_reads_many_runs_as_columns(Session, make_run):
    spiky, plain, empty = make_run(), make_run(), make_run()
    rows = [_row(n, val_loss=2.0 / n) for n in range(1, 301)]
    rows[150]["train_loss"] = 50.0
    _write(Session, spiky.id, rows)
    _write(Session, plain.id, [_row(n) for n in range(1, 4)])
    fields = ["train_loss", "val_loss"]
    with Session() as s:
        curves = repo.get_curves(session=s, run_ids=[plain.id, empty.id, spiky.id], fields=fields, max_points=20)

    assert list(curves) == [plain.id, empty.id, spiky.id]
    assert list(curves[plain.id]) == ["epoch", "train_loss", "val_loss"]
    assert curves[plain.id]["epoch"].tolist() == [1, 2, 3]
    assert curves[plain.id]["train_loss"].tolist() == [1.0, 0.5, 1 / 3]
    assert np.isnan(curves[plain.id]["val_loss"]).all()  # null as NaN
    assert all(values.size == 0 for values in curves[empty.id].values())
    kept = _epochs(Session, spiky.id, fields=fields, max_points=20)  # the same points as get_epochs keeps
    assert curves[spiky.id]["epoch"].tolist() == [row["epoch"] for row in kept]
    assert curves[spiky.id]["train_loss"].tolist() == [row["train_loss"] for row in kept]
    assert 50.0 in curves[spiky.id]["train_loss"]


def test_get_curves_at_a_stride_reads_the_multiples_only(Session, make_run):
    long, short = make_run(), make_run()
    _write(Session, long.id, [_row(n, val_loss=2.0 / n) for n in range(1, 101)])
    _write(Session, short.id, [_row(n) for n in (1, 2, 3, 4, 6, 7)])
    with Session() as s:
        curves = repo.get_curves(session=s, run_ids=[long.id, short.id], fields=["val_loss"], stride=3)
        downsampled = repo.get_curves(session=s, run_ids=[long.id], fields=["val_loss"], stride=3, max_points=5)
        with pytest.raises(ValueError, match="stride"):
            repo.get_curves(session=s, run_ids=[long.id], fields=["val_loss"], stride=0)

    assert curves[long.id]["epoch"].tolist() == list(range(3, 101, 3))
    assert curves[long.id]["val_loss"].tolist() == [2.0 / n for n in range(3, 101, 3)]
    assert curves[short.id]["epoch"].tolist() == [3, 6]
    kept = downsampled[long.id]["epoch"].tolist()
    assert len(kept) == 5 and kept[0] == 3 and kept[-1] == 99 and all(n % 3 == 0 for n in kept)


def test_get_curves_refuses_list_fields(Session, make_run):
    with Session() as s, pytest.raises(ValueError, match="numeric fields only"):
        repo.get_curves(session=s, run_ids=[make_run().id], fields=["train_loss", "grad_norms"])


def test_weights(Session, make_run):
    run = make_run()
    blob = os.urandom(300_000) + b"\x00"
    with Session() as s, s.begin():
        assert repo.get_weights(session=s, run_id=run.id) is None
        assert repo.write_weights_many(session=s, run_id=run.id, snapshots=[(10, b"ten"), (20, blob)]) == 2
        assert repo.write_weights_many(session=s, run_id=run.id, snapshots=[(5, b"five"), (10, b"replayed")]) == 1
    with Session() as s:
        assert repo.get_weights(session=s, run_id=run.id) == (20, blob)
        assert repo.get_weights(session=s, run_id=run.id, epoch=10) == (10, b"ten")
        assert repo.get_weights(session=s, run_id=run.id, epoch=11) is None
        assert repo.list_weight_epochs(session=s, run_id=run.id) == [5, 10, 20]
        assert repo.list_weight_epochs(session=s, run_id="0" * 32) == []


def test_checkpoint_upsert_never_goes_back(Session, make_run):
    run = make_run()
    with Session() as s, s.begin():
        assert repo.get_checkpoint(session=s, run_id=run.id) is None
        assert repo.save_checkpoint(session=s, run_id=run.id, epoch=5, data=b"five") is True
        assert repo.save_checkpoint(session=s, run_id=run.id, epoch=10, data=b"ten") is True
    with Session() as s, s.begin():
        assert repo.save_checkpoint(session=s, run_id=run.id, epoch=7, data=b"stale") is False
        assert repo.get_checkpoint(session=s, run_id=run.id) == (10, b"ten")
        assert repo.save_checkpoint(session=s, run_id=run.id, epoch=10, data=b"ten again") is True
    with Session() as s:
        assert repo.get_checkpoint(session=s, run_id=run.id) == (10, b"ten again")


def test_reading_runs_never_touches_blobs(Session, engine, make_run):
    run = make_run(tags=["t"])
    with Session() as s, s.begin():
        repo.write_weights_many(session=s, run_id=run.id, snapshots=[(1, b"w")])
        repo.save_checkpoint(session=s, run_id=run.id, epoch=1, data=b"c")
        repo.write_epochs(session=s, run_id=run.id, rows=[_row(1)])
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        with Session() as s:
            repo.get_run(session=s, run_id=run.id)
            repo.list_runs(session=s, tag="t", sort="-best_val_loss")
            repo.get_epochs(session=s, run_id=run.id, max_points=10)
            repo.list_weight_epochs(session=s, run_id=run.id)
        with Session() as s, s.begin():
            repo.update_run(session=s, run_id=run.id, notes="read it")
            repo.request_cancel(session=s, run_id=run.id)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    text = "\n".join(statements).lower()
    assert "checkpoints" not in text
    assert "weights.data" not in text
    assert statements


def test_run_model_is_readable_after_commit(Session, make_run):
    run = make_run()
    with Session() as s, s.begin():
        claimed = repo.claim_run(session=s, run_id=run.id, worker="w", lease_seconds=5)
    assert isinstance(claimed, Run) and claimed.status == "running"  # no DetachedInstanceError
