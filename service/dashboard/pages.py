"""The dashboard's HTML pages: login, runs table, run, compare, sweeps; the forms that cancel and delete runs.

Pages need a session with scope ``read`` (else they redirect to ``/login``);
the forms need ``write`` and the session's CSRF value.  Pages carry no data
for the charts: their scripts fetch it from :mod:`trainyard.service.dashboard.data`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from trainyard.service import auth, operations
from trainyard.service.auth import requires
from trainyard.service.comparison import MAX_RUNS, compare_params
from trainyard.service.context import services, transaction
from trainyard.service.dashboard import sweeps
from trainyard.service.dashboard.views import (
    METRIC_COLUMNS,
    duration_seconds,
    format_duration,
    format_number,
    key_params,
)
from trainyard.service.errors import ApiError
from trainyard.service.groups import GROUPINGS
from trainyard.service.storage import repo
from trainyard.service.storage.models import RUN_STATUSES, SUMMARY_FIELDS, Run, Sweep
from trainyard.service.sweeps import METRICS

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/ui/static",
)

PAGE_SIZE = 50
#: Most projects the project picker lists (by name; the one shown is always among them).
PICKER_PROJECTS = 200
#: Sweeps a page of the sweeps list shows (their runs are counted in the database, never read).
SWEEPS_PAGE_SIZE = 50
#: The bands the compare page draws around a group's mean curve: the first is the default.
BANDS = {"minmax": "min–max", "std": "mean ± std"}
#: Runs the sweep page's "compare the top k" link starts with.
TOP_K = 5
#: Which 2-D datasets get a decision boundary.
BOUNDARY_DATASETS = ("or", "and", "xor", "moons", "circles", "spirals")


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    return {
        "csrf_token": auth.csrf_token,
        "auth_on": services().settings.auth,
        "scope": g.get("scope"),
        "allows": lambda needed: auth.allows(g.get("scope"), needed),
    }


@bp.app_template_filter("num")
def _num(value: Any) -> str:
    return format_number(value)


@bp.app_template_filter("short")
def _short(value: Any) -> str:
    return sweeps.short_value(value)


@bp.errorhandler(HTTPException)
def _http_error_page(exc: HTTPException) -> tuple[str, int]:
    return _error_page(exc.code or 500, exc.description or exc.name)


@bp.errorhandler(ApiError)
def _api_error_page(exc: ApiError) -> Response | tuple[str, int]:
    """What a view refused, as a page; with no session, a page to read sends the browser to the login form."""
    if exc.status == 401 and request.method in ("GET", "HEAD"):
        return redirect(url_for(".login", next=request.full_path.rstrip("?")))
    return _error_page(exc.status, exc.message)


def _error_page(status: int, message: str) -> tuple[str, int]:
    return render_template("dashboard/error.html", status=status, title=HTTP_STATUS_CODES.get(status, ""),
                           message=message), status


# --------------------------------------------------------------------------- login


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """The login form (POST: the token, with the session's CSRF value).

    The one-click link is ``/login#token=...``: the fragment never reaches the
    server, and the page's ``login.js`` posts it through this form.  A token
    in the query string (``?token=``) is refused with a 400 saying why: the
    request line, query and all, is already in the access log (and a proxy's)
    by the time it arrives here, so accepting it would make such links work
    and spread.  Nobody is logged in by it, valid or not.
    """
    target = auth.safe_next(request.values.get("next"), url_for(".runs"))
    if not services().settings.auth:
        return redirect(target)
    if "token" in request.args:
        return _login_page(target, status=400, refused=True)
    if request.method == "GET":
        return _login_page(target)
    auth.check_csrf()
    token = request.form.get("token")
    if token is None:
        return _login_page(target)
    if auth.log_in(token):
        return redirect(target, 303)
    return _login_page(target, status=401, failed=True)


def _login_page(target: str, *, status: int = 200, failed: bool = False, refused: bool = False) -> Response:
    """The login page; sent with ``Referrer-Policy: no-referrer``, so an address it was opened with (a refused
    ``?token=`` one) does not go on to the server again in the ``Referer`` of its stylesheet and scripts."""
    response = make_response(
        render_template("dashboard/login.html", next=target, failed=failed, refused=refused), status
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.post("/logout")
def logout() -> Response:
    auth.check_csrf()
    auth.log_out()
    return redirect(url_for(".login"), 303)


# --------------------------------------------------------------------------- runs


@bp.get("/")
def index() -> Response:
    return redirect(url_for(".runs"))


def _project() -> str | None:
    """``?project=``: the project a page shows (None: every project; a NUL character is 400)."""
    project = request.args.get("project") or None
    if project is not None and "\x00" in project:
        abort(400, "the project holds a NUL character")
    return project


def _picker(s: Session, current: str | None) -> list[dict[str, Any]]:
    """The project picker's choices: the first projects by name with their runs, and the one shown if it is not
    among them (a project past the first page, or one with no runs left)."""
    projects, _ = repo.list_projects(session=s, limit=PICKER_PROJECTS)
    choices = [{"name": project.name, "runs": project.runs} for project in projects]
    if current is not None and current not in {choice["name"] for choice in choices}:
        choices.append({"name": current, "runs": None})
    return choices


def _filters() -> dict[str, Any]:
    """The runs table's filters from the query string (empty ones left out; a bad status is 400)."""
    status = request.args.get("status") or None
    if status is not None and status not in RUN_STATUSES:
        abort(400, f"status must be one of {', '.join(RUN_STATUSES)}")
    if any("\x00" in value for value in request.args.values()):
        abort(400, "a filter holds a NUL character")
    values = {
        "project": _project(),
        "status": status,
        "tag": request.args.get("tag") or None,
        "sweep": request.args.get("sweep") or None,
        "q": request.args.get("q") or None,
    }
    return {name: value for name, value in values.items() if value is not None}


@bp.get("/runs")
@requires("read", via="session")
def runs() -> str:
    filters = _filters()
    sort = request.args.get("sort") or "-created_at"
    if sort.removeprefix("-") not in repo.SORT_FIELDS:
        abort(400, f"cannot sort by {sort!r}")
    cursor = request.args.get("cursor") or None
    with transaction(read_only=True) as s:
        try:
            shown, next_cursor = repo.list_runs(session=s, sort=sort, limit=PAGE_SIZE, cursor=cursor, **filters)
        except ValueError as exc:
            abort(400, str(exc))
        swept = repo.find_sweeps(session=s, id_or_name=filters["sweep"], limit=2) if "sweep" in filters else []
        projects = _picker(s, filters.get("project"))
    rows = [
        {
            "run": run,
            "params": key_params(run.spec),
            "duration": format_duration(duration_seconds(run)),
        }
        for run in shown
    ]
    query = {"status": filters.get("status"), "tag": filters.get("tag"), "sweep": filters.get("sweep"),
             "q": filters.get("q")}
    query = {name: value for name, value in query.items() if value}
    return render_template(
        "dashboard/runs.html",
        rows=rows,
        project=filters.get("project"),
        projects=projects,
        sort=sort,
        query=query,
        next_cursor=next_cursor,
        paged=cursor is not None,
        statuses=RUN_STATUSES,
        metric_columns=METRIC_COLUMNS,
        swept=swept,
    )


@bp.get("/runs/<run_id>")
@requires("read", via="session")
def run(run_id: str) -> str:
    with transaction(read_only=True) as s:
        shown = operations.get_run(s, run_id)
    dataset = shown.spec.get("dataset")
    dataset = dataset.get("name") if shown.kind == "trained" and isinstance(dataset, dict) else None
    return render_template(
        "dashboard/run.html",
        run=shown,
        spec_text=json.dumps(shown.spec, indent=2, ensure_ascii=False),
        params=key_params(shown.spec),
        duration=format_duration(duration_seconds(shown)),
        boundary=dataset in BOUNDARY_DATASETS,
        summary_fields=SUMMARY_FIELDS,
    )


def _back() -> str:
    return auth.safe_next(request.form.get("next"), url_for(".runs"))


@bp.post("/runs/<run_id>/cancel")
@requires("write", via="session")
def cancel(run_id: str) -> Response:
    with transaction() as s:
        try:
            operations.cancel_run(s, run_id)
        except operations.AlreadyFinished:
            pass  # it ended while the page was open: nothing left to cancel
    return redirect(_back(), 303)


@bp.post("/runs/<run_id>/delete")
@requires("write", via="session")
def delete(run_id: str) -> Response:
    with transaction() as s:
        operations.delete_run(s, run_id)
    target = _back()
    return redirect(url_for(".runs") if run_id in target else target, 303)


# --------------------------------------------------------------------------- compare


def _compare_ids() -> list[str]:
    """``runs=a,b,c`` (or ``run=a&run=b`` from the runs table's form); 400 when empty or too many."""
    ids = [part for value in request.args.getlist("runs") for part in value.split(",") if part]
    ids += request.args.getlist("run")
    ids = list(dict.fromkeys(ids))
    if not ids:
        abort(400, "choose runs to compare: /compare?runs=<id>,<id>")
    if len(ids) > MAX_RUNS:
        abort(400, f"at most {MAX_RUNS} runs can be compared")
    return ids


@bp.get("/compare")
@requires("read", via="session")
def compare() -> Any:
    ids = _compare_ids()
    if "run" in request.args:  # the table's form: to the shareable address
        return redirect(url_for(".compare", runs=",".join(ids)))
    group = request.args.get("group") or None
    if group is not None and group not in GROUPINGS:
        abort(400, f"group must be {' or '.join(GROUPINGS)}")
    band = request.args.get("band") or next(iter(BANDS))
    if band not in BANDS:
        abort(400, f"band must be {' or '.join(BANDS)}")
    with transaction(read_only=True) as s:
        shown = operations.get_runs(s, ids)
    params = compare_params([run.spec for run in shown])
    best = _best_marks(shown)
    return render_template(
        "dashboard/compare.html",
        runs=shown,
        params=params,
        best=best,
        summary_fields=SUMMARY_FIELDS,
        durations=[format_duration(duration_seconds(run)) for run in shown],
        group=group,
        band=band,
        bands=BANDS,
        curves_url=url_for("dashboard_data.compare", runs=",".join(ids), max_points=compare_points(len(ids)),
                           group=group),
    )


def compare_points(runs: int) -> int:
    """Points per curve on the compare page: 1000, fewer for many runs (25,000 per chart, at least 300).

    With min and max kept per bucket, 500 points still show every spike of a
    5,000-epoch run on a chart 500 pixels wide, and 50 runs draw in about
    half the time 1000 points take.
    """
    return max(300, min(1000, 25_000 // max(runs, 1)))


def _best_marks(shown: list[Run]) -> dict[str, str | None]:
    """For each summary metric, the id of the run with the best value (lowest loss, highest accuracy)."""
    marks: dict[str, str | None] = {}
    for field in SUMMARY_FIELDS:
        if field == "best_epoch":
            continue
        values = [(getattr(run, field), run.id) for run in shown if getattr(run, field) is not None]
        if not values:
            marks[field] = None
            continue
        pick = max if "accuracy" in field else min
        marks[field] = pick(values, key=lambda item: item[0])[1]
    return marks


# --------------------------------------------------------------------------- plotly


@bp.get("/ui/vendor/plotly.min.js")
def plotly_js() -> Response:
    """``plotly.min.js`` from the installed ``plotly`` package (never a CDN), read once per process: a browser
    that leaves the page mid-download (the runs page prefetches it) leaves no open file behind."""
    content, etag = _plotly_js(current_app.extensions["trainyard.dashboard"]["plotly_js"])
    response = Response(content, mimetype="text/javascript")
    response.set_etag(etag)
    response.cache_control.public, response.cache_control.max_age = True, 86400
    return response.make_conditional(request)


@functools.lru_cache(maxsize=1)
def _plotly_js(path: Path) -> tuple[bytes, str]:
    content = path.read_bytes()
    return content, hashlib.sha256(content).hexdigest()[:32]


# --------------------------------------------------------------------------- sweeps


def _sweep_metric(sweep: Sweep) -> str:
    """``?metric=`` (a key of ``trainyard.service.sweeps.METRICS``; 400 otherwise), or the sweep's default."""
    metric = request.args.get("metric") or sweeps.default_metric(sweep)
    if metric not in METRICS:
        abort(400, f"metric must be one of {', '.join(METRICS)}")
    return metric


@bp.get("/sweeps")
@requires("read", via="session")
def sweep_list() -> str:
    cursor = request.args.get("cursor") or None
    project = _project()
    with transaction(read_only=True) as s:
        try:
            shown, next_cursor = repo.list_sweeps(session=s, project=project, limit=SWEEPS_PAGE_SIZE, cursor=cursor)
        except ValueError as exc:
            abort(400, str(exc))
        summaries = operations.summarize_sweeps(s, shown)
        projects = _picker(s, project)
    rows = [{"sweep": sweep, "summary": summaries[sweep.id]} for sweep in shown]
    return render_template("dashboard/sweeps.html", rows=rows, statuses=RUN_STATUSES, next_cursor=next_cursor,
                           paged=cursor is not None, project=project, projects=projects)


@bp.get("/sweeps/<sweep_id>")
@requires("read", via="session")
def sweep(sweep_id: str) -> str:
    with transaction(read_only=True) as s:
        shown = operations.get_sweep(s, sweep_id)
        metric = _sweep_metric(shown)
        view = sweeps.sweep_view(shown, operations.sweep_runs(s, sweep_id), metric)
        space = sweeps.space_text(shown)
        spec_text = json.dumps(shown.base_spec, indent=2, ensure_ascii=False)
        seed = (shown.space or {}).get("seed") if shown.method == "random" else None
    return render_template(
        "dashboard/sweep.html",
        sweep=shown,
        view=view,
        metric=metric,
        metrics=list(METRICS),
        space=space,
        seed=seed,
        spec_text=spec_text,
        top_k=min(TOP_K, MAX_RUNS),
        max_k=max(1, min(MAX_RUNS, len(view["runs"]))),
        top_ids=[row["id"] for row in view["runs"][:TOP_K]],
        seed_ids=[row["id"] for row in view["runs"][:MAX_RUNS]] if "seed" in view["paths"] else None,
        max_runs=MAX_RUNS,
        statuses=RUN_STATUSES,
        data_url=url_for("dashboard_data.sweep", sweep_id=sweep_id, metric=metric),
    )


@bp.post("/sweeps/<sweep_id>/cancel")
@requires("write", via="session")
def cancel_sweep(sweep_id: str) -> Response:
    """Cancel the sweep's queued runs and flag its running ones (as ``POST /api/sweeps/<id>/cancel``)."""
    with transaction() as s:
        operations.cancel_sweep(s, sweep_id)
    return redirect(auth.safe_next(request.form.get("next"), url_for(".sweep", sweep_id=sweep_id)), 303)
