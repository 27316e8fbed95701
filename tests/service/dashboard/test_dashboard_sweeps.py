"""The sweep pages through Flask's test client, on SQLite and PostgreSQL: list, sweep page, its data, cancel."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from factories import stored, xor
from flask.testing import FlaskClient
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from trainyard.service.storage import repo
from trainyard.service.storage.models import Run

XSS = "<img src=x onerror=alert(1)>"
#: The sweep's base spec (as the API stores it).
SPEC: dict[str, Any] = stored(xor(model={"type": "mlp", "hidden": [{"units": 4, "activation": "tanh"}]}, epochs=10))
LRS = [0.001, 0.01, 0.1, 1.0]
UNITS = [4, 16]


def make_sweep(Session: sessionmaker[OrmSession], *, name: str = "lr-units", held_out: bool = True,
               statuses: tuple[str, ...] = ("succeeded",) * 8) -> tuple[str, list[str]]:
    """A 4x2 grid over lr and hidden units on xor; run i gets ``statuses[i]`` and, when finished, losses by lr."""
    base = copy.deepcopy(SPEC)
    if held_out:
        base["dataset"]["test_fraction"] = 0.25
    space = {"space": {"optimizer.lr": LRS, "model.hidden.0.units": UNITS}, "n": None, "seed": 0}
    ids = []
    with Session() as s, s.begin():
        sweep = repo.create_sweep(session=s, name=name, method="grid", base_spec=base, space=space)
        index = 0
        for lr in LRS:
            for units in UNITS:
                spec = copy.deepcopy(base)
                spec["optimizer"]["lr"] = lr
                spec["model"]["hidden"][0]["units"] = units
                spec["name"] = f"{name} #{index + 1:03d} lr={lr:.3g} units={units}"
                run = repo.create_run(session=s, spec=spec, name=spec["name"], seed=3, tags=[], notes="",
                                      epochs_total=10, sweep_id=sweep.id)
                status = statuses[index]
                if status != "queued":
                    repo.claim_run(session=s, run_id=run.id, worker="test", lease_seconds=600)
                if status in ("succeeded", "failed", "cancelled"):
                    loss = abs(lr - 0.1) + 1 / units  # best: lr=0.1, 16 units
                    repo.finish_run(session=s, run_id=run.id, status=status,
                                    summary={"best_val_loss": loss, "final_train_loss": 2 * loss,
                                             "best_val_accuracy": 1 - loss / 2})
                ids.append(run.id)
                index += 1
        return sweep.id, ids


def page_data(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="sweep-data">(.*?)</script>', html, re.S)
    assert match
    return json.loads(match.group(1))


def test_sweep_pages_need_a_session(client: FlaskClient, Session) -> None:
    sweep_id, _ = make_sweep(Session)
    for path in ("/sweeps", f"/sweeps/{sweep_id}"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login?next="), path
    assert client.get(f"/ui/data/sweeps/{sweep_id}").status_code == 401
    assert client.post(f"/sweeps/{sweep_id}/cancel").status_code == 401


def test_sweeps_list_newest_first_with_progress_and_best(client: FlaskClient, Session, logged_in) -> None:
    first, _ = make_sweep(Session, name="first")
    second, _ = make_sweep(Session, name=XSS, statuses=("succeeded", "running") + ("queued",) * 6)
    logged_in("read")
    html = client.get("/sweeps").get_data(as_text=True)
    assert html.index(f'data-sweep="{second}"') < html.index(f'data-sweep="{first}"')
    assert XSS not in html and "&lt;img src=x" in html
    row = html[html.index(f'data-sweep="{first}"'):html.index("</tr>", html.index(f'data-sweep="{first}"'))]
    assert "8 of 8 finished" in row and "8 succeeded" in row and ">0.0625<" in row
    row = html[html.index(f'data-sweep="{second}"'):]
    assert "1 of 8 finished" in row and "1 running" in row and "6 queued" in row
    assert f'href="/runs?sweep={first}"' in html
    assert 'href="/sweeps"' in client.get("/runs").get_data(as_text=True)  # the nav links to the sweeps


def test_the_sweeps_list_pages(client: FlaskClient, Session, logged_in, monkeypatch) -> None:
    monkeypatch.setattr("trainyard.service.dashboard.pages.SWEEPS_PAGE_SIZE", 1)
    older, _ = make_sweep(Session, name="older")
    newer, _ = make_sweep(Session, name="newer")
    logged_in("read")
    html = client.get("/sweeps").get_data(as_text=True)
    assert f'data-sweep="{newer}"' in html and f'data-sweep="{older}"' not in html
    following = re.search(r'<a rel="next" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    html = client.get(following).get_data(as_text=True)
    assert f'data-sweep="{older}"' in html and 'rel="next"' not in html
    assert client.get("/sweeps?cursor=nope").status_code == 400


def test_the_sweeps_list_shows_the_project_picked(client: FlaskClient, Session, logged_in) -> None:
    with Session() as s, s.begin():
        for name, project in (("in vision", "vision"), ("in audio", "audio")):
            sweep = repo.create_sweep(session=s, name=name, method="grid", base_spec=SPEC, space={}, project=project)
            repo.create_run(session=s, spec=SPEC, name=name, seed=3, tags=[], notes="", epochs_total=10,
                            sweep_id=sweep.id, project=project)
    logged_in("read")
    html = client.get("/sweeps?project=vision").get_data(as_text=True)
    assert re.findall(r'<td class="name"><a href="/sweeps/[0-9a-f]+">([^<]*)</a>', html) == ["in vision"]
    assert '<option value="vision" selected>vision (1 run)</option>' in html
    assert 'href="/runs?project=vision"' in html  # the header's link to the runs keeps the project
    everything = client.get("/sweeps").get_data(as_text=True)
    assert sorted(re.findall(r'<td class="name"><a href="/sweeps/[0-9a-f]+">([^<]*)</a>', everything)) == [
        "in audio", "in vision"]
    assert client.get("/sweeps?project=a%00b").status_code == 400


def test_sweep_page_ranks_runs_by_the_metric_with_swept_values(client: FlaskClient, Session, logged_in) -> None:
    sweep_id, ids = make_sweep(Session)
    logged_in("read")
    response = client.get(f"/sweeps/{sweep_id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    data = page_data(html)
    assert data["metric"] == "val_loss" and data["paths"] == ["optimizer.lr", "model.hidden.0.units"]
    best = ids[LRS.index(0.1) * 2 + 1]
    assert data["best"]["run"] == best and data["runs"][0]["id"] == best and data["runs"][0]["params"] == [0.1, 16]
    values = [run["value"] for run in data["runs"]]
    assert values == sorted(values)
    assert data["progress"]["finished"] == 8 and data["active"] is False
    assert 'option value="val_loss" selected' in html
    assert "<th>optimizer.lr</th>" in html and "<th>model.hidden.0.units</th>" in html
    assert "0.001, 0.01, 0.1, 1<" in html  # the space
    top = ",".join(run["id"] for run in data["runs"][:5])
    assert f'href="/compare?runs={top.replace(",", "%2C")}"' in html or f'href="/compare?runs={top}"' in html
    assert f'href="/runs?sweep={sweep_id}"' in html
    assert 'id="cancel-sweep"' not in html  # read scope: no cancel form
    rows = re.findall(r'<tr data-run="([0-9a-f]{32})"', html)
    assert rows == [run["id"] for run in data["runs"]]
    assert 'class="num best"' in html[html.index(f'<tr data-run="{best}"'):]

    accuracy = page_data(client.get(f"/sweeps/{sweep_id}?metric=val_accuracy").get_data(as_text=True))
    assert accuracy["higher_is_better"] and accuracy["runs"][0]["id"] == best
    values = [run["value"] for run in accuracy["runs"]]
    assert values == sorted(values, reverse=True)
    assert client.get(f"/sweeps/{sweep_id}?metric=nonsense").status_code == 400


def test_default_metric_without_held_out_data_is_train_loss(client: FlaskClient, Session, logged_in) -> None:
    sweep_id, _ = make_sweep(Session, held_out=False)
    logged_in("read")
    assert page_data(client.get(f"/sweeps/{sweep_id}").get_data(as_text=True))["metric"] == "train_loss"


def test_sweep_data_follows_progress(client: FlaskClient, Session, logged_in) -> None:
    sweep_id, ids = make_sweep(Session, statuses=("succeeded", "running") + ("queued",) * 6)
    logged_in("read")
    body = client.get(f"/ui/data/sweeps/{sweep_id}").get_json()
    assert body["active"] is True and body["progress"]["counts"]["queued"] == 6
    assert body["runs"][0]["id"] == ids[0] and body["runs"][0]["value"] is not None
    assert [run["value"] for run in body["runs"][1:]] == [None] * 7
    assert client.get(f"/ui/data/sweeps/{sweep_id}?metric=bad").status_code == 400
    assert client.get(f"/ui/data/sweeps/{'0' * 32}").status_code == 404


def test_unknown_sweep_is_the_404_page(client: FlaskClient, logged_in) -> None:
    csrf = logged_in("write")
    for path in ("/sweeps/" + "0" * 32, "/sweeps/nonsense"):
        response = client.get(path)
        assert response.status_code == 404 and "404" in response.get_data(as_text=True), path
    assert client.post("/sweeps/" + "0" * 32 + "/cancel", data={"csrf": csrf}).status_code == 404


def test_cancel_sweep_cancels_queued_and_flags_running_runs(client: FlaskClient, Session, logged_in) -> None:
    sweep_id, ids = make_sweep(Session, statuses=("succeeded", "running") + ("queued",) * 6)
    csrf = logged_in("write")
    html = client.get(f"/sweeps/{sweep_id}").get_data(as_text=True)
    assert 'id="cancel-sweep"' in html
    assert client.post(f"/sweeps/{sweep_id}/cancel", data={}).status_code == 400  # no CSRF value
    response = client.post(f"/sweeps/{sweep_id}/cancel", data={"csrf": csrf})
    assert response.status_code == 303 and response.headers["Location"] == f"/sweeps/{sweep_id}"
    with Session() as s:
        runs = {run.id: run for run in s.query(Run).filter(Run.sweep_id == sweep_id)}
    assert runs[ids[0]].status == "succeeded"
    assert runs[ids[1]].status == "running" and runs[ids[1]].cancel_requested
    assert all(runs[run_id].status == "cancelled" for run_id in ids[2:])


def test_a_read_token_cannot_cancel_a_sweep(client: FlaskClient, Session, logged_in) -> None:
    sweep_id, _ = make_sweep(Session, statuses=("queued",) * 8)
    csrf = logged_in("read")
    assert client.post(f"/sweeps/{sweep_id}/cancel", data={"csrf": csrf}).status_code == 403
    with Session() as s:
        assert {run.status for run in s.query(Run).filter(Run.sweep_id == sweep_id)} == {"queued"}


def test_a_random_sweep_shows_its_distributions_and_non_numeric_values(client: FlaskClient, Session, logged_in) -> None:
    space = {"space": {"optimizer.lr": {"log_uniform": [0.0001, 0.1]}, "model.hidden.0.activation":
                       {"choice": ["tanh", "relu"]}}, "n": 2, "seed": 7}
    with Session() as s, s.begin():
        sweep = repo.create_sweep(session=s, name="random", method="random", base_spec=SPEC, space=space)
        for i, (lr, activation) in enumerate([(0.003, "relu"), (0.02, XSS)]):
            spec = copy.deepcopy(SPEC)
            spec["optimizer"]["lr"] = lr
            spec["model"]["hidden"][0]["activation"] = activation
            repo.create_run(session=s, spec=spec, name=f"random #{i + 1:03d}", seed=3, tags=[], notes="",
                            epochs_total=10, sweep_id=sweep.id)
    logged_in("read")
    html = client.get(f"/sweeps/{sweep.id}").get_data(as_text=True)
    assert "random search (seed 7)" in html
    assert "log-uniform [0.0001, 0.1]" in html and "choice of tanh, relu" in html
    assert XSS not in html and "&lt;img src=x" in html
    data = page_data(html)
    assert data["metric"] == "train_loss" and [run["params"] for run in data["runs"]] == [[0.003, "relu"], [0.02, XSS]]


def test_the_runs_table_filtered_by_a_sweep_links_back_to_it(client: FlaskClient, Session, logged_in) -> None:
    sweep_id, _ = make_sweep(Session)
    logged_in("read")
    html = client.get(f"/runs?sweep={sweep_id}").get_data(as_text=True)
    assert html.count("<tr data-run=") == 8 and f'href="/sweeps/{sweep_id}"' in html
    for odd in ("a/b?c", XSS):
        assert client.get("/runs", query_string={"sweep": odd}).status_code == 200


def test_sweep_pages_load_nothing_from_elsewhere_and_run_no_inline_code(client: FlaskClient, Session,
                                                                         logged_in) -> None:
    sweep_id, _ = make_sweep(Session)
    with Session() as s, s.begin():
        empty = repo.create_sweep(session=s, name="empty", method="grid", base_spec=SPEC,
                                  space={"space": {"seed": [1]}, "n": None, "seed": 0}).id
    logged_in("read")
    for path in ("/sweeps", f"/sweeps/{sweep_id}", f"/sweeps/{empty}"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        html = response.get_data(as_text=True)
        for tag in re.findall(r"<script[^>]*>", html):
            assert 'src="/ui/' in tag or 'type="application/json"' in tag, tag
        assert not re.search(r'(src|href)="(https?:)?//', html), path
    assert "This sweep has no runs." in client.get(f"/sweeps/{empty}").get_data(as_text=True)
