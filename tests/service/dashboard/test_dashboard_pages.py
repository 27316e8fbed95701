"""The dashboard's pages through Flask's test client, on SQLite and PostgreSQL: login, runs, run, compare, forms."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from flask.testing import FlaskClient

from trainyard.service.dashboard.views import key_params, model_text
from trainyard.service.storage import repo

XSS = "<img src=x onerror=alert(1)>"


class Resources(HTMLParser):
    """Every ``src`` and stylesheet ``href`` of a page, and whether an inline script carries code."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_code = False
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "src" in attrs:
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])
        self._in_script = tag == "script" and "src" not in attrs and attrs.get("type") != "application/json"

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_code = True

    def handle_endtag(self, tag):
        self._in_script = False


def resources(html: str) -> Resources:
    parser = Resources()
    parser.feed(html)
    return parser


# --------------------------------------------------------------------------- login


def test_pages_redirect_to_login_without_a_session(client: FlaskClient, make_run) -> None:
    run_id = make_run()
    for path in ("/runs", f"/runs/{run_id}", f"/compare?runs={run_id}"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next=")
    assert client.get("/").headers["Location"] == "/runs"


def test_data_endpoints_answer_401_without_a_session(client: FlaskClient, make_run) -> None:
    run_id = make_run()
    for path in (f"/ui/data/runs/{run_id}/series", f"/ui/data/compare?runs={run_id}", f"/ui/data/poll?runs={run_id}",
                 f"/ui/data/runs/{run_id}/weights", f"/ui/data/runs/{run_id}/export.csv"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.get_json()["error"]["code"] == "unauthorized"


def test_login_form_sets_an_httponly_samesite_cookie_and_logout_ends_it(client, tokens, csrf) -> None:
    page = client.get("/login?next=/compare%3Fruns%3Dx")
    assert page.status_code == 200 and 'name="token"' in page.get_data(as_text=True)
    response = client.post("/login", data={"token": tokens["read"], "csrf": csrf(page.get_data(as_text=True)),
                                           "next": "/runs?q=a"})
    assert response.status_code == 303 and response.headers["Location"] == "/runs?q=a"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and tokens["read"] not in cookie
    runs = client.get("/runs")
    assert runs.status_code == 200
    response = client.post("/logout", data={"csrf": csrf(runs.get_data(as_text=True))})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert client.get("/runs").status_code == 302


def test_a_token_in_the_query_string_is_refused_with_the_reason(client: FlaskClient, tokens, csrf) -> None:
    """``/login?token=`` (the old one-click link) would put the token in access logs: it logs nobody in."""
    token = tokens["admin"]
    response = client.get(f"/login?token={token}&next=/sweeps")
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="token-in-query"' in html and "logs" in html
    assert token not in html  # not echoed back
    assert response.headers["Referrer-Policy"] == "no-referrer"  # the page's own requests do not repeat the address
    assert 'name="token"' in html  # the plain form is still there
    assert client.get("/runs").status_code == 302
    form = {"token": token, "csrf": csrf(html), "next": "/runs"}
    assert client.post(f"/login?token={token}", data=form).status_code == 400
    assert client.get("/runs").status_code == 302
    assert client.post("/login", data=form).status_code == 303  # the form itself works


def test_the_login_page_loads_its_script_and_says_nothing_of_a_refusal(client: FlaskClient) -> None:
    page = client.get("/login")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "token-in-query" not in html
    assert page.headers["Referrer-Policy"] == "no-referrer"
    found = resources(html)
    assert "/ui/static/login.js" in found.urls and not found.inline_code
    with client.get("/ui/static/login.js") as script:
        assert script.status_code == 200 and script.mimetype == "text/javascript"
        assert "location.hash" in script.get_data(as_text=True)


def test_login_refuses_an_unknown_token_and_a_revoked_one(client: FlaskClient, Session, csrf) -> None:
    with Session() as s, s.begin():
        token, row = repo.create_token(session=s, scope="read")
        repo.revoke_token(session=s, token_id=row.id)
    for refused in ("ty_nope", token):
        page = client.get("/login")
        response = client.post("/login", data={"token": refused, "csrf": csrf(page.get_data(as_text=True))})
        html = response.get_data(as_text=True)
        assert response.status_code == 401 and "unknown or revoked" in html and refused not in html
        assert client.get("/runs").status_code == 302


def test_login_needs_the_csrf_value(client: FlaskClient, tokens) -> None:
    client.get("/login")
    assert client.post("/login", data={"token": tokens["read"]}).status_code == 400
    assert client.get("/runs").status_code == 302


def test_login_never_redirects_to_another_site(client: FlaskClient, tokens, csrf) -> None:
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        page = client.get("/login", query_string={"next": target})
        assert f'value="{target}"' not in page.get_data(as_text=True), target
        form = {"token": tokens["read"], "csrf": csrf(page.get_data(as_text=True)), "next": target}
        response = client.post("/login", data=form)
        assert response.headers["Location"] == "/runs", target


def test_revoking_the_token_ends_the_session(client: FlaskClient, Session, csrf) -> None:
    with Session() as s, s.begin():
        token, row = repo.create_token(session=s, scope="write")
    page = client.get("/login")
    assert client.post("/login", data={"token": token, "csrf": csrf(page.get_data(as_text=True))}).status_code == 303
    assert client.get("/runs").status_code == 200
    with Session() as s, s.begin():
        repo.revoke_token(session=s, token_id=row.id)
    assert client.get("/runs").status_code == 302
    assert client.get("/ui/data/poll?runs=x").status_code == 401


@pytest.mark.parametrize("auth_on", [False])
def test_with_auth_off_no_login_is_needed(client: FlaskClient, make_run) -> None:
    run_id = make_run()
    assert client.get("/runs").status_code == 200
    assert client.get(f"/runs/{run_id}").status_code == 200
    assert client.get("/login").headers["Location"] == "/runs"
    assert "Log out" not in client.get("/runs").get_data(as_text=True)


# --------------------------------------------------------------------------- runs table


def test_runs_table_shows_runs_with_progress_params_and_metrics(client, logged_in, make_run) -> None:
    logged_in("read")
    make_run("finished", epochs=20, status="succeeded", total=20, tags=["t1"])
    make_run("training", epochs=7, status="running", total=50)
    html = client.get("/runs").get_data(as_text=True)
    assert "finished" in html and "training" in html
    assert "epoch 7 of 50" in html and "epoch 20 of 20" in html
    assert '<b>opt</b> <span class="value">sgd</span>' in html
    assert '<b>lr</b> <span class="value" title="0.5">0.5</span>' in html
    assert '<span class="layer">4 tanh</span>' in html
    assert "0.025" in html  # final train loss 0.5 / 20
    assert 'class="status status-running"' in html
    assert "Cancel" not in html and "Delete" not in html  # a read token sees no forms


def test_key_params_show_layers_and_a_short_learning_rate() -> None:
    spec = {"dataset": {"name": "moons"}, "optimizer": {"name": "adam", "lr": 0.0008120532108251925},
            "model": {"type": "mlp", "hidden": [{"units": 31, "activation": "sigmoid"},
                                                {"units": 16, "activation": "relu"}]}, "batch_size": 16}
    params = {param.label: param for param in key_params(spec)}
    assert params["model"].text == "31 sigmoid · 16 relu"
    assert params["lr"].text == "0.0008121" and params["lr"].full == "0.0008120532108251925"
    assert [param.label for param in key_params(spec)] == ["data", "model", "opt", "lr", "batch"]
    assert model_text({"type": "mlp", "hidden": []}) == "linear"
    assert model_text({"type": "perceptron"}) == "perceptron"
    assert key_params({})[3] == ("lr", "?", None)


def test_runs_table_filters_sorts_and_pages(client, logged_in, make_run, monkeypatch) -> None:
    logged_in("read")
    ids = [make_run(f"run-{i}", tags=["even" if i % 2 == 0 else "odd"]) for i in range(5)]
    make_run("other", status="succeeded", epochs=3, total=3)

    def names(html: str) -> list[str]:
        return re.findall(r'<td class="name"><a href="/runs/[0-9a-f]+">([^<]*)</a>', html)

    assert names(client.get("/runs?tag=even").get_data(as_text=True)) == ["run-4", "run-2", "run-0"]
    assert names(client.get("/runs?status=succeeded").get_data(as_text=True)) == ["other"]
    assert names(client.get("/runs?q=RUN-3").get_data(as_text=True)) == ["run-3"]
    assert names(client.get("/runs?sort=name&q=run").get_data(as_text=True)) == [f"run-{i}" for i in range(5)]
    monkeypatch.setattr("trainyard.service.dashboard.pages.PAGE_SIZE", 2)
    first = client.get("/runs?sort=name&q=run").get_data(as_text=True)
    assert names(first) == ["run-0", "run-1"]
    cursor = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert names(client.get(cursor).get_data(as_text=True)) == ["run-2", "run-3"]
    assert client.get("/runs?status=bogus").status_code == 400
    assert client.get("/runs?sort=bogus").status_code == 400
    assert client.get("/runs?cursor=bogus").status_code == 400
    assert client.get("/runs?q=a%00b").status_code == 400
    assert len(ids) == 5


def test_the_runs_table_shows_the_project_picked_and_keeps_it_in_its_links(client, logged_in, make_run,
                                                                         monkeypatch) -> None:
    logged_in("read")
    for i in range(3):
        make_run(f"vision-{i}", project="vision")
    make_run("audio-0", project="audio")
    make_run("plain")

    def names(html: str) -> list[str]:
        return re.findall(r'<td class="name"><a href="/runs/[0-9a-f]+">([^<]*)</a>', html)

    html = client.get("/runs?project=vision&sort=name").get_data(as_text=True)
    assert names(html) == ["vision-0", "vision-1", "vision-2"]
    assert re.search(r'<option value="vision" selected>vision \(3 runs\)</option>', html)
    assert '<option value="audio">audio (1 run)</option>' in html and '<option value="default">' in html
    assert '<input type="hidden" name="project" value="vision">' in html  # the filters keep it
    assert 'href="/runs?sort=-name&amp;project=vision"' in html  # and so do the sort links
    assert 'href="/sweeps?project=vision"' in html  # and the header's link to the sweeps
    assert names(client.get("/runs?project=").get_data(as_text=True)) == [
        "plain", "audio-0", "vision-2", "vision-1", "vision-0"]
    unknown = client.get("/runs?project=nothing").get_data(as_text=True)
    assert names(unknown) == [] and '<option value="nothing" selected>nothing</option>' in unknown
    monkeypatch.setattr("trainyard.service.dashboard.pages.PAGE_SIZE", 2)
    first = client.get("/runs?project=vision&sort=name").get_data(as_text=True)
    following = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert "project=vision" in following and names(client.get(following).get_data(as_text=True)) == ["vision-2"]
    assert client.get("/runs?project=a%00b").status_code == 400


# --------------------------------------------------------------------------- run page


def test_run_page_shows_the_run(client, logged_in, make_run) -> None:
    logged_in("read")
    run_id = make_run("boom", epochs=3, status="failed", total=10, error="diverged at epoch 3")
    response = client.get(f"/runs/{run_id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "diverged at epoch 3" in html and "epoch 3 of 10" in html
    assert "&#34;optimizer&#34;: {" in html  # the spec, indented and escaped
    assert 'id="chart-boundary"' in html  # xor is 2-D
    assert f"/ui/data/runs/{run_id}/export.csv" in html


def test_unknown_run_is_a_404_page(client, logged_in) -> None:
    logged_in("read")
    for path in ("/runs/" + "0" * 32, "/runs/nope", "/runs/%00", "/compare?runs=" + "0" * 32, "/compare?runs=%00"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.mimetype == "text/html" and "404" in response.get_data(as_text=True)
    assert client.get("/ui/data/runs/" + "0" * 32 + "/series").status_code == 404
    for path in ("/ui/data/runs/%00/series", "/ui/data/poll?runs=%00", "/ui/data/compare?runs=x%00"):
        response = client.get(path)
        assert response.status_code == 404 and response.mimetype == "application/json", path


def test_user_strings_are_shown_as_text(client, logged_in, make_run) -> None:
    logged_in("read")
    run_id = make_run(XSS, tags=[XSS], status="failed", error=XSS)
    other = make_run("plain", spec_changes={"notes": XSS})
    many = [make_run(XSS + "</script>", spec_changes={"optimizer": {"name": "sgd", "lr": 0.1 * i}}) for i in range(4)]
    for path in ("/runs", f"/runs/{run_id}", f"/compare?runs={run_id},{other}", "/compare?runs=" + ",".join(many)):
        html = client.get(path).get_data(as_text=True)
        assert XSS not in html and "</script><" not in html, path
        assert "&lt;img src=x onerror=alert(1)&gt;" in html, path
    assert 'id="params-data"' in html and "\\u003cimg src=x" in html  # the JSON for the script, escaped too


@pytest.mark.parametrize("path", ["/runs", "/runs/{id}", "/compare?runs={id},{other}", "/login"])
def test_pages_load_nothing_from_elsewhere_and_run_no_inline_script(client, logged_in, make_run, path) -> None:
    run_id, other = make_run(epochs=2, status="running"), make_run("b")
    logged_in("write")
    response = client.get(path.format(id=run_id, other=other))
    found = resources(response.get_data(as_text=True))
    assert found.urls and all(url.startswith("/") and not url.startswith("//") for url in found.urls), found.urls
    assert not found.inline_code
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    for url in found.urls:
        with client.get(url) as resource:
            assert resource.status_code == 200, url


def test_plotly_comes_from_the_installed_package(client, logged_in) -> None:
    logged_in("read")
    with client.get("/ui/vendor/plotly.min.js") as response:
        assert response.status_code == 200 and response.mimetype == "text/javascript"
        assert b"plotly.js" in response.get_data()[:2000]
        assert response.headers["Cache-Control"] == "public, max-age=86400" and response.headers["ETag"]
        etag = response.headers["ETag"]
    with client.get("/ui/vendor/plotly.min.js", headers={"If-None-Match": etag}) as again:
        assert again.status_code == 304 and not again.get_data()  # the browser's copy is current


# --------------------------------------------------------------------------- cancel and delete


def test_write_token_cancels_and_deletes_with_the_csrf_value(client, logged_in, make_run, Session) -> None:
    token = logged_in("write")
    running, queued = make_run("r", status="running", epochs=2), make_run("q")
    html = client.get("/runs").get_data(as_text=True)
    assert html.count(">Cancel</button>") == 2 and html.count(">Delete</button>") == 2
    response = client.post(f"/runs/{running}/cancel", data={"csrf": token, "next": "/runs?q=r"})
    assert response.status_code == 303 and response.headers["Location"] == "/runs?q=r"
    response = client.post(f"/runs/{queued}/cancel", data={"csrf": token})
    assert response.headers["Location"] == "/runs"
    with Session() as s:
        assert repo.get_run(session=s, run_id=running).cancel_requested
        assert repo.get_run(session=s, run_id=queued).status == "cancelled"
    response = client.post(f"/runs/{queued}/delete", headers={"X-CSRF-Token": token},
                           data={"next": f"/runs/{queued}"})
    assert response.status_code == 303 and response.headers["Location"] == "/runs"
    with Session() as s:
        assert repo.get_run(session=s, run_id=queued) is None
    assert client.post(f"/runs/{queued}/delete", data={"csrf": token}).status_code == 404
    for bad in ("%00", "nope"):
        assert client.post(f"/runs/{bad}/delete", data={"csrf": token}).status_code == 404
        assert client.post(f"/runs/{bad}/cancel", data={"csrf": token}).status_code == 404


def test_forms_without_the_csrf_value_are_refused(client, logged_in, make_run, Session) -> None:
    logged_in("admin")
    run_id = make_run(status="running", epochs=1)
    for data in ({}, {"csrf": "wrong"}):
        assert client.post(f"/runs/{run_id}/cancel", data=data).status_code == 400
        assert client.post(f"/runs/{run_id}/delete", data=data).status_code == 400
        assert client.post("/logout", data=data).status_code == 400
    with Session() as s:
        run = repo.get_run(session=s, run_id=run_id)
        assert run is not None and not run.cancel_requested


def test_a_read_token_cannot_cancel_or_delete(client, logged_in, make_run, Session) -> None:
    token = logged_in("read")
    run_id = make_run(status="running", epochs=1)
    assert client.post(f"/runs/{run_id}/cancel", data={"csrf": token}).status_code == 403
    assert client.post(f"/runs/{run_id}/delete", data={"csrf": token}).status_code == 403
    with Session() as s:
        assert not repo.get_run(session=s, run_id=run_id).cancel_requested


def test_forms_without_a_session_are_refused(client, make_run) -> None:
    run_id = make_run()
    assert client.post(f"/runs/{run_id}/cancel", data={"csrf": "x"}).status_code == 401


# --------------------------------------------------------------------------- compare


def test_compare_highlights_differing_params_and_marks_the_best(client, logged_in, make_run) -> None:
    logged_in("read")
    a = make_run("a", epochs=10, status="succeeded", total=10)
    optimizer = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0}  # as stored
    b = make_run("b", epochs=20, status="succeeded", total=20, spec_changes={"optimizer": optimizer})
    html = client.get(f"/compare?runs={a},{b}").get_data(as_text=True)
    differs = re.findall(r'<tr class="differs" data-param="([^"]+)">', html)
    same = re.findall(r'<tr class="same" data-param="([^"]+)">', html)
    assert differs == ["optimizer.lr"] and "dataset.name" in same and "optimizer.momentum" in same
    assert "name" not in same  # the name describes a run: not compared
    best = re.findall(r'<td class="num best" data-field="([a-z_]+)">', html)
    assert "final_train_loss" in best and "best_val_loss" in best


def test_compare_takes_the_tables_form_and_redirects_to_the_shareable_address(client, logged_in, make_run) -> None:
    logged_in("read")
    a, b = make_run("a"), make_run("b")
    response = client.get(f"/compare?run={a}&run={b}")
    assert response.status_code == 302 and response.headers["Location"] == f"/compare?runs={a},{b}"
    assert client.get("/compare").status_code == 400


def test_compare_of_many_runs_has_the_parameters_view(client, logged_in, make_run) -> None:
    logged_in("read")
    ids = [make_run(f"r{i}", spec_changes={"optimizer": {"name": "sgd", "lr": 0.1 * (i + 1)}}) for i in range(5)]
    html = client.get("/compare?runs=" + ",".join(ids)).get_data(as_text=True)
    assert 'id="params-charts"' in html and 'id="params-data"' in html
