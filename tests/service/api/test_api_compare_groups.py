"""``GET /api/compare?group=seed``: runs equal but for their seed as one group, its bands and summary checked against
numpy on hand-made epochs; the grouping rule; the bounded read of long runs; ``group``'s errors."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from trainyard.service import groups as grouping
from trainyard.service.comparison import group_runs
from trainyard.service.storage import repo

FIELDS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


def _run(api, Session, spec: dict[str, Any], rows: list[dict[str, Any]], summary: dict[str, Any] | None = None) -> str:
    run_id = api.create_run(spec)["id"]
    with Session() as s, s.begin():
        repo.write_epochs(session=s, run_id=run_id, rows=rows)
        if summary is not None:
            repo.claim_run(session=s, run_id=run_id, worker="test", lease_seconds=600)
            repo.finish_run(session=s, run_id=run_id, status="succeeded", summary=summary)
    return run_id


def _spec(spec: dict[str, Any], seed: int, lr: float = 0.5) -> dict[str, Any]:
    other = copy.deepcopy(spec)
    other["seed"], other["name"] = seed, f"lr {lr} seed {seed}"
    other["optimizer"]["lr"] = lr
    return other


@pytest.fixture
def seeded(api, spec, Session) -> dict[str, Any]:
    """Three seeds at lr 0.5 (of 30, 30 and 20 epochs, one with a gap and a null), two at lr 0.1, one at lr 0.05."""
    rng = np.random.default_rng(7)
    made: dict[str, Any] = {"lr": {}, "losses": {}, "summaries": {}}
    plan = [(0.5, 1, 30), (0.1, 1, 30), (0.5, 2, 30), (0.5, 3, 20), (0.1, 2, 25), (0.05, 1, 10)]
    for lr, seed, epochs in plan:
        losses = {epoch: float(rng.uniform(0.1, 2.0)) for epoch in range(1, epochs + 1)}
        if (lr, seed) == (0.5, 2):
            del losses[7]  # no epoch 7
            losses[8] = None  # epoch 8 without a train loss
        rows = [{"epoch": epoch, "train_loss": loss, "val_loss": 2 * loss if loss is not None else 1.0}
                for epoch, loss in losses.items()]
        summary = {"final_train_loss": float(rng.uniform(0.1, 1.0)), "best_val_accuracy": float(rng.uniform(0.5, 1.0)),
                   "best_epoch": int(rng.integers(1, epochs))}
        run_id = _run(api, Session, _spec(spec, seed, lr), rows, summary)
        made["lr"][run_id] = lr
        made["losses"][run_id] = losses
        made["summaries"][run_id] = summary
    made["ids"] = list(made["lr"])
    return made


def test_runs_differing_only_in_seed_group_together(reader, seeded):
    ids = seeded["ids"]
    body = reader.get(f"/api/compare?runs={','.join(ids)}&group=seed").get_json()

    assert list(body) == ["runs", "params", "curves", "groups"]
    assert [run["id"] for run in body["runs"]] == ids  # the ungrouped answer is all there
    groups = body["groups"]
    assert [group["runs"] for group in groups] == [[ids[0], ids[2], ids[3]], [ids[1], ids[4]], [ids[5]]]
    assert [group["size"] for group in groups] == [3, 2, 1]
    assert [group["values"] for group in groups] == [[1, 2, 3], [1, 2], [1]]
    assert [group["params"] for group in groups] == [{"optimizer.lr": 0.5}, {"optimizer.lr": 0.1},
                                                     {"optimizer.lr": 0.05}]
    assert all(group["stride"] == 1 for group in groups)
    assert list(groups[0]["curves"]) == ["epoch", *FIELDS]


def test_group_bands_are_numpys_statistics_over_the_runs_with_each_epoch(reader, seeded):
    """Mean, sample std, min and max at each epoch of the union, over the runs with a value there."""
    ids = seeded["ids"]
    members = [ids[0], ids[2], ids[3]]
    body = reader.get(f"/api/compare?runs={','.join(ids)}&group=seed&fields=train_loss").get_json()
    curves = body["groups"][0]["curves"]

    assert curves["epoch"] == list(range(1, 31))
    band = curves["train_loss"]
    for k, epoch in enumerate(curves["epoch"]):
        values = np.array([seeded["losses"][run].get(epoch) for run in members if seeded["losses"][run].get(epoch)
                           is not None])
        assert band["count"][k] == len(values), epoch
        assert band["mean"][k] == pytest.approx(np.mean(values), rel=1e-12)
        assert band["min"][k] == values.min() and band["max"][k] == values.max()
        if len(values) > 1:
            assert band["std"][k] == pytest.approx(np.std(values, ddof=1), rel=1e-9)
        else:
            assert band["std"][k] is None
    assert band["count"][6] == 2 and band["count"][7] == 2  # epoch 7 missing, epoch 8 null in one run
    assert band["count"][20:] == [2] * 10  # the run of 20 epochs stops there
    single = body["groups"][2]["curves"]["train_loss"]
    losses = seeded["losses"][ids[5]]
    assert single["mean"] == single["min"] == single["max"] == [losses[e] for e in range(1, 11)]
    assert single["std"] == [None] * 10 and single["count"] == [1] * 10


def test_group_summary_is_mean_and_std(reader, seeded):
    ids = seeded["ids"]
    groups = reader.get(f"/api/compare?runs={','.join(ids)}&group=seed").get_json()["groups"]

    for group in groups:
        for field in ("final_train_loss", "best_val_accuracy", "best_epoch"):
            values = np.array([seeded["summaries"][run][field] for run in group["runs"]], dtype=float)
            spread = group["summary"][field]
            assert spread["count"] == len(values)
            assert spread["mean"] == pytest.approx(values.mean(), rel=1e-12)
            assert spread["std"] == (pytest.approx(values.std(ddof=1), rel=1e-9) if len(values) > 1 else None)
        assert group["summary"]["final_val_loss"] == {"mean": None, "std": None, "count": 0}


def test_group_curves_are_downsampled_to_max_points(reader, api, spec, Session):
    ids = []
    for seed in (1, 2):
        rows = [{"epoch": n, "train_loss": 1.0 / n + seed} for n in range(1, 501)]
        rows[300]["train_loss"] = 50.0 + seed  # a spike of the mean, min and max
        ids.append(_run(api, Session, _spec(spec, seed), rows))
    body = reader.get(f"/api/compare?runs={','.join(ids)}&group=seed&fields=train_loss&max_points=40").get_json()

    curves = body["groups"][0]["curves"]
    assert len(curves["epoch"]) == 40 and curves["epoch"][0] == 1 and curves["epoch"][-1] == 500
    assert 301 in curves["epoch"]
    at = curves["epoch"].index(301)
    assert curves["train_loss"]["mean"][at] == 51.5 and curves["train_loss"]["max"][at] == 52.0
    assert all(len(column) == 40 for column in curves["train_loss"].values())


def test_long_runs_are_read_at_a_stride(reader, api, spec, Session, monkeypatch):
    monkeypatch.setattr(grouping, "MAX_GROUP_ROWS", 100)
    ids = [_run(api, Session, _spec(spec, seed), [{"epoch": n, "train_loss": float(n * seed)} for n in range(1, 91)])
           for seed in (1, 2, 3)]
    body = reader.get(f"/api/compare?runs={','.join(ids)}&group=seed&fields=train_loss").get_json()

    group = body["groups"][0]
    assert group["stride"] == 3  # 270 epochs in all, read at most 100
    assert group["curves"]["epoch"] == list(range(3, 91, 3))
    assert group["curves"]["train_loss"]["mean"] == [2.0 * n for n in range(3, 91, 3)]
    assert len(body["curves"][ids[0]]["epoch"]) == 90  # the runs' own curves are whole


def test_without_group_there_are_no_groups(reader, seeded):
    body = reader.get(f"/api/compare?runs={seeded['ids'][0]}").get_json()
    assert "groups" not in body


@pytest.mark.parametrize("value", ["lr", "", "SEED", "seed,lr"])
def test_a_bad_group_is_400_naming_group(reader, seeded, assert_error, value):
    response = reader.get(f"/api/compare?runs={seeded['ids'][0]}&group={value}")
    assert_error(response, 400, "invalid_parameter", "group")


def test_grouping_rule():
    base = {"dataset": {"name": "xor"}, "optimizer": {"name": "sgd", "lr": 0.5}, "seed": 1, "name": "a", "tags": []}
    seed2 = copy.deepcopy(base) | {"seed": 2, "name": "b", "tags": ["x"], "notes": "other"}
    lr = copy.deepcopy(base)
    lr["optimizer"]["lr"] = 0.1
    flag = copy.deepcopy(base) | {"flag": True}
    one = copy.deepcopy(base) | {"flag": 1}
    free = copy.deepcopy(base) | {"extra": {"depth": 2}}  # no spec: compared as it is, without defaults
    null = copy.deepcopy(free) | {"schedule": None}

    assert group_runs([base]) == [[0]]
    assert group_runs([base, seed2]) == [[0, 1]]  # name, tags and notes describe; seed is grouped over
    assert group_runs([base, lr, seed2]) == [[0, 2], [1]]
    assert group_runs([flag, one]) == [[0], [1]]  # True is not 1
    assert group_runs([free, null]) == [[0, 1]]  # null beside absent is no difference
    assert group_runs([base, seed2], by="optimizer") == [[0], [1]]
