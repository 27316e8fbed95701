"""Tokens never appear in logs (issue 8): the deployed API and a worker, with every log they write, used with real
tokens in every way a token travels; afterwards no token, nor any recognisable piece of its secret, is in any log.

The API runs as docker-compose.yml's ``api`` service runs it: the service's ``command`` and ``environment``, read
from the file (``GUNICORN_CMD_ARGS`` with its access log in gunicorn's default format, which logs the request line
with its query string and the ``Referer``), with ``--access-logfile``, ``--error-logfile`` and ``--log-level debug``
appended to point the logs at files; its stdout and stderr (Flask's logger) go to a third file.  The worker is
``trainyard worker --loglevel debug``, its output in a file.  PostgreSQL (a database of the test's own) and Redis
(a queue of the test's own) are this machine's servers.

Exercised: API calls with a token of each scope in the ``Authorization`` header, a scope too low (403), a wrong
token and a malformed header (401), a token used and then revoked (401), requests that fail (400, 404, 409, 422),
a run submitted and trained to the end by the worker, the dashboard in headless chromium (the one-click link
``trainyard up`` prints, the login form with a good, a wrong and a revoked token, pages and their polls, logout),
the CLI (``trainyard runs --url ... --token ...``, with a good and a revoked token) and the Python client's
errors.  The logs checked: the access log, the error log, the API's output, the worker's output, the CLI's output
and the client's error messages.  ``trainyard token create`` prints the token it makes (that is its job), so its
own output is not a log here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from factories import xor
from sqlalchemy.engine import make_url

from trainyard.client import ApiError, Client, ClientError
from trainyard.local import login_link
from trainyard.service.storage.repo import TOKEN_PREFIX

#: Seconds for the API or the worker to get ready, and for the run to be trained.
READY_TIMEOUT = 60
RUN_TIMEOUT = 60

#: The shortest piece of a token's secret that counts as recognisable (the secret is 43 characters).
PIECE = 12

SPEC: dict[str, Any] = xor(name="xor-no-token-in-logs", seed=1, tags=["security"])


def _compose_kit() -> Any:
    """tests/deploy/compose_kit.py: docker-compose.yml read (and interpolated) as Docker Compose reads it."""
    path = Path(__file__).resolve().parents[1] / "deploy" / "compose_kit.py"
    spec = importlib.util.spec_from_file_location("trainyard_security_compose_kit", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compose_kit = _compose_kit()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pieces(token: str) -> list[str]:
    """What must not be in a log: the token, its secret, and every ``PIECE`` characters of the secret."""
    secret = token.removeprefix(TOKEN_PREFIX)
    return [token, secret, *(secret[i:i + PIECE] for i in range(len(secret) - PIECE + 1))]


def leaks(logs: dict[str, str], tokens: dict[str, str]) -> list[str]:
    """Each log line holding a token or a piece of one, named by log and token (the token itself masked)."""
    found = []
    for log_name, text in logs.items():
        for number, line in enumerate(text.splitlines(), 1):
            for token_name, token in tokens.items():
                if any(piece in line for piece in pieces(token)):
                    shown = re.sub(r"[A-Za-z0-9_-]*(?:" + "|".join(map(re.escape, pieces(token))) + r")[A-Za-z0-9_-]*",
                                   "<TOKEN>", line)
                    found.append(f"{log_name}:{number}: the {token_name} token: {shown[:300]}")
    return found


class Stack:
    """docker-compose.yml's ``api`` (and a worker) run here, each process's logs in ``folder``."""

    def __init__(self, database_url: str, redis_url: str, queue: str, folder: Path):
        self.folder = folder
        database = make_url(database_url)
        variables = compose_kit.read_env_file() | {
            "POSTGRES_USER": database.username,
            "POSTGRES_PASSWORD": database.password or "unused-with-trust-auth",
            "POSTGRES_DB": database.database,
            "TRAINYARD_SECRET_KEY": secrets.token_urlsafe(32),
        }
        self.services = compose_kit.interpolate(compose_kit.load_compose()["services"], variables)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log, self.error_log = folder / "gunicorn-access.log", folder / "gunicorn-error.log"
        base = {name: value for name, value in os.environ.items() if not name.startswith("TRAINYARD_")}
        self.bin = str(Path(sys.executable).parent)
        base["PATH"] = os.pathsep.join([self.bin, base.get("PATH", "")])
        # This machine's servers play the compose file's postgres and redis services.
        servers = {"TRAINYARD_DATABASE_URL": database_url, "TRAINYARD_BROKER_URL": redis_url, "TRAINYARD_QUEUE": queue}
        self.env: dict[str, dict[str, str]] = {}
        for name in ("migrate", "api", "worker"):
            service_env = compose_kit.environment_of(self.services[name])
            assert {"TRAINYARD_DATABASE_URL", "TRAINYARD_BROKER_URL"} <= set(service_env), name
            self.env[name] = base | service_env | servers
        gunicorn_args = self.env["api"]["GUNICORN_CMD_ARGS"]
        assert "--access-logfile -" in gunicorn_args, gunicorn_args  # the deployment logs every request
        assert "--access-logformat" not in gunicorn_args  # in gunicorn's default format: query string and Referer
        self.env["api"]["GUNICORN_CMD_ARGS"] = (
            f"{gunicorn_args} --access-logfile {self.access_log} --error-logfile {self.error_log} --log-level debug"
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def command(self, name: str) -> list[str]:
        """The service's command, its port made the free one."""
        words = compose_kit.command_of(self.services[name])
        return self._here([str(self.port) if previous == "--port" else word
                           for previous, word in zip(["", *words], words)])

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``docker compose exec api ARGS``."""
        return subprocess.run(self._here(list(args)), env=self.env["api"], cwd=self.folder,
                              capture_output=True, text=True, timeout=READY_TIMEOUT)

    def _here(self, words: list[str]) -> list[str]:
        """``words`` with their program as installed beside this Python."""
        program = shutil.which(words[0], path=self.bin)
        assert program, f"{words[0]} is not installed in {self.bin}"
        return [program, *words[1:]]

    def start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        with (self.folder / f"{name}.log").open("wb") as output:
            process = subprocess.Popen(command, env=self.env["worker" if name == "worker" else "api"],
                                       cwd=self.folder, stdout=output, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def output(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def wait_for(self, name: str, ready: Any, what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready():
            process = self.processes[name]
            assert process.poll() is None, f"{name} exited with {process.returncode}:\n{self.output(name)}"
            assert time.monotonic() < deadline, f"{name}: not {what} in {READY_TIMEOUT} s:\n{self.output(name)}"
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM to each process (their logs flushed as they exit); SIGKILL after 15 s."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def stack(postgres_database: str, redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Stack]:
    queue = f"trainyard-security-{secrets.token_hex(6)}"
    running = Stack(postgres_database, redis_url, queue, tmp_path)
    try:
        yield running
    finally:
        running.stop()
        redis_client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _create_tokens(stack: Stack, scopes: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``docker compose exec api trainyard token create --scope SCOPE`` for each ``name: scope`` (at once): the
    tokens and their ids by name."""
    started = {name: subprocess.Popen(stack._here(["trainyard", "token", "create", "--scope", scope, "--name", name]),
                                      env=stack.env["api"], cwd=stack.folder, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
               for name, scope in scopes.items()}
    tokens, ids = {}, {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=READY_TIMEOUT)
        assert process.returncode == 0, stderr
        token_id = re.search(r"token (\S+) \(", stderr)
        assert token_id, stderr
        tokens[name], ids[name] = stdout.strip(), token_id.group(1)
    return tokens, ids


def _dashboard(browser: Any, stack: Stack, tokens: dict[str, str], run_id: str) -> list[str]:
    """Use the dashboard as people do; what the pages' scripts reported as errors (none expected)."""
    errors: list[str] = []

    def open_page() -> tuple[Any, Any]:
        context = browser.new_context(base_url=stack.url)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return context, page

    # The one-click link `trainyard up` prints, with the admin token: lands on the runs, then a run's page and
    # its polls, then logs out.
    context, page = open_page()
    page.goto(login_link(stack.url, tokens["admin"]))
    page.wait_for_url("**/runs")
    assert TOKEN_PREFIX not in page.url
    assert page.locator(f'tr[data-run="{run_id}"]').count() == 1
    page.goto(f"/runs/{run_id}")
    page.wait_for_function("() => document.querySelectorAll('#chart-loss .scatterlayer .trace').length >= 1")
    page.goto(f"/compare?runs={run_id}")
    page.wait_for_function("() => document.querySelectorAll('#chart-train_loss .scatterlayer .trace').length === 1")
    page.click('button:has-text("Log out")')
    page.wait_for_url("**/login")
    context.close()

    # The login form: a wrong token, a revoked one, then the read token; a link with next= to come back to.
    context, page = open_page()
    page.goto(f"/runs/{run_id}")
    assert "/login?next=" in page.url
    for refused in (tokens["wrong"], tokens["revoked"]):
        page.fill('input[name="token"]', refused)
        page.click('button:has-text("Log in")')
        assert "unknown or revoked" in page.locator(".flash.error").text_content()
    page.fill('input[name="token"]', tokens["read"])
    page.click('button:has-text("Log in")')
    page.wait_for_url(f"**/runs/{run_id}")
    assert page.locator(".scope").text_content() == "scope: read"
    context.close()
    return errors


def test_no_token_reaches_any_log(stack: Stack, browser: Any) -> None:
    migrate = subprocess.run(stack.command("migrate"), env=stack.env["migrate"], cwd=stack.folder,
                             capture_output=True, text=True, timeout=READY_TIMEOUT)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    stack.start("api", stack.command("api"))
    stack.start("worker", [sys.executable, "-P", "-m", "trainyard", "worker", "--loglevel", "debug"])
    tokens, ids = _create_tokens(stack, {"read": "read", "write": "write", "admin": "admin", "revoked": "read"})
    tokens["wrong"] = TOKEN_PREFIX + secrets.token_urlsafe(32)  # well-formed, never issued
    stack.wait_for("api", lambda: _ready(stack.url), "ready")
    stack.wait_for("worker", lambda: " ready." in stack.output("worker"), "ready")
    client_errors: list[str] = []

    def refused(call: Any, status: int) -> None:
        with pytest.raises(ApiError) as caught:
            call()
        assert caught.value.status == status, caught.value
        client_errors.extend([str(caught.value), repr(caught.value), caught.value.message])

    # The API with the token in the Authorization header: every scope, and the errors.
    with Client(stack.url, tokens["write"]) as write, Client(stack.url, tokens["read"]) as read, \
            Client(stack.url, tokens["admin"]) as admin:
        run_id = write.submit(SPEC)["id"]
        for client in (read, write, admin):
            assert list(client.runs(tag="security"))[0]["id"] == run_id
            assert "builtin" in client.datasets()
        refused(lambda: read.submit(SPEC), 403)
        refused(lambda: read.cancel(run_id), 403)
        refused(lambda: read.run("0" * 32), 404)
        refused(lambda: list(read.runs(sort="no-such-field")), 400)
        refused(lambda: read.epochs(run_id, fields=["no_such_metric"]), 400)
        refused(lambda: write.submit(SPEC | {"epochs": -1}), 422)
        for token in (tokens["wrong"], "not-a-token"):
            with Client(stack.url, token) as wrong:
                refused(lambda wrong=wrong: wrong.run(run_id), 401)
        with Client(stack.url) as anonymous:
            refused(lambda: anonymous.run(run_id), 401)
        for header in (f"Token {tokens['wrong']}", f"Bearer{tokens['wrong']}", tokens["wrong"]):
            answer = httpx.get(f"{stack.url}/api/runs", headers={"Authorization": header}, timeout=10)
            assert answer.status_code == 401, answer.text
            client_errors.append(answer.text)

        # A token that worked, then revoked (`trainyard token revoke`, as `docker compose exec api ...`).
        with Client(stack.url, tokens["revoked"]) as revoked:
            assert revoked.run(run_id)["id"] == run_id
            revoke = stack.run("trainyard", "token", "revoke", ids["revoked"])
            assert revoke.returncode == 0, revoke.stderr
            refused(lambda: revoked.run(run_id), 401)
        with Client(f"http://127.0.0.1:{free_port()}", tokens["admin"], timeout=2) as nowhere:
            with pytest.raises(ClientError) as caught:
                nowhere.health()
            client_errors.extend([str(caught.value), repr(caught.value), repr(nowhere)])

        # The worker trains the run to its end; then cancelling it is a 409.
        deadline = time.monotonic() + RUN_TIMEOUT
        while (run := read.run(run_id))["status"] != "succeeded":
            assert run["status"] in ("queued", "running"), run
            assert time.monotonic() < deadline, f"not trained in {RUN_TIMEOUT} s:\n{stack.output('worker')}"
            time.sleep(0.3)
        assert run["epochs_done"] == SPEC["epochs"]
        assert len(read.epochs(run_id)) == SPEC["epochs"] and read.weights(run_id)["epoch"] == SPEC["epochs"]
        refused(lambda: write.cancel(run_id), 409)

    # The dashboard in chromium.
    page_errors = _dashboard(browser, stack, tokens, run_id)
    assert not page_errors, page_errors

    # The CLI, with the token on its command line (as a user types it): a good one and a revoked one.
    cli_output = []
    for token, status in ((tokens["read"], 0), (tokens["revoked"], 1)):
        done = stack.run("trainyard", "runs", "--url", stack.url, "--token", token)
        assert done.returncode == status, done.stdout + done.stderr
        cli_output.append(done.stdout + done.stderr)
    assert "xor-no-token-in-logs" in cli_output[0] and "unknown or revoked" in cli_output[1]

    stack.stop()  # every log flushed and closed
    logs = {
        "gunicorn access log": stack.access_log.read_text(errors="replace"),
        "gunicorn error log": stack.error_log.read_text(errors="replace"),
        "api output": stack.output("api"),
        "worker output": stack.output("worker"),
        "migrate output": migrate.stdout + migrate.stderr,
        "cli output": "\n".join(cli_output),
        "client errors": "\n".join(client_errors),
    }
    # The logs were written: every kind of request is in the access log, gunicorn logged at debug, the worker
    # received and finished the run.
    access = logs["gunicorn access log"]
    for request in ("GET /api/runs", "POST /api/runs HTTP", f"GET /api/runs/{run_id} HTTP", "POST /login HTTP",
                    "GET /login HTTP", "GET /login?next=", "POST /logout HTTP", "/ui/data/"):
        assert request in access, f"{request!r} not in the access log:\n{access[-3000:]}"
    for status in ("200", "201", "303", "400", "401", "403", "404", "409", "422"):
        assert f'" {status} ' in access, f"no {status} in the access log"
    assert 'http://127.0.0.1' in access  # the Referer is logged, as it would carry a token in a query string
    assert "[DEBUG]" in logs["gunicorn error log"] and "Booting worker" in logs["gunicorn error log"]
    assert run_id in logs["worker output"] and "succeeded" in logs["worker output"]

    found = leaks(logs, tokens)
    assert not found, "tokens in the logs:\n" + "\n".join(found)


def test_tokens_sent_where_gunicorn_logs_them_are_masked(stack: Stack) -> None:
    migrate = subprocess.run(stack.command("migrate"), env=stack.env["migrate"], cwd=stack.folder,
                             capture_output=True, text=True, timeout=READY_TIMEOUT)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    stack.start("api", stack.command("api"))
    tokens, _ = _create_tokens(stack, {"basic": "read"})
    stack.wait_for("api", lambda: _ready(stack.url), "ready")
    answer = httpx.get(f"{stack.url}/api/runs", auth=(tokens["basic"], ""), timeout=10)
    assert answer.status_code == 401  # the API takes bearer tokens only
    # An old-style link: refused, and masked in the request line and in the Referer of the next request.
    link = f"{stack.url}/login?token={tokens['basic']}"
    assert httpx.get(link, timeout=10).status_code == 400
    assert httpx.get(f"{stack.url}/healthz", headers={"Referer": link}, timeout=10).status_code == 200
    stack.stop()
    logs = {"gunicorn access log": stack.access_log.read_text(errors="replace"),
            "gunicorn error log": stack.error_log.read_text(errors="replace"), "api output": stack.output("api")}
    access = logs["gunicorn access log"]
    assert "GET /api/runs" in access and "/login?token=ty_[redacted]" in access  # logged, with the token masked
    found = leaks(logs, tokens)
    assert not found, "tokens in the logs:\n" + "\n".join(found)
