"""The ``trainyard`` command.

Run the service:

    trainyard up [--host H] [--port P] [--data-dir DIR] [--workers N] [--demo]   # everything on this machine
    trainyard api [--host H] [--port P] [--workers N] [--threads T]             # the API alone, under gunicorn
    trainyard worker [--concurrency N] [--loglevel L]                           # one Celery worker

Administer the configured database (``TRAINYARD_DATABASE_URL``, see ``trainyard.service.config``):

    trainyard db upgrade                      # bring the schema to the code's revision
    trainyard db current                      # the revision the database is at
    trainyard token create --scope write [--name N]
    trainyard token list
    trainyard token revoke TOKEN_ID

Talk to a running service over HTTP (``--url``/``TRAINYARD_URL``, default
the address ``trainyard up`` writes in the data folder, else
http://127.0.0.1:8000; ``--token``/``TRAINYARD_TOKEN``, default the token
file ``trainyard up`` writes there):

    trainyard submit SPEC.json [--watch] [--project P]
    trainyard runs [--project P] [--status S] [--tag T] [--sweep NAME|ID] [--name TEXT] [--sort KEY] [--limit N]
    trainyard show ID [--json]
    trainyard cancel ID
    trainyard compare ID ID...
    trainyard export ID --format csv|json|npz [-o FILE]
    trainyard sweep SWEEP.json [--watch] [--metric M] [--project P]
    trainyard sweeps [--project P] [--limit N]
    trainyard projects

``--project`` (or ``TRAINYARD_PROJECT``) files what ``submit`` and ``sweep``
send under a project, where the file names none, and keeps ``runs`` and
``sweeps`` to that project's.

Every database command but ``db upgrade`` refuses a database whose schema
is behind, naming the command that fixes it.  Training offline needs no
service: ``python -m trainyard.trainer SPEC.json``.
"""

from __future__ import annotations

import functools
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import click
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from trainyard import local, worker
from trainyard.client import DEFAULT_URL, ApiError, Client, ClientError
from trainyard.service import server
from trainyard.service.api.schemas import MAX_SWEEP_LIST
from trainyard.service.config import ConfigError, Settings
from trainyard.service.storage import migrate, repo
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.service.storage.models import RUN_STATUSES, SUMMARY_FIELDS, TOKEN_SCOPES
from trainyard.service.sweeps import METRICS as SWEEP_METRICS

#: What ``trainyard --help`` says first.
HELP = """Trainyard: train neural networks and track the experiments.

\b
Start with `trainyard up --demo` (the service on this machine, example runs
to compare). The commands that submit and list runs talk to it, or to a
deployed service (--url, TRAINYARD_URL)."""


@click.group(help=HELP)
@click.version_option(package_name="trainyard", message="trainyard %(version)s")
@click.pass_context
def main(ctx: click.Context) -> None:
    try:
        ctx.obj = Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def _engine(settings: Settings, *, check: bool = True) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    try:
        if check:
            try:
                migrate.check_schema(engine)
            except migrate.SchemaError as exc:
                raise click.ClickException(str(exc)) from exc
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _transaction(settings: Settings) -> Iterator[Session]:
    with _engine(settings) as engine, make_sessionmaker(engine)() as session, session.begin():
        yield session


# ----------------------------------------------------------------------------- db
@main.group(help="The database schema.")
def db() -> None:
    pass


@db.command(help="Apply every migration the database lacks (creates a SQLite file if needed).")
@click.pass_obj
def upgrade(settings: Settings) -> None:
    migrate.upgrade(settings.database_url)
    with _engine(settings, check=False) as engine:
        click.echo(f"database at revision {migrate.current_revision(engine)} (head {migrate.head_revision()})")


@db.command(help="Print the revision the database is at, and the code's.")
@click.pass_obj
def current(settings: Settings) -> None:
    with _engine(settings, check=False) as engine:
        click.echo(f"database: {migrate.current_revision(engine) or '(empty)'}; code: {migrate.head_revision()}")


# -------------------------------------------------------------------------- token
@main.group(help="API tokens: every /api call needs one unless TRAINYARD_AUTH=off.")
def token() -> None:
    pass


@token.command("create", help="Make a token; it is printed once and stored only as a hash.")
@click.option("--scope", type=click.Choice(TOKEN_SCOPES), required=True,
              help="read: look; write: also submit, change and cancel runs; admin: everything.")
@click.option("--name", default=None, help="A label to recognise the token by in `token list`.")
@click.pass_obj
def token_create(settings: Settings, scope: str, name: str | None) -> None:
    with _transaction(settings) as session:
        plaintext, row = repo.create_token(session=session, scope=scope, name=name)
        token_id = row.id
    click.echo(plaintext)
    click.echo(f"token {token_id} ({scope}) created; keep it now, it cannot be shown again", err=True)


@token.command("list", help="The tokens, without their secrets.")
@click.pass_obj
def token_list(settings: Settings) -> None:
    with _transaction(settings) as session:
        rows = [
            (t.id, t.name or "", t.scope, _when(t.created_at), _when(t.last_used_at),
             "revoked " + _when(t.revoked_at) if t.revoked_at else "active")
            for t in repo.list_tokens(session=session)
        ]
    _table(("id", "name", "scope", "created", "last used", "state"), rows)


@token.command("revoke", help="Revoke a token by its id (from `token list`).")
@click.argument("token_id")
@click.pass_obj
def token_revoke(settings: Settings, token_id: str) -> None:
    with _transaction(settings) as session:
        if not repo.revoke_token(session=session, token_id=token_id):
            raise click.ClickException(f"no token with id {token_id}")
    click.echo(f"token {token_id} revoked")


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], *, show_header: bool = True) -> None:
    """Print ``rows`` in columns as wide as their widest cell (the header's included, shown or not)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in (header, *rows) if show_header else rows:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


# ------------------------------------------------------------------ running the service
def _require_schema(settings: Settings) -> None:
    """Refuse a database whose schema is behind now, with the fix named, rather than in a server's log."""
    with _engine(settings):
        pass


@main.command(help="Run the API and a worker on this machine (SQLite and a broker in the data folder unless "
                   "TRAINYARD_DATABASE_URL/TRAINYARD_BROKER_URL name servers) until Ctrl-C.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API listens on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port of the API.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the database, broker and token file (default: TRAINYARD_DATA_DIR, from the "
                   "environment or .env, else ./trainyard-data).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Runs trained at the same time (worker processes).")
@click.option("--demo", is_flag=True, help="Submit example runs: OR, XOR, spirals, and digits with three optimizers.")
@click.pass_obj
def up(settings: Settings, host: str, port: int, data_dir: Path | None, workers: int, demo: bool) -> None:
    if data_dir is not None:
        try:
            settings = Settings.from_env(data_dir=data_dir)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
    sys.exit(local.up(settings, host=host, port=port, workers=workers, demo=demo))


@main.command(help="Serve the API alone under gunicorn (extra gunicorn options: GUNICORN_CMD_ARGS).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every one).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1), help="gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1), help="Threads per process.")
@click.option("--graceful-timeout", default=30, show_default=True, type=click.IntRange(0),
              help="Seconds requests in flight get to finish when the API stops.")
@click.pass_obj
def api(settings: Settings, host: str, port: int, workers: int, threads: int, graceful_timeout: int) -> None:
    _require_schema(settings)
    server.serve(host, port, workers=workers, threads=threads, graceful_timeout=graceful_timeout)


main.add_command(worker.command)


# ------------------------------------------------------------------ client commands
def _token(settings: Settings, token: str | None) -> str | None:
    """The token given, or the one ``trainyard up`` stored in the data folder."""
    return token or local.read_token(settings)


def _describe(exc: ClientError) -> str:
    """An error for the terminal: the message, then the fields at fault one per line."""
    if not isinstance(exc, ApiError):
        return str(exc)
    lines = [f"{exc.message} (HTTP {exc.status})"]
    lines += [f"  {field['field']}: {field['message']}" for field in exc.fields if field["message"] not in exc.message]
    if exc.status == 401:
        lines.append("  give a token with --token or TRAINYARD_TOKEN (see `trainyard token create`)")
    return "\n".join(lines)


def client_command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., None]], click.Command]:
    """A ``main`` subcommand that talks to the service: adds ``--url`` and ``--token``, passes a :class:`Client`
    as the first argument, and shows a :class:`ClientError` as a readable error (exit status 1)."""

    def decorator(function: Callable[..., None]) -> click.Command:
        @main.command(*args, **kwargs)
        @click.option("--url", envvar="TRAINYARD_URL", default=None,
                      help=f"The service's address (env TRAINYARD_URL; default: <data dir>/url, written by "
                           f"`trainyard up`, else {DEFAULT_URL}).")
        @click.option("--token", envvar="TRAINYARD_TOKEN", default=None,
                      help="API token (env TRAINYARD_TOKEN; default: <data dir>/token, written by `trainyard up`).")
        @click.pass_obj
        @functools.wraps(function)
        def command(settings: Settings, url: str | None, token: str | None, **options: Any) -> None:
            with Client(url or local.read_url(settings) or DEFAULT_URL, _token(settings, token)) as client:
                try:
                    function(client, **options)
                except ClientError as exc:
                    raise click.ClickException(_describe(exc)) from exc

        return command

    return decorator


def project_option(text: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``--project``, saying ``text``; from ``TRAINYARD_PROJECT`` when not given."""
    return click.option("--project", envvar="TRAINYARD_PROJECT", default=None,
                        help=f"{text} (env TRAINYARD_PROJECT).")


def _filed(document: Any, project: str | None, *specs: Any) -> Any:
    """``document`` with ``project`` set, unless no project is given or the document (or ``specs``, the documents
    it holds) names one already: what a file says wins."""
    if project is None or not isinstance(document, dict):
        return document
    if any(isinstance(named, dict) and "project" in named for named in (document, *specs)):
        return document
    return document | {"project": project}


@client_command(help="Submit the job spec in SPEC (a JSON file, - for stdin); prints the run's id.")
@click.argument("spec", type=click.File("r", encoding="utf-8"))
@click.option("--watch", is_flag=True, help="Show a progress bar with the loss until the run ends; "
                                            "the exit status is 1 if it fails or is cancelled.")
@project_option("The run's project, if the spec names none (default: default)")
def submit(client: Client, spec: TextIO, watch: bool, project: str | None) -> None:
    run = client.submit(_filed(_json_file(spec), project))
    click.echo(run["id"])
    click.echo(f"run {run['id']} ({run['name']}) queued in project {run['project']}", err=True)
    if run.get("defaults"):
        shown = ", ".join(f"{name} {json.dumps(value)}" for name, value in run["defaults"].items())
        click.echo(f"defaults taken for what the spec leaves out: {shown}", err=True)
    if watch:
        _watch(client, run)


def _json_file(file: TextIO) -> Any:
    """The JSON document in ``file``; a readable error naming the file when it is not JSON."""
    try:
        return json.load(file)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{file.name}: not JSON ({exc})") from exc


def _watch(client: Client, submitted: dict[str, Any]) -> None:
    """Follow a run with a progress bar to its end; a :class:`click.ClickException` unless it succeeded."""
    run_id = submitted["id"]
    with click.progressbar(length=submitted["epochs_total"], label=submitted["name"], show_pos=True,
                           file=sys.stderr, item_show_func=_loss_label) as bar:
        try:
            for run, epochs in client.follow(run_id):
                bar.update(max(0, run["epochs_done"] - bar.pos), epochs[-1] if epochs else None)
        except KeyboardInterrupt:
            raise click.ClickException(f"stopped watching; the run goes on (trainyard cancel {run_id})") from None
    if run["status"] != "succeeded":
        raise click.ClickException(f"run {run_id} {run['status']}" + (f": {run['error']}" if run["error"] else ""))
    stopped = f" ({run['stop_reason']})" if run.get("stop_reason") else ""
    click.echo(f"run {run_id} succeeded after {run['epochs_done']} epochs{stopped}: {_summary(run['summary'])}")


@client_command(help="Start the sweep in SWEEP (a JSON file, - for stdin: name, spec, method grid or random, "
                     "space[, n, seed]); prints the sweep's id.")
@click.argument("sweep", type=click.File("r", encoding="utf-8"))
@click.option("--watch", is_flag=True, help="Show the sweep's progress until every run has ended, then its runs "
                                            "ranked; the exit status is 1 if none succeeded.")
@click.option("--metric", type=click.Choice(SWEEP_METRICS), help="What ranks the runs (default: val_loss with "
                                                                 "held-out data, else train_loss).")
@project_option("The project of the sweep and its runs, if the file and its spec name none (default: default)")
def sweep(client: Client, sweep: TextIO, watch: bool, metric: str | None, project: str | None) -> None:
    body = _json_file(sweep)
    created = client.create_sweep(_filed(body, project, body.get("spec") if isinstance(body, dict) else None))
    click.echo(created["id"])
    click.echo(f"sweep {created['id']} ({created['name']}): {created['progress']['runs']} runs queued in project "
               f"{created['project']}", err=True)
    if watch:
        _watch_sweep(client, created, metric)


def _watch_sweep(client: Client, created: dict[str, Any], metric: str | None, interval: float = 1.0) -> None:
    """An overall progress bar (epochs of all runs) until every run has ended; then the runs, best first."""
    sweep_id, progress = created["id"], created["progress"]
    label = f"{created['name']} ({progress['runs']} runs)"
    with click.progressbar(length=progress["epochs_total"], label=label, show_pos=True, file=sys.stderr,
                           item_show_func=lambda text: text) as bar:
        try:
            while True:
                current = client.sweep(sweep_id, metric=metric)
                progress = current["progress"]
                bar.update(max(0, progress["epochs_done"] - bar.pos), f"{progress['finished']} finished")
                if progress["finished"] == progress["runs"]:
                    break
                time.sleep(interval)
        except KeyboardInterrupt:
            raise click.ClickException(f"stopped watching; the sweep goes on (its id: {sweep_id})") from None
    best = current["best"]
    column = best["metric"]
    summary_field = SWEEP_METRICS[column][0]
    ranked = sorted(current["runs"], key=lambda run: _rank(run, summary_field, SWEEP_METRICS[column][1]))
    rows = [(run["id"], run["name"], run["status"], _cell(run["summary"].get(summary_field))) for run in ranked]
    _table(("id", "name", "status", column), rows)
    counts = ", ".join(f"{n} {status}" for status, n in progress["counts"].items() if n)
    click.echo(f"sweep {sweep_id}: {counts}; best {column} {_cell(best['value'])} (run {best['run']})")
    if not progress["counts"]["succeeded"]:
        raise click.ClickException(f"no run of sweep {sweep_id} succeeded")


def _rank(run: dict[str, Any], field: str, higher_is_better: bool) -> tuple[bool, float]:
    """Sort key: runs with a value first, best value first."""
    value = run["summary"].get(field)
    return value is None, 0.0 if value is None else (-value if higher_is_better else value)


#: The metrics beside the progress bar of ``submit --watch``, with their labels.
PROGRESS_METRICS = {"train_loss": "loss", "val_loss": "val loss"}


def _loss_label(epoch: dict[str, Any] | None) -> str | None:
    if epoch is None:
        return None
    return "  ".join(f"{label} {_cell(epoch[name])}" for name, label in PROGRESS_METRICS.items()
                     if epoch.get(name) is not None)


def _summary(summary: dict[str, Any] | None) -> str:
    shown = [(name, value) for name, value in (summary or {}).items() if value is not None]
    return ", ".join(f"{name.replace('_', ' ')} {_cell(value)}" for name, value in shown) or "no metrics"


def _cell(value: Any) -> str:
    """A value in a table: ``-`` for none, 4 significant digits for floats, JSON for booleans, lists and objects."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (bool, list, dict)):
        return json.dumps(value)
    return str(value)


#: The summary metrics `runs` shows, with their column headers.
RUN_COLUMNS = {"final_train_loss": "train loss", "final_train_accuracy": "train acc", "final_val_loss": "val loss",
               "final_val_accuracy": "val acc"}


@client_command("runs", help="List runs, newest first.")
@project_option("Only the runs of this project")
@click.option("--status", type=click.Choice(RUN_STATUSES), help="Only runs with this status.")
@click.option("--tag", help="Only runs with this tag.")
@click.option("--sweep", help="Only the runs of this sweep (its id, or its name).")
@click.option("--name", "q", help="Only runs whose name contains this text (ignoring case).")
@click.option("--sort", help="created_at, name, status, epochs_done or a summary metric; '-' for descending.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(0), help="At most this many (0: all).")
def list_runs(client: Client, project: str | None, status: str | None, tag: str | None, sweep: str | None,
              q: str | None, sort: str | None, limit: int) -> None:
    found = client.runs(status=status, tag=tag, sweep=sweep, q=q, project=project, sort=sort,
                        page_size=min(limit, repo.MAX_LIST_LIMIT) or None)
    rows = [
        (run["id"], run["name"], run["status"], f"{run['epochs_done']}/{run['epochs_total']}",
         *(_cell(run["summary"].get(field)) for field in RUN_COLUMNS), _short_time(run["created_at"]))
        for run in (itertools.islice(found, limit) if limit else found)
    ]
    _table(("id", "name", "status", "epochs", *RUN_COLUMNS.values(), "created"), rows)


@client_command("sweeps", help="List sweeps, newest first: their runs by status and their best run.")
@project_option("Only the sweeps of this project")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, MAX_SWEEP_LIST),
              help="At most this many.")
def list_sweeps(client: Client, project: str | None, limit: int) -> None:
    rows = []
    for found in client.sweeps(limit=limit, project=project):
        progress, best = found["progress"], found["best"]
        counts = ", ".join(f"{n} {status}" for status, n in progress["counts"].items() if n) or "no runs"
        rows.append((found["id"], found["name"], found["method"], f"{progress['finished']}/{progress['runs']}",
                     counts, f"{best['metric']} {_cell(best['value'])}", _short_time(found["created_at"])))
    _table(("id", "name", "method", "finished", "runs", "best", "created"), rows)


@client_command("projects", help="List projects by name: their runs by status, their sweeps, their last activity.")
def list_projects(client: Client) -> None:
    rows = []
    for found in client.projects():
        counts = ", ".join(f"{n} {status}" for status, n in found["counts"].items() if n) or "no runs"
        rows.append((found["name"], str(found["runs"]), counts, str(found["sweeps"]),
                     _short_time(found["last_activity"])))
    _table(("project", "runs", "by status", "sweeps", "last activity"), rows)


def _short_time(iso: str | None) -> str:
    """``2026-01-02T03:04:05.123456Z`` as ``2026-01-02 03:04:05``."""
    return iso[:19].replace("T", " ") if iso else "-"


@client_command(help="Show a run: status, progress, metrics, error and spec.")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead.")
def show(client: Client, run_id: str, as_json: bool) -> None:
    run = client.run(run_id)
    if as_json:
        click.echo(json.dumps(run, indent=2))
        return
    rows = [
        ("id", run["id"]), ("name", run["name"]), ("project", run["project"]),
        ("status", run["status"] + (" (cancel requested)" if run["cancel_requested"] and run["status"] in
                                    ("queued", "running") else "")),
        ("epochs", f"{run['epochs_done']}/{run['epochs_total']}"), ("tags", ", ".join(run["tags"]) or "-"),
        ("created", _short_time(run["created_at"])), ("started", _short_time(run["started_at"])),
        ("finished", _short_time(run["finished_at"])), ("attempts", run["attempts"]),
        *((name, _cell(value)) for name, value in run["summary"].items() if value is not None),
        *((("stopped", run["stop_reason"]),) if run.get("stop_reason") else ()),
        *((("error", run["error"]),) if run["error"] else ()),
        *((("notes", run["notes"]),) if run["notes"] else ()),
    ]
    _table(("", ""), [tuple(map(str, row)) for row in rows], show_header=False)
    click.echo("spec:")
    click.echo(json.dumps(run["spec"], indent=2))


@client_command(help="Ask a queued or running run to stop (it keeps the epochs trained so far).")
@click.argument("run_id")
def cancel(client: Client, run_id: str) -> None:
    run = client.cancel(run_id)
    click.echo(f"run {run['id']} ({run['name']}): cancel requested, status {run['status']}")


@client_command(help="Compare runs: the spec parameters that differ, then the final metrics.")
@click.argument("run_ids", nargs=-1, required=True)
def compare(client: Client, run_ids: Sequence[str]) -> None:
    result = client.compare(run_ids, max_points=2)
    runs = result["runs"]
    header = ("", *(f"{run['name']} ({run['id'][:8]})" for run in runs))
    absent = result["params"].get("absent", {})
    params = [(path, *("-" if index in absent.get(path, ()) else "null" if value is None else _cell(value)
                       for index, value in enumerate(values)))
              for path, values in result["params"]["differ"].items()]
    metrics = [
        (field, *(_cell(run["summary"].get(field)) for run in runs))
        for field in SUMMARY_FIELDS if any(run["summary"].get(field) is not None for run in runs)
    ]
    status = [("status", *(run["status"] for run in runs)), ("epochs", *(str(run["epochs_done"]) for run in runs))]
    if not params:
        click.echo("the runs' parameters are all the same", err=True)
    _table(header, [*params, *status, *metrics])


@client_command(help="Export a run: its epochs as CSV, the run and all its epochs as JSON, or its weights as .npz.")
@click.argument("run_id")
@click.option("--format", "form", type=click.Choice(("csv", "json", "npz")), required=True)
@click.option("-o", "--output", default="-", type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
              help="File to write (default: standard output).")
@click.option("--epoch", type=click.IntRange(1), help="npz: the weights of this epoch (default: the last kept).")
def export(client: Client, run_id: str, form: str, output: str, epoch: int | None) -> None:
    if form == "npz":
        if output == "-" and sys.stdout.isatty():
            raise click.UsageError("an .npz file is binary: write it to a file with -o FILE, or redirect the output")
        data = client.weights(run_id, epoch=epoch, format="npz")
        with click.open_file(output, "wb") as file:
            file.write(data)
        return
    with click.open_file(output, "wb") as file:  # streamed: a run of a million epochs is never held in memory
        written = client.export_to(run_id, file, form)
    if output != "-":
        click.echo(f"{output}: {written:,} bytes", err=True)
