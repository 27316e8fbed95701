"""Groups over seeds on the dashboard, through Flask's test client on SQLite and PostgreSQL: the compare page's
switch and band as rendered, its data with ``group=seed``, and the sweep page's link when a sweep swept ``seed``."""

from __future__ import annotations

import copy
import html
import re

import pytest
from factories import stored, xor
from flask.testing import FlaskClient
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from trainyard.service.storage import repo

SPEC = stored(xor(model={"type": "mlp", "hidden": [{"units": 4, "activation": "tanh"}]}, epochs=10))


def test_compare_data_groups_over_seeds(client: FlaskClient, logged_in, make_run) -> None:
    logged_in("read")
    ids = [make_run(f"seed {seed}", epochs=epochs, spec_changes={"seed": seed}) for seed, epochs in ((1, 4), (2, 6))]
    ids.append(make_run("other lr", epochs=3, spec_changes={"seed": 1, "optimizer": {"name": "sgd", "lr": 0.1}}))

    body = client.get(f"/ui/data/compare?runs={','.join(ids)}&group=seed").get_json()

    assert list(body) == ["runs", "curves", "custom", "groups"]
    first, second = body["groups"]
    assert first["runs"] == ids[:2] and first["size"] == 2 and second["runs"] == [ids[2]]
    curves = first["curves"]
    assert curves["epoch"] == [1, 2, 3, 4, 5, 6]
    assert curves["train_loss"]["count"] == [2, 2, 2, 2, 1, 1]
    assert curves["train_loss"]["mean"][:4] == pytest.approx([1.0, 0.5, 1 / 3, 0.25], rel=1e-6)  # float32
    assert curves["train_loss"]["std"][0] == 0.0
    assert curves["train_loss"]["std"][4:] == [None, None]
    assert "groups" not in client.get(f"/ui/data/compare?runs={ids[0]}").get_json()


def test_compare_data_refuses_a_bad_group(client: FlaskClient, logged_in, make_run) -> None:
    logged_in("read")
    run_id = make_run()
    response = client.get(f"/ui/data/compare?runs={run_id}&group=lr")
    assert response.status_code == 400
    assert [field["field"] for field in response.get_json()["error"]["fields"]] == ["group"]


def test_compare_page_renders_the_switch_and_the_band(client: FlaskClient, logged_in, make_run) -> None:
    logged_in("read")
    run_id = make_run(epochs=2)

    plain = client.get(f"/compare?runs={run_id}").get_data(as_text=True)
    assert re.search(r'<input type="checkbox" id="group-seeds">', plain)
    assert re.search(r'<select id="band" disabled>', plain) and 'data-group=""' in plain

    grouped = client.get(f"/compare?runs={run_id}&group=seed&band=std").get_data(as_text=True)
    assert '<input type="checkbox" id="group-seeds" checked>' in grouped and 'data-group="seed"' in grouped
    assert '<option value="std" selected>' in grouped
    preload = html.unescape(re.search(r'<link rel="preload"[^>]*href="([^"]+)"', grouped).group(1))
    assert preload.endswith("&group=seed") and f"runs={run_id}" in preload

    for query in ("group=lr", "band=iqr"):
        assert client.get(f"/compare?runs={run_id}&{query}").status_code == 400


def _sweep(Session: sessionmaker[OrmSession], space: dict[str, list[object]]) -> tuple[str, list[str]]:
    ids = []
    with Session() as s, s.begin():
        sweep = repo.create_sweep(session=s, name="seeds", method="grid", base_spec=SPEC,
                                  space={"space": space, "n": None, "seed": 0})
        for index, seed in enumerate(space.get("seed", [3, 4])):
            spec = copy.deepcopy(SPEC) | {"seed": seed, "name": f"seeds #{index + 1}"}
            run = repo.create_run(session=s, spec=spec, name=spec["name"], seed=seed, tags=[], notes="",
                                  epochs_total=10, sweep_id=sweep.id)
            ids.append(run.id)
        return sweep.id, ids


def test_a_sweep_over_seeds_links_to_its_runs_grouped(client: FlaskClient, Session, logged_in) -> None:
    logged_in("read")
    sweep_id, ids = _sweep(Session, {"seed": [1, 2, 3]})
    page = client.get(f"/sweeps/{sweep_id}").get_data(as_text=True)

    link = re.search(r'<a id="compare-seeds"[^>]*href="([^"]+)"', page)
    assert link, "no link to the runs grouped over seeds"
    target = html.unescape(link.group(1))
    assert target.startswith("/compare?") and "group=seed" in target
    assert set(re.search(r"runs=([^&]+)", target).group(1).replace("%2C", ",").split(",")) == set(ids)
    assert client.get(target).status_code == 200


def test_a_sweep_without_seeds_has_no_grouped_link(client: FlaskClient, Session, logged_in) -> None:
    logged_in("read")
    sweep_id, _ids = _sweep(Session, {"optimizer.lr": [0.1, 0.5]})
    assert 'id="compare-seeds"' not in client.get(f"/sweeps/{sweep_id}").get_data(as_text=True)
