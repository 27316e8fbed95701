"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright, against a real server.

The server is the app on a SQLite database, served by werkzeug in a thread
(threaded, like gunicorn's gthread workers).  No browser is downloaded:
Playwright launches ``/usr/bin/chromium`` (``.ci/run`` installs it).
Screenshots of each page go to ``TRAINYARD_SCREENSHOTS`` (default: the test's
tmp folder); with ``TRAINYARD_UPDATE_DOCS=1`` the compare page's is also
written to ``docs/compare.png`` for the README.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker
from werkzeug.serving import make_server

from trainyard.local import login_link
from trainyard.service.app import create_app
from trainyard.service.config import Settings
from trainyard.service.storage import repo
from trainyard.service.storage.migrate import upgrade
from trainyard.service.storage.repo import TOKEN_PREFIX
from trainyard.trainer import fit

XSS = "<img src=x onerror=alert(1)>"
#: Plotly reads some HTML in trace names: this one would become a link, were it not escaped.
LINK = '<a href="https://example.com/">click</a> & <b>bold</b>'
DOCS = Path(__file__).resolve().parents[3] / "docs"

SPEC: dict[str, Any] = {
    "version": 1,
    "name": "moons",
    "dataset": {"name": "moons", "test_fraction": 0.25, "standardize": True},
    "model": {"type": "mlp", "hidden": [{"units": 16, "activation": "tanh"}], "init": "xavier"},
    "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9},
    "epochs": 150,
    "batch_size": 16,
    "seed": 1,
    "tags": ["browser"],
}


class Server:
    """The app served over HTTP from a thread."""

    def __init__(self, settings: Settings):
        self.app = create_app(settings)
        self.Session: sessionmaker[OrmSession] = self.app.extensions["trainyard"].Session
        #: Every request's method, path, query and Referer, as the server saw them (what an access log holds).
        self.requests: list[str] = []
        handle = self.app.wsgi_app

        def recorded(environ: dict[str, Any], start_response: Any) -> Any:
            self.requests.append(" ".join((environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                                           environ.get("QUERY_STRING", ""), environ.get("HTTP_REFERER", ""))))
            return handle(environ, start_response)

        self.app.wsgi_app = recorded  # type: ignore[method-assign]
        self.http = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        self.thread = threading.Thread(target=self.http.serve_forever, name="dashboard-server", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(10)
        self.app.extensions["trainyard"].engine.dispose()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{folder / 'trainyard.db'}"
    upgrade(url)
    server = Server(Settings(data_dir=folder, database_url=url, broker_url="memory://", auth=True))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(server: Server) -> str:
    with server.Session() as s, s.begin():
        return repo.create_token(session=s, scope="write", name="browser")[0]


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("TRAINYARD_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Page:
    """A browser page that records dialogs and script errors (CSP violations included)."""

    def __init__(self, browser: Any, server: Server, width: int = 1400):
        self.context = browser.new_context(base_url=server.url, viewport={"width": width, "height": 1000})
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def log_in(self, token: str) -> None:
        self.page.goto("/runs")
        assert "/login" in self.page.url
        self.page.fill('input[name="token"]', token)
        self.page.click('button:has-text("Log in")')
        self.page.wait_for_url("**/runs")

    def traces(self, chart: str) -> int:
        return self.page.locator(f"#{chart} .scatterlayer .trace").count()

    def points(self, chart: str, trace: int = 0) -> int:
        return self.page.evaluate(f"document.getElementById('{chart}').data[{trace}].x.length")


def _opened(browser: Any, server: Server, width: int) -> Iterator[Page]:
    opened = Page(browser, server, width)
    yield opened
    opened.context.close()
    assert not opened.errors, opened.errors


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Page]:
    yield from _opened(browser, server, 1400)


@pytest.fixture
def laptop(browser: Any, server: Server) -> Iterator[Page]:
    """A page in a 1280-px window, the narrowest laptop screen the dashboard is laid out for."""
    yield from _opened(browser, server, 1280)


def _trained_run(server: Server, name: str, lr: float, *, tags: list[str] | None = None,
                 changes: dict[str, Any] | None = None) -> str:
    """A succeeded run with the real curves of training ``SPEC`` (with these top-level ``changes``) at ``lr``."""
    spec = copy.deepcopy(SPEC) | {"name": name} | (changes or {})
    spec["optimizer"]["lr"] = lr
    rows: list[dict[str, Any]] = []
    snapshots: list[tuple[int, bytes]] = []

    def record(epoch: Any) -> None:
        rows.append(epoch.metrics())
        if epoch.epoch in (1, 5, 20, 50, 100, spec["epochs"]):
            snapshots.append((epoch.epoch, _npz(epoch.weights)))

    fit(spec, on_epoch=record)
    start = dt.datetime.now(dt.timezone.utc)
    with server.Session() as s, s.begin():
        run = repo.create_run(session=s, spec=spec, name=name, seed=1, tags=tags or SPEC["tags"], notes="",
                              epochs_total=spec["epochs"])
        repo.claim_run(session=s, run_id=run.id, worker="browser-test", lease_seconds=600)
        for row in rows:
            row["recorded_at"] = start + dt.timedelta(seconds=row["seconds"] * row["epoch"])
        repo.write_epochs(session=s, run_id=run.id, rows=rows)
        repo.write_weights_many(session=s, run_id=run.id, snapshots=snapshots)
        last = rows[-1]
        best = min(rows, key=lambda row: row["val_loss"])
        summary = {"final_train_loss": last["train_loss"], "final_train_accuracy": last["train_accuracy"],
                   "final_val_loss": last["val_loss"], "final_val_accuracy": last["val_accuracy"],
                   "best_val_loss": best["val_loss"], "best_val_accuracy": best["val_accuracy"],
                   "best_epoch": best["epoch"]}
        repo.finish_run(session=s, run_id=run.id, status="succeeded", summary=summary)
        return run.id


def _npz(weights: list[Any]) -> bytes:
    """``[W1, b1, W2, b2, ...]`` as the worker stores them."""
    buffer = io.BytesIO()
    np.savez(buffer, **{f"{'Wb'[i % 2]}{i // 2 + 1}": array for i, array in enumerate(weights)})
    return buffer.getvalue()


def test_log_in_select_two_runs_and_compare(page: Page, server: Server, token: str, screenshots: Path) -> None:
    slow = _trained_run(server, "moons lr=0.01", 0.01, tags=["compare"])
    fast = _trained_run(server, "moons lr=0.2", 0.2, tags=["compare"])
    p = page.page
    p.goto("/runs")
    p.screenshot(path=screenshots / "login.png")
    page.log_in(token)
    p.goto("/runs?tag=compare")
    assert p.locator("#runs-table tbody tr[data-run]").count() == 2
    # every column, the Delete buttons included, fits a laptop's 1400-px window: no sideways scrolling
    table = p.locator("#runs-table")
    assert p.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert table.evaluate("el => el.parentElement.scrollWidth <= el.parentElement.clientWidth")
    delete = table.locator("button.danger").first.bounding_box()
    assert delete is not None and delete["x"] + delete["width"] <= 1400
    p.screenshot(path=screenshots / "runs.png", full_page=True)
    for run_id in (slow, fast):
        p.check(f'tr[data-run="{run_id}"] input[name="run"]')
    p.click("#compare-button")
    p.wait_for_url("**/compare?runs=*")
    assert set(p.url.split("runs=")[1].split(",")) == {slow, fast}
    for chart in ("chart-train_loss", "chart-val_loss", "chart-train_accuracy", "chart-val_accuracy"):
        p.wait_for_function(f"() => document.querySelectorAll('#{chart} .scatterlayer .trace').length === 2")
        assert page.points(chart, 0) == page.points(chart, 1) == SPEC["epochs"]
    legend = p.locator("#chart-train_loss .legendtext").all_text_contents()
    assert sorted(legend) == ["moons lr=0.01", "moons lr=0.2"]
    differs = p.locator("#params-table tr.differs")
    assert differs.count() == 1 and differs.get_attribute("data-param") == "optimizer.lr"
    highlighted = differs.locator("td").first.evaluate("el => getComputedStyle(el).backgroundColor")
    plain = p.locator("#params-table tr.same td").first.evaluate("el => getComputedStyle(el).backgroundColor")
    assert highlighted != plain
    p.check("#differences-only")
    assert p.locator("#params-table tr.same").first.is_hidden()
    p.uncheck("#differences-only")
    raw = p.evaluate("() => document.getElementById('chart-train_loss').data[0].y.slice(0, 20)")
    p.locator("#smoothing").fill("0.9")
    p.wait_for_function("() => document.getElementById('chart-train_loss').data[0].y[10] !== " + str(raw[10]))
    smoothed = p.evaluate("() => document.getElementById('chart-train_loss').data[0].y.slice(0, 20)")
    assert smoothed[0] == pytest.approx(raw[0]) and smoothed[10] != pytest.approx(raw[10])
    p.locator("#smoothing").fill("0")
    p.select_option("#x-axis", "elapsed")
    p.wait_for_function("() => document.getElementById('chart-train_loss').layout.xaxis.title.text === 'wall time (s)'")
    elapsed = p.evaluate("() => document.getElementById('chart-train_loss').data[0].x")
    assert len(elapsed) == SPEC["epochs"] and all(b >= a for a, b in zip(elapsed, elapsed[1:])) and elapsed[-1] > 0
    p.select_option("#x-axis", "epoch")
    p.check("#log-y")
    p.wait_for_function("() => document.getElementById('chart-train_loss').layout.yaxis.type === 'log'")
    assert p.evaluate("() => document.getElementById('chart-train_accuracy').layout.yaxis.type") == "linear"
    p.screenshot(path=screenshots / "compare.png", full_page=True)
    if os.environ.get("TRAINYARD_UPDATE_DOCS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(screenshots / "compare.png", DOCS / "compare.png")
    p.goto(f"/runs/{fast}")
    p.wait_for_function("() => document.querySelectorAll('#chart-loss .scatterlayer .trace').length === 2")
    p.wait_for_selector("#chart-boundary .contourlayer, #chart-boundary .heatmaplayer")
    p.wait_for_selector("#heatmap-0 .hm")
    assert p.locator("#weights-epoch-value").text_content() == str(SPEC["epochs"])
    assert "epoch 150" in p.locator("#chart-boundary .gtitle").text_content()
    p.screenshot(path=screenshots / "run.png", full_page=True)
    p.locator("#weights-epoch").fill("0")  # the slider runs over the stored epochs: 1, 5, 20, 50, 100, 150
    p.wait_for_function("() => document.querySelector('#chart-boundary .gtitle').textContent.endsWith('epoch 1')")
    assert p.locator("#weights-epoch-value").text_content() == "1"


def test_a_running_runs_curve_grows_without_a_reload(page: Page, server: Server, token: str,
                                                     screenshots: Path) -> None:
    with server.Session() as s, s.begin():
        run = repo.create_run(session=s, spec=SPEC, name="live", seed=1, tags=["live"], notes="", epochs_total=40)
        repo.claim_run(session=s, run_id=run.id, worker="browser-test", lease_seconds=600)
        repo.write_epochs(session=s, run_id=run.id, rows=[_epoch(e) for e in range(1, 6)])
        other = repo.create_run(session=s, spec=SPEC, name="done", seed=1, tags=["live"], notes="", epochs_total=3)
        repo.write_epochs(session=s, run_id=other.id, rows=[_epoch(e) for e in range(1, 4)])
    page.log_in(token)
    p = page.page
    p.goto("/runs?tag=live")  # the runs table follows its running runs' progress
    progress = p.locator(f'tr[data-run="{run.id}"] [data-field="progress"]')
    assert progress.text_content() == "epoch 5 of 40"
    with server.Session() as s, s.begin():
        repo.write_epochs(session=s, run_id=run.id, rows=[_epoch(6)])
    p.wait_for_function(f"() => document.querySelector('tr[data-run=\"{run.id}\"] [data-field=\"progress\"]')"
                        ".textContent === 'epoch 6 of 40'", timeout=2500)
    p.goto(f"/compare?runs={run.id},{other.id}")  # the compare page follows a running run too
    p.wait_for_function("() => document.querySelectorAll('#chart-train_loss .scatterlayer .trace').length === 2")
    with server.Session() as s, s.begin():
        repo.write_epochs(session=s, run_id=run.id, rows=[_epoch(e) for e in range(7, 9)])
    p.wait_for_function("() => document.getElementById('chart-train_loss').data[0].x.length === 8", timeout=2500)
    assert p.evaluate("() => document.getElementById('chart-train_loss')._fullLayout.xaxis.range[1]") >= 8
    assert p.locator(f'tr[data-run="{run.id}"] [data-field="progress"]').text_content() == "epoch 8 of 40"
    p.goto(f"/runs/{run.id}")
    p.wait_for_function("() => document.querySelectorAll('#chart-loss .scatterlayer .trace').length === 2")
    assert page.points("chart-loss") == 8
    p.evaluate("window.__same_page = true")
    for last in (10, 20):
        with server.Session() as s, s.begin():
            repo.write_epochs(session=s, run_id=run.id, rows=[_epoch(e) for e in range(page.points("chart-loss") + 1,
                                                                                         last + 1)])
        written = time.monotonic()
        p.wait_for_function(f"() => document.getElementById('chart-loss').data[0].x.length === {last}", timeout=2500)
        assert time.monotonic() - written < 2.0
        for chart in ("chart-loss", "chart-accuracy", "chart-norms"):  # drawn, not only held: the axis follows
            assert p.evaluate(f"() => document.getElementById('{chart}')._fullLayout.xaxis.range[1]") >= last
        assert p.locator('[data-field="progress"]').text_content() == f"epoch {last} of 40"
    p.screenshot(path=screenshots / "run-live.png", full_page=True)
    with server.Session() as s, s.begin():
        repo.finish_run(session=s, run_id=run.id, status="succeeded", summary={"final_train_loss": 0.05})
    p.wait_for_function("() => document.querySelector('#run-page [data-field=\"status\"]').textContent === 'succeeded'",
                        timeout=2500)
    assert p.evaluate("window.__same_page") is True  # never reloaded
    p.goto("/runs?tag=live")
    assert p.locator(f'tr[data-run="{run.id}"] [data-field="status"]').text_content() == "succeeded"

    with server.Session() as s, s.begin():  # a run finishing on the compare page takes the star it earns
        late = repo.create_run(session=s, spec=SPEC, name="late", seed=2, tags=["live"], notes="", epochs_total=3)
        repo.claim_run(session=s, run_id=late.id, worker="browser-test", lease_seconds=600)
        repo.write_epochs(session=s, run_id=late.id, rows=[_epoch(e) for e in range(1, 3)])
    p.goto(f"/compare?runs={run.id},{late.id}")
    best = f'tr[data-run="{run.id}"] [data-field="final_train_loss"]'
    assert "best" in p.locator(best).get_attribute("class")
    with server.Session() as s, s.begin():
        repo.write_epochs(session=s, run_id=late.id, rows=[_epoch(3)])
        repo.finish_run(session=s, run_id=late.id, status="succeeded", summary={"final_train_loss": 0.01})
    cell = f'tr[data-run="{late.id}"] [data-field="final_train_loss"]'
    p.wait_for_function("(cell) => document.querySelector(cell).classList.contains('best')", arg=cell, timeout=2500)
    assert "best" not in p.locator(best).get_attribute("class")
    assert p.locator(cell).text_content() == "0.01"


def _epoch(e: int) -> dict[str, Any]:
    return {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_accuracy": 1 - 0.5 / e,
            "val_accuracy": 1 - 0.6 / e, "seconds": 0.01, "weight_norms": [1.0, 0.5], "grad_norms": [0.1, 0.05]}


def test_a_hostile_run_name_is_shown_as_text(page: Page, server: Server, token: str, screenshots: Path) -> None:
    with server.Session() as s, s.begin():
        hostile = repo.create_run(session=s, spec=SPEC | {"name": XSS}, name=XSS, seed=1, tags=[XSS, "xss"], notes=XSS,
                                  epochs_total=10)
        repo.claim_run(session=s, run_id=hostile.id, worker="browser-test", lease_seconds=600)
        repo.write_epochs(session=s, run_id=hostile.id, rows=[_epoch(e) for e in range(1, 4)])
        repo.finish_run(session=s, run_id=hostile.id, status="failed", error=XSS)
        plain = repo.create_run(session=s, spec=SPEC, name=LINK, seed=1, tags=["xss"], notes="", epochs_total=10)
        repo.write_epochs(session=s, run_id=plain.id, rows=[_epoch(e) for e in range(1, 3)])
    page.log_in(token)
    p = page.page
    p.goto("/runs?tag=xss")
    assert p.locator(f'tr[data-run="{hostile.id}"] td.name').text_content() == XSS
    assert p.locator("img[src=x]").count() == 0
    p.goto(f"/runs/{hostile.id}")
    assert p.locator(".run-name").text_content() == XSS
    assert p.locator('[data-field="error"]').text_content() == XSS
    p.wait_for_function("() => document.querySelectorAll('#chart-loss .scatterlayer .trace').length === 2")
    p.goto(f"/compare?runs={hostile.id},{plain.id}")
    p.wait_for_function("() => document.querySelectorAll('#chart-train_loss .scatterlayer .trace').length === 2")
    assert sorted(p.locator("#chart-train_loss .legendtext").all_text_contents()) == sorted([XSS, LINK])
    assert p.locator("#chart-train_loss .legend a, #chart-train_loss .legend b").count() == 0
    assert p.locator(f'tr[data-run="{plain.id}"] td.name a').text_content().strip() == LINK
    assert p.locator("img[src=x]").count() == 0
    p.screenshot(path=screenshots / "xss.png", full_page=True)
    p.wait_for_timeout(300)
    assert page.dialogs == []


def test_the_one_click_link_logs_in_and_its_token_never_reaches_the_server(page: Page, server: Server,
                                                                          screenshots: Path) -> None:
    with server.Session() as s, s.begin():
        token = repo.create_token(session=s, scope="read", name="one-click")[0]
    secret = token.removeprefix(TOKEN_PREFIX)
    p = page.page
    first = len(server.requests)
    p.goto(login_link(server.url, token))  # what `trainyard up` prints on a terminal: /login#token=...
    p.wait_for_url("**/runs")
    assert secret not in p.url and p.locator(".scope").text_content() == "scope: read"
    seen = server.requests[first:]
    assert any(line.startswith("POST /login") for line in seen), seen  # logged in through the form
    assert not [line for line in seen if secret in line], seen
    p.wait_for_load_state("networkidle")  # leaving while plotly.min.js is sent would leave werkzeug's file open

    # The old link, /login?token=...: refused with the reason; the address bar drops it, and the page's own
    # requests (stylesheet, script) do not send it again as their Referer.
    first = len(server.requests)
    response = p.goto(f"/login?token={token}")
    assert response.status == 400 and "logs" in p.locator("#token-in-query").text_content()
    assert p.url == f"{server.url}/login"
    p.screenshot(path=screenshots / "login-refused.png")
    assert len([line for line in server.requests[first:] if secret in line]) == 1, server.requests[first:]
    page.errors.clear()  # the browser logs the 400 of the page itself


def test_unknown_run_page(page: Page, token: str, screenshots: Path) -> None:
    page.log_in(token)
    response = page.page.goto("/runs/" + "0" * 32)
    assert response.status == 404
    assert "404" in page.page.locator("h1").text_content()
    page.page.screenshot(path=screenshots / "not-found.png")
    page.errors.clear()  # the browser logs the 404 of the page itself


def test_compare_of_50_runs_of_5000_epochs_opens_in_under_2_s(page: Page, server: Server, token: str,
                                                               screenshots: Path) -> None:
    """Curves downsampled on the server; timed from navigation to every chart holding its 50 traces.

    The first visit also parses plotly.js (4.6 MB), which the browser then
    keeps (``Cache-Control: max-age``) with its compiled code: later visits
    are what a user opening a comparison sees, and what must take under 2 s.
    """
    epochs = 5000
    ids = []
    for i in range(50):
        spec = copy.deepcopy(SPEC) | {"name": f"sweep-{i}", "epochs": epochs}
        spec["optimizer"]["lr"] = round(0.01 * (i + 1), 2)
        with server.Session() as s, s.begin():
            run = repo.create_run(session=s, spec=spec, name=f"sweep-{i}", seed=i, tags=["big"], notes="",
                                  epochs_total=epochs)
            k = np.arange(1, epochs + 1)
            loss = (1 + 0.01 * i) / k
            rows = [{"epoch": int(e), "train_loss": float(v), "val_loss": float(1.1 * v),
                     "train_accuracy": float(1 - v / 2), "val_accuracy": float(1 - v / 1.8), "seconds": 0.01}
                    for e, v in zip(k, loss)]
            repo.write_epochs(session=s, run_id=run.id, rows=rows)
            repo.finish_run(session=s, run_id=run.id, status="succeeded",
                            summary={"best_val_loss": float(loss.min()), "final_val_accuracy": float(1 - loss[-1])})
            ids.append(run.id)
    page.log_in(token)
    p = page.page
    drawn = ("() => ['train_loss', 'val_loss', 'train_accuracy', 'val_accuracy'].every(m => "
             "document.querySelectorAll('#chart-' + m + ' .scatterlayer .trace').length === 50)")
    seconds = []
    for _ in range(3):
        start = time.monotonic()
        p.goto("/compare?runs=" + ",".join(ids))
        p.wait_for_function(drawn, timeout=20_000)
        seconds.append(time.monotonic() - start)
    print(f"compare page of 50 runs x {epochs} epochs: first visit {seconds[0]:.2f} s, then "
          f"{seconds[1]:.2f} s and {seconds[2]:.2f} s")
    assert min(seconds[1:]) < 2.0, seconds  # the better of two: one hiccup of a busy machine is no regression
    assert all(0 < page.points("chart-train_loss", i) <= 1000 for i in range(50))
    p.wait_for_selector("#param-chart-0 .scatterlayer .trace")
    assert p.locator("#param-chart-0 .scatterlayer .point").count() == 50
    assert p.locator("#param-chart-0 .xtitle").text_content() == "optimizer.lr"
    p.screenshot(path=screenshots / "compare-50.png", full_page=True)


def test_sweep_page_draws_parallel_coordinates_and_compares_the_top_k(page: Page, server: Server, token: str,
                                                                      screenshots: Path) -> None:
    """A 2x2 grid on xor (lr x hidden units): three runs finished, one running that finishes while the page is open."""
    lrs, units = [0.001, 0.5], [4, 16]
    base = {"version": 1, "name": "xor", "dataset": {"name": "xor", "test_fraction": 0.25, "standardize": False},
            "model": {"type": "mlp", "hidden": [{"units": 4, "activation": "tanh"}], "init": "xavier"},
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "epochs": 5, "batch_size": 4, "seed": 1}
    ids, losses = [], []
    with server.Session() as s, s.begin():
        sweep = repo.create_sweep(session=s, name=XSS, method="grid", base_spec=base,
                                  space={"space": {"optimizer.lr": lrs, "model.hidden.0.units": units}, "n": None,
                                         "seed": 0})
        for i, (lr, width) in enumerate((lr, width) for lr in lrs for width in units):
            spec = copy.deepcopy(base)
            spec["optimizer"]["lr"] = lr
            spec["model"]["hidden"][0]["units"] = width
            spec["name"] = f"xor #{i + 1:03d} lr={lr} units={width}"
            run = repo.create_run(session=s, spec=spec, name=spec["name"], seed=1, tags=[], notes="", epochs_total=5,
                                  sweep_id=sweep.id)
            repo.claim_run(session=s, run_id=run.id, worker="browser-test", lease_seconds=600)
            repo.write_epochs(session=s, run_id=run.id, rows=[_epoch(e) for e in range(1, 6 if i < 3 else 3)])
            losses.append(0.05 + (0.5 - lr) + 1 / width)
            if i < 3:
                repo.finish_run(session=s, run_id=run.id, status="succeeded", summary={"best_val_loss": losses[i]})
            ids.append(run.id)
    page.log_in(token)
    p = page.page
    p.goto(f"/sweeps/{sweep.id}")
    assert p.locator(".sweep-name").text_content() == XSS
    p.wait_for_function("() => document.querySelectorAll('#parcoords path.pc-line').length === 4")
    assert p.locator("#parcoords path.pc-line.pending").count() == 1  # the running run: no value yet
    titles = p.locator("#parcoords text.axis-title").all_text_contents()
    assert titles == ["optimizer.lr (log)", "model.hidden.0.units", "val loss"]
    assert p.locator('#parcoords [data-axis="1"] text.tick').all_text_contents() == ["4", "16"]
    assert p.locator("#sweep-runs tbody tr[data-run]").count() == 4
    assert p.locator('[data-field="runs-progress"]').text_content() == "3 of 4 finished"

    with server.Session() as s, s.begin():  # the last run finishes, and is the best: the page follows
        repo.write_epochs(session=s, run_id=ids[3], rows=[_epoch(e) for e in range(3, 6)])
        repo.finish_run(session=s, run_id=ids[3], status="succeeded", summary={"best_val_loss": 0.01})
    p.wait_for_function("() => document.querySelector('[data-field=\"runs-progress\"]').textContent"
                        " === '4 of 4 finished'", timeout=3000)
    assert p.locator("#parcoords path.pc-line.pending").count() == 0
    assert p.locator("#parcoords path.pc-line.best").get_attribute("data-run") == ids[3]
    order = [ids[3]] + [ids[i] for i in sorted(range(3), key=lambda i: losses[i])]
    rows = p.locator("#sweep-runs tbody tr[data-run]")
    assert [rows.nth(i).get_attribute("data-run") for i in range(4)] == order
    assert "best" in rows.first.locator('[data-field="metric"]').get_attribute("class")
    assert p.locator("#cancel-sweep").is_hidden()
    p.screenshot(path=screenshots / "sweep.png", full_page=True)
    assert p.locator("img[src=x]").count() == 0

    p.select_option("#metric", "val_accuracy")  # no run has one: every line waits for its value, in sweep order
    p.wait_for_url("**metric=val_accuracy")
    p.wait_for_function("() => document.querySelectorAll('#parcoords path.pc-line.pending').length === 4")
    assert p.locator("#parcoords text.axis-title").last.text_content() == "val accuracy"
    p.select_option("#metric", "val_loss")
    p.wait_for_url("**metric=val_loss")
    p.locator("#top-k").fill("2")
    assert p.locator("#compare-top").text_content() == "compare the top 2"
    p.click("#compare-top")
    p.wait_for_url("**/compare?runs=*")
    assert p.url.split("runs=")[1].split(",") == order[:2]
    p.wait_for_function("() => document.querySelectorAll('#chart-train_loss .scatterlayer .trace').length === 2")
    p.goto(f"/sweeps/{sweep.id}")
    p.click("#runs-link")
    p.wait_for_url(f"**/runs?sweep={sweep.id}")
    assert p.locator("#runs-table tbody tr[data-run]").count() == 4


def test_a_random_sweep_draws_a_categorical_axis(page: Page, server: Server, token: str, screenshots: Path) -> None:
    base = {"version": 1, "name": "xor", "dataset": {"name": "xor", "standardize": False},
            "model": {"type": "mlp", "hidden": [{"units": 4, "activation": "tanh"}], "init": "xavier"},
            "optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 5, "batch_size": 4, "seed": 1}
    points = [(0.0002, "relu"), (0.003, "tanh"), (0.05, "relu"), (0.09, "sigmoid"), (0.01, "tanh")]
    with server.Session() as s, s.begin():
        space = {"optimizer.lr": {"log_uniform": [0.0001, 0.1]},
                 "model.hidden.0.activation": {"choice": ["relu", "tanh", "sigmoid"]}}
        sweep = repo.create_sweep(session=s, name="random xor", method="random", base_spec=base,
                                  space={"space": space, "n": len(points), "seed": 0})
        for i, (lr, activation) in enumerate(points):
            spec = copy.deepcopy(base)
            spec["optimizer"]["lr"] = lr
            spec["model"]["hidden"][0]["activation"] = activation
            run = repo.create_run(session=s, spec=spec, name=f"random xor #{i + 1:03d}", seed=1, tags=[], notes="",
                                  epochs_total=5, sweep_id=sweep.id)
            if i < 4:
                repo.claim_run(session=s, run_id=run.id, worker="browser-test", lease_seconds=600)
                repo.finish_run(session=s, run_id=run.id, status="succeeded", summary={"final_train_loss": 0.1 * i})
    page.log_in(token)
    p = page.page
    p.goto(f"/sweeps/{sweep.id}")
    p.wait_for_function("() => document.querySelectorAll('#parcoords path.pc-line').length === 5")
    assert p.locator("#parcoords text.axis-title").all_text_contents() == [
        "optimizer.lr (log)", "model.hidden.0.activation", "train loss"]
    assert p.locator('#parcoords [data-axis="1"] text.tick').all_text_contents() == ["relu", "tanh", "sigmoid"]
    assert p.locator("#parcoords path.pc-line.pending").count() == 1  # queued: no value yet
    assert p.locator("#cancel-sweep").is_visible()
    p.screenshot(path=screenshots / "sweep-random.png", full_page=True)
    p.click("#cancel-sweep button")  # confirm() is dismissed by the test page: nothing is cancelled
    assert page.dialogs == ["Cancel this sweep's queued and running runs?"]
    with server.Session() as s:
        assert repo.list_runs(session=s, sweep=sweep.id, status="queued", limit=10)[0]


def test_the_sweep_filter_takes_a_sweeps_name_and_links_back_to_it(page: Page, server: Server, token: str) -> None:
    with server.Session() as s, s.begin():
        sweep = repo.create_sweep(session=s, name="filter by name", method="grid", base_spec=SPEC,
                                  space={"space": {"seed": [1, 2]}})
        for index in range(2):
            repo.create_run(session=s, spec=SPEC, name=f"filter by name #{index + 1:03d}", seed=index + 1, tags=[],
                            notes="", epochs_total=SPEC["epochs"], sweep_id=sweep.id, sweep_index=index)
    p = page.page
    p.set_viewport_size({"width": 1280, "height": 900})
    page.log_in(token)
    p.fill('input[name="sweep"]', "filter by name")
    p.click('button:has-text("Filter")')
    p.wait_for_url("**/runs?*sweep=filter*")
    assert p.locator("#runs-table tbody tr[data-run]").count() == 2
    p.click("text=back to the sweep")
    p.wait_for_url(f"**/sweeps/{sweep.id}")
    assert "filter by name" in p.locator("h1").inner_text()


def test_the_run_page_says_why_a_run_stopped(page: Page, server: Server, token: str) -> None:
    reason = "early stopping at epoch 20 of 30: val_loss did not improve on its best, 0.0812 at epoch 12, for 8 epochs"
    with server.Session() as s, s.begin():
        run = repo.create_run(session=s, spec=SPEC, name="stopped early", seed=1, tags=[], notes="", epochs_total=30)
        repo.claim_run(session=s, run_id=run.id, worker="browser-test", lease_seconds=600)
        repo.finish_run(session=s, run_id=run.id, status="succeeded", stop_reason=reason)
    p = page.page
    p.set_viewport_size({"width": 1280, "height": 900})
    page.log_in(token)
    p.goto(f"/runs/{run.id}")
    shown = p.locator('[data-field="stop_reason"]')
    assert shown.is_visible() and shown.inner_text() == f"Stopped: {reason}"


#: A learning rate as a log-uniform draw gives it: 16 significant digits.
LONG_LR = 0.0008120532108251925


def _wide_spec(name: str, lr: float = LONG_LR) -> dict[str, Any]:
    """``SPEC`` with two hidden layers and a learning rate of many digits."""
    spec = copy.deepcopy(SPEC) | {"name": name}
    spec["model"]["hidden"] = [{"units": 31, "activation": "sigmoid"}, {"units": 16, "activation": "relu"}]
    spec["optimizer"] = {"name": "adam", "lr": lr}
    return spec


def test_the_runs_table_fits_a_1280_px_window_with_short_numbers(laptop: Page, server: Server, token: str,
                                                                  screenshots: Path) -> None:
    """Long names, two hidden layers, a learning rate of 16 digits, a running run's two buttons: every column shows."""
    with server.Session() as s, s.begin():
        for i, status in enumerate(("running", "succeeded")):
            name = f"a sweep with a rather long name for moons #{i + 1:03d} lr={LONG_LR * (i + 1)} units=31"
            run = repo.create_run(session=s, spec=_wide_spec(name, LONG_LR * (i + 1)), name=name, seed=1,
                                  tags=["wide", "another-tag"], notes="", epochs_total=150)
            repo.claim_run(session=s, run_id=run.id, worker="browser-test", lease_seconds=600)
            repo.write_epochs(session=s, run_id=run.id, rows=[_epoch(e) for e in range(1, 6)])
            if status == "succeeded":
                repo.finish_run(session=s, run_id=run.id, status=status,
                                summary={"final_train_loss": 0.012345678, "final_val_loss": 0.023456789,
                                         "final_val_accuracy": 0.987654, "best_val_loss": 0.0123456,
                                         "best_val_accuracy": 0.99})
    laptop.log_in(token)
    p = laptop.page
    p.goto("/runs?tag=wide")
    p.screenshot(path=screenshots / "runs-1280.png", full_page=True)
    table = p.locator("#runs-table")
    assert table.evaluate("el => el.parentElement.scrollWidth <= el.parentElement.clientWidth")
    assert p.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    headers = table.locator("thead th")
    for i in range(headers.count()):
        box = headers.nth(i).bounding_box()
        assert box is not None and box["x"] + box["width"] <= 1280, (headers.nth(i).text_content(), box)
    for button in table.locator("button").all():
        box = button.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 1280
    lr = table.locator('tbody tr [data-param="lr"] .value')
    assert lr.all_text_contents() == ["0.001624", "0.0008121"]  # newest first
    assert [lr.nth(i).get_attribute("title") for i in range(2)] == [str(LONG_LR * 2), str(LONG_LR)]
    models = table.locator('tbody tr [data-param="model"] .value').all_text_contents()
    assert models == ["31 sigmoid · 16 relu"] * 2
    p.wait_for_load_state("networkidle")  # leaving while plotly.min.js is prefetched would leave werkzeug's file open


def test_a_sweeps_long_run_names_wrap_inside_their_cells(laptop: Page, server: Server, token: str,
                                                        screenshots: Path) -> None:
    """As rendered, and as the page redraws the table while the sweep runs: no name runs into the next column."""
    base = _wide_spec("long")
    lrs = [LONG_LR, LONG_LR * 3, LONG_LR * 7]
    with server.Session() as s, s.begin():
        sweep = repo.create_sweep(session=s, name="a sweep with a rather long name for moons", method="random",
                                  base_spec=base, space={"space": {"optimizer.lr": {"log_uniform": [1e-4, 0.1]}},
                                                         "n": 3, "seed": 0})
        for i, lr in enumerate(lrs):
            name = f"a sweep with a rather long name for moons #{i + 1:03d} lr={lr} units=31 activation=sigmoid"
            run = repo.create_run(session=s, spec=_wide_spec(name, lr), name=name, seed=1, tags=[], notes="",
                                  epochs_total=150, sweep_id=sweep.id)
            repo.claim_run(session=s, run_id=run.id, worker="browser-test", lease_seconds=600)
            repo.write_epochs(session=s, run_id=run.id, rows=[_epoch(e) for e in range(1, 6)])
    laptop.log_in(token)
    p = laptop.page
    p.goto(f"/sweeps/{sweep.id}")

    def check() -> None:
        rows = p.locator("#sweep-runs tbody tr[data-run]")
        assert rows.count() == 3
        for i in range(3):
            row = rows.nth(i)
            name = row.locator("td.name a").bounding_box()
            status = row.locator("td").nth(2).bounding_box()
            assert name is not None and status is not None
            assert name["x"] + name["width"] <= status["x"], (name, status)
        lr = p.locator("#sweep-runs tbody td.param")
        assert lr.all_text_contents() == ["0.0008121", "0.002436", "0.005684"]  # sweep order: no value yet
        assert [lr.nth(i).get_attribute("title") for i in range(3)] == [str(value) for value in lrs]

    check()
    p.evaluate("document.querySelector('#sweep-runs tbody tr').dataset.old = '1'")
    p.wait_for_function("() => !document.querySelector('#sweep-runs tbody tr').dataset.old", timeout=3000)
    check()  # as the page's script draws it
    p.screenshot(path=screenshots / "sweep-1280.png", full_page=True)


#: The colour of class k in the decision boundary: its region's (the colour scale at z = k), its points', its
#: legend's; null where a region would blend two colours.
CLASS_COLORS = """(k) => {
  const chart = document.getElementById('chart-boundary');
  const css = (color) => { const el = document.createElement('i'); el.style.color = color; document.body.append(el);
                           const value = getComputedStyle(el).color; el.remove(); return value; };
  const regions = chart.data[0], scale = regions.colorscale;
  const t = (k - regions.zmin) / (regions.zmax - regions.zmin);
  const i = scale.findIndex((entry, j) => j + 1 < scale.length && entry[0] <= t && t <= scale[j + 1][0]);
  const exact = scale.find((entry) => Math.abs(entry[0] - t) < 1e-9);
  const region = exact ? exact[1] : (scale[i][1] === scale[i + 1][1] ? scale[i][1] : null);
  const points = chart.data.find((trace) => trace.name === 'class ' + k).marker.color;
  const legend = document.querySelector('#boundary-legend [data-class="' + k + '"] .region');
  return [region && css(region), css(points), legend && getComputedStyle(legend).backgroundColor];
}"""


def test_the_run_page_colours_regions_as_their_points_and_gives_gradients_their_axis(
        laptop: Page, server: Server, token: str, screenshots: Path) -> None:
    """Moons (2 classes: a probability) and spirals (3: predicted labels), one hidden layer of 16."""
    moons = _trained_run(server, "moons colours", 0.2, tags=["colours"])
    spirals = _trained_run(server, "spirals colours", 0.2, tags=["colours"],
                           changes={"dataset": {"name": "spirals", "test_fraction": 0.25}, "epochs": 20})
    laptop.log_in(token)
    p = laptop.page
    for run_id, classes in ((moons, 2), (spirals, 3)):
        p.goto(f"/runs/{run_id}")
        p.wait_for_function(f"() => document.querySelectorAll('#boundary-legend [data-class]').length === {classes}")
        colors = [p.evaluate(CLASS_COLORS, k) for k in range(classes)]
        for region, points, legend in colors:
            assert region is not None and region == points == legend, colors
        assert len({points for _, points, _ in colors}) == classes

    p.goto(f"/runs/{moons}")  # gradient norms (below 1) on their own axis, weight norms (about 10) on theirs
    p.wait_for_function("() => document.querySelectorAll('#chart-norms .scatterlayer .trace').length === 4")
    axes = p.evaluate("""() => document.getElementById('chart-norms').data.map(t => [t.name, t.yaxis])""")
    assert axes == [["|W1|", "y"], ["|W2|", "y"], ["|dW1| (right axis)", "y2"], ["|dW2| (right axis)", "y2"]]
    layout = p.evaluate("""() => { const l = document.getElementById('chart-norms')._fullLayout;
                                   return [l.yaxis.range, l.yaxis2.range, l.yaxis2.overlaying, l.yaxis2.side]; }""")
    weights, grads, overlaying, side = layout
    grad_max = p.evaluate("() => Math.max(...document.getElementById('chart-norms').data[2].y)")
    assert overlaying == "y" and side == "right"
    assert grads[1] < 2 * grad_max < weights[1] / 5  # each axis spans its own curves
    p.check("#log-y")
    p.wait_for_function("() => document.getElementById('chart-norms')._fullLayout.yaxis2.type === 'log'")

    # W1 is 2 inputs x 16 units, W2 16 x 1: neither is stretched into bars
    for k, (rows, cols) in enumerate(((2, 16), (16, 1))):
        box = p.locator(f"#heatmap-{k} .hm image").bounding_box()
        assert box is not None
        aspect = (box["height"] / rows) / (box["width"] / cols)
        assert 0.5 - 0.01 <= aspect <= 2 + 0.01, (k, box)
    p.screenshot(path=screenshots / "run-1280.png", full_page=True)


def test_the_project_picker_keeps_the_project_in_the_address(laptop: Page, server: Server, token: str,
                                                              screenshots: Path) -> None:
    """At 1280 px: picking a project on the runs page shows its runs alone, the address keeps it (reload, filter,
    the header's links to the sweeps page and back), and "all projects" shows every run again."""
    with server.Session() as s, s.begin():
        for name, project in (("picked one", "vision"), ("picked two", "vision"), ("not picked", "audio")):
            repo.create_run(session=s, spec=SPEC | {"project": project}, name=name, seed=1, tags=["picker"],
                            notes="", epochs_total=150, project=project)
        sweep = repo.create_sweep(session=s, name="picked sweep", method="grid", base_spec=SPEC,
                                  space={"space": {"seed": [1]}}, project="vision")
        repo.create_run(session=s, spec=SPEC | {"project": "vision"}, name="picked sweep #001 seed=1", seed=1,
                        tags=[], notes="", epochs_total=150, project="vision", sweep_id=sweep.id, sweep_index=0)
        repo.create_sweep(session=s, name="other sweep", method="grid", base_spec=SPEC,
                          space={"space": {"seed": [1]}}, project="audio")
    laptop.log_in(token)
    p = laptop.page
    rows = p.locator("#runs-table tbody tr[data-run] td.name")
    picker = p.locator("select[data-project-picker]")
    assert picker.locator("option").all_text_contents()[:1] == ["all projects"]
    assert "vision (3 runs)" in [text.strip() for text in picker.locator("option").all_text_contents()]
    everything = rows.count()
    picker.select_option("vision")
    p.wait_for_url("**/runs?*project=vision*")
    assert sorted(rows.all_text_contents()) == ["picked one", "picked sweep #001 seed=1", "picked two"]
    assert picker.input_value() == "vision" and "in vision" in p.locator("h1").inner_text()
    box = picker.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 1280
    assert p.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    p.screenshot(path=screenshots / "runs-project-1280.png", full_page=True)
    p.reload()
    assert picker.input_value() == "vision" and rows.count() == 3
    p.fill('input[name="q"]', "two")
    p.click('button:has-text("Filter")')
    p.wait_for_url("**/runs?*q=two*")
    assert "project=vision" in p.url and rows.all_text_contents() == ["picked two"]

    p.click('header nav a:has-text("Sweeps")')
    p.wait_for_url("**/sweeps?project=vision")
    assert picker.input_value() == "vision"
    assert p.locator("#sweeps-table tbody tr[data-sweep] td.name").all_text_contents() == ["picked sweep"]
    assert p.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    picker.select_option("audio")
    p.wait_for_url("**/sweeps?project=audio")
    assert p.locator("#sweeps-table tbody tr[data-sweep] td.name").all_text_contents() == ["other sweep"]
    p.click('header nav a:has-text("Runs")')
    p.wait_for_url("**/runs?project=audio")
    assert rows.all_text_contents() == ["not picked"]
    picker.select_option("")
    p.wait_for_url(lambda url: url.endswith("/runs?sort=-created_at") or url.endswith("/runs"))
    assert "project" not in p.url and rows.count() == everything
    p.wait_for_load_state("networkidle")  # leaving while plotly.min.js is prefetched would leave werkzeug's file open


def _seeded_run(server: Server, lr: float, seed: int, losses: np.ndarray, final: float,
                sweep_id: str | None = None) -> str:
    """A succeeded run of ``SPEC`` at ``lr`` and ``seed`` (in that sweep) whose train loss at epoch k+1 is
    ``losses[k]``."""
    spec = copy.deepcopy(SPEC) | {"name": f"lr {lr} seed {seed}", "seed": seed, "epochs": len(losses),
                                  "tags": ["seeds"]}
    spec["optimizer"]["lr"] = lr
    rows = [{"epoch": k + 1, "train_loss": float(loss), "val_loss": float(loss) + 0.1} for k, loss in enumerate(losses)]
    with server.Session() as s, s.begin():
        run = repo.create_run(session=s, spec=spec, name=spec["name"], seed=seed, tags=["seeds"], notes="",
                              epochs_total=len(losses), sweep_id=sweep_id)
        repo.claim_run(session=s, run_id=run.id, worker="browser-test", lease_seconds=600)
        repo.write_epochs(session=s, run_id=run.id, rows=rows)
        repo.finish_run(session=s, run_id=run.id, status="succeeded",
                        summary={"final_train_loss": final, "final_val_loss": float(losses[-1]) + 0.1})
        return run.id


def test_compare_groups_runs_over_seeds_with_a_band(laptop: Page, server: Server, token: str,
                                                     screenshots: Path) -> None:
    """Three seeds at lr 0.5 and two at lr 0.1: the switch draws two mean curves with their bands (min–max, then
    mean ± std, checked against numpy), the legend gives each group's size and the table mean ± std."""
    rng = np.random.default_rng(11)
    epochs = 40
    made: dict[float, list[tuple[str, np.ndarray, float]]] = {0.5: [], 0.1: []}
    for lr, seeds in ((0.5, (1, 2, 3)), (0.1, (1, 2))):
        for seed in seeds:
            losses = 1.0 / np.arange(1, epochs + 1) + rng.uniform(0, 0.2, epochs) + (0.3 if lr == 0.1 else 0.0)
            final = float(rng.uniform(0.05, 0.5))
            made[lr].append((_seeded_run(server, lr, seed, losses, final), losses, final))
    ids = [run_id for lr in (0.5, 0.1) for run_id, _, _ in made[lr]]
    laptop.log_in(token)
    p = laptop.page
    p.goto(f"/compare?runs={','.join(ids)}")
    p.wait_for_function("() => document.querySelectorAll('#chart-train_loss .scatterlayer .trace').length === 5")
    assert p.locator("#group-table-box").is_hidden() and p.locator("#band").is_disabled()

    p.check("#group-seeds")
    p.wait_for_function("() => document.querySelectorAll('#chart-train_loss .scatterlayer .trace').length === 6")
    assert "group=seed" in p.url
    data = p.evaluate("() => document.getElementById('chart-train_loss').data.map(t => [t.name, t.fill || null,"
                      " t.showlegend !== false, t.x, t.y])")
    legend = p.locator("#chart-train_loss .legendtext").all_text_contents()
    assert legend == ["optimizer.lr=0.5 (n=3)", "optimizer.lr=0.1 (n=2)"]
    assert p.locator("#chart-train_loss .scatterlayer .trace .fills path").count() == 2  # the bands, drawn
    for g, lr in enumerate((0.5, 0.1)):
        losses = np.array([run[1] for run in made[lr]])
        lower, upper, mean = data[3 * g: 3 * g + 3]
        assert upper[1] == "tonexty" and not lower[2] and not upper[2] and mean[2]
        assert mean[0] == legend[g] and mean[3] == list(range(1, epochs + 1))
        assert np.allclose(mean[4], losses.mean(axis=0), rtol=1e-6)
        assert np.allclose(lower[4], losses.min(axis=0), rtol=1e-6)
        assert np.allclose(upper[4], losses.max(axis=0), rtol=1e-6)

    p.select_option("#band", "std")
    p.wait_for_function("() => new URL(location.href).searchParams.get('band') === 'std'")
    data = p.evaluate("() => document.getElementById('chart-train_loss').data.map(t => t.y)")
    for g, lr in enumerate((0.5, 0.1)):
        losses = np.array([run[1] for run in made[lr]])
        mean, std = losses.mean(axis=0), losses.std(axis=0, ddof=1)
        assert np.allclose(data[3 * g], mean - std, rtol=1e-5) and np.allclose(data[3 * g + 1], mean + std, rtol=1e-5)

    table = p.locator("#group-table")
    assert table.is_visible() and p.locator("#metrics-table").is_hidden()
    rows = table.locator("tbody tr")
    assert rows.count() == 2
    for g, lr in enumerate((0.5, 0.1)):
        finals = np.array([run[2] for run in made[lr]])
        row = rows.nth(g)
        assert row.locator("td.name").text_content() == legend[g]
        assert row.locator('[data-field="size"]').text_content() == str(len(finals))
        shown = row.locator('[data-field="final_train_loss"]').text_content()
        mean_text, std_text = shown.split(" ± ")
        assert float(mean_text) == pytest.approx(finals.mean(), rel=1e-3)
        assert float(std_text) == pytest.approx(finals.std(ddof=1), rel=1e-3)
    assert p.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    p.screenshot(path=screenshots / "compare-groups-1280.png", full_page=True)

    p.reload()  # the address keeps the grouping and the band
    p.wait_for_function("() => document.querySelectorAll('#chart-train_loss .scatterlayer .trace').length === 6")
    assert p.locator("#group-seeds").is_checked() and p.locator("#band").input_value() == "std"
    p.uncheck("#group-seeds")
    p.wait_for_function("() => document.querySelectorAll('#chart-train_loss .scatterlayer .trace').length === 5")
    assert p.locator("#metrics-table").is_visible() and "group=" not in p.url


def test_a_sweep_over_seeds_opens_its_runs_grouped(laptop: Page, server: Server, token: str) -> None:
    with server.Session() as s, s.begin():
        sweep = repo.create_sweep(session=s, name="lr by seed", method="grid", base_spec=SPEC,
                                  space={"space": {"optimizer.lr": [0.5, 0.1], "seed": [1, 2, 3]}, "n": None,
                                         "seed": 0})
    losses = 1.0 / np.arange(1, 11)
    for lr in (0.5, 0.1):
        for seed in (1, 2, 3):
            _seeded_run(server, lr, seed, losses * (1 + seed / 10), 0.1 * seed, sweep_id=sweep.id)
    laptop.log_in(token)
    p = laptop.page
    p.goto(f"/sweeps/{sweep.id}")
    p.click("#compare-seeds")
    p.wait_for_url("**/compare?*group=seed*")
    p.wait_for_function("() => document.querySelectorAll('#chart-train_loss .scatterlayer .trace').length === 6")
    legend = sorted(p.locator("#chart-train_loss .legendtext").all_text_contents())
    assert legend == ["optimizer.lr=0.1 (n=3)", "optimizer.lr=0.5 (n=3)"]
    assert p.locator("#group-seeds").is_checked() and p.locator("#group-table tbody tr").count() == 2



def test_a_tracked_run_shows_its_custom_metrics_and_weights_beside_a_trained_run(laptop: Page, server: Server,
                                                                                 token: str) -> None:
    """A run logged by a client: a chart per custom metric and the weights heatmap on its page, and its custom
    metric charted beside a trained run's curves on the compare page."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(buffer, W1=rng.normal(size=(2, 8)), b1=np.zeros(8), W2=rng.normal(size=(8, 1)), b2=np.zeros(1))
    with server.Session() as s, s.begin():
        tracked = repo.create_tracked_run(session=s, name="by hand", params={"lr": 0.1, "hidden": [8]}, tags=[],
                                          notes="").id
        repo.write_tracked_epochs(session=s, run_id=tracked, rows=[
            {"epoch": e, "train_loss": 1 / e, "bleu": float(e), "val/f1": e / 20} for e in range(1, 21)])
        repo.write_weights_many(session=s, run_id=tracked, snapshots=[(20, buffer.getvalue())])
        repo.finish_run(session=s, run_id=tracked, status="succeeded", stop_reason="finished by the client")
        trained = repo.create_run(session=s, spec=SPEC, name="trained", seed=1, tags=[], notes="", epochs_total=5).id
        repo.write_epochs(session=s, run_id=trained, rows=[{"epoch": e, "train_loss": 0.5 / e} for e in range(1, 6)])
    laptop.log_in(token)
    p = laptop.page
    p.goto(f"/runs/{tracked}")
    p.wait_for_function("() => document.querySelectorAll('#custom-charts .chart .scatterlayer .trace').length === 2")
    assert p.evaluate("() => [...document.querySelectorAll('#custom-charts .chart')].map(d => d.dataset.metric)"
                      ) == ["bleu", "val/f1"]
    p.wait_for_selector("#heatmap-0 .hm image")
    p.goto(f"/compare?runs={tracked},{trained}")
    p.wait_for_function("() => (document.getElementById('chart-bleu') || {}).data !== undefined")
    assert p.evaluate("() => document.getElementById('chart-bleu').data[0].y.length") == 20
    assert laptop.errors == []
