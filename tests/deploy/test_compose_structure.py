"""The deployment files hold together: docker-compose.yml, the Dockerfile and .env.example.

What Docker would only find out at ``docker compose up`` is checked here from
the files and the code they name: every service has an image, the
dependencies wait for health or for the migration, secrets are required, the
commands are real ``trainyard`` commands with valid options, and the grace
periods cover the shutdowns that the code performs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from importlib.metadata import version
from typing import Any

import click
import pytest
from compose_kit import (
    APPLICATION_SERVICES,
    ROOT,
    MissingVariable,
    command_of,
    compose_text,
    dockerfile_instructions,
    duration_seconds,
    environment_of,
    exec_form,
    interpolate,
    load_compose,
    read_env_file,
    variable_uses,
)

from trainyard import local
from trainyard.cli import main
from trainyard.service import server
from trainyard.service.config import Settings
from trainyard.worker.celery_app import make_celery

#: The secrets docker compose must refuse to start without.
REQUIRED_VARIABLES = {"POSTGRES_PASSWORD", "TRAINYARD_SECRET_KEY"}

COMPOSE = load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def parse_trainyard(words: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse ``trainyard ...`` as the CLI would, without running it: the subcommand's path and its options.

    Unknown subcommands or options, and values out of range, fail here as they would in the container.
    """
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert words[0] in scripts, f"{words[0]!r} is not a console script of the project ({sorted(scripts)})"
    command, args, path = main, list(words[1:]), []
    while isinstance(command, click.Group):
        assert args, f"{shlex.join(words)}: a subcommand of {' '.join(path) or 'trainyard'} is missing"
        name = args.pop(0)
        command = command.get_command(click.Context(command), name)
        assert command is not None, f"{shlex.join(words)}: no command {name!r}"
        path.append(name)
    try:
        context = command.make_context(" ".join(path), args)
    except click.UsageError as exc:
        pytest.fail(f"{shlex.join(words)}: {exc.format_message()}")
    return " ".join(path), context.params


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """A service's dependencies and the condition each waits for (the short list form means service_started)."""
    dependencies = service.get("depends_on") or {}
    if isinstance(dependencies, list):
        return dict.fromkeys(dependencies, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in dependencies.items()}


def healthcheck_words(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    return shlex.split(test) if isinstance(test, str) else test


# ------------------------------------------------------------------------------------------------ services


def test_every_service_has_an_image_and_the_application_shares_one():
    assert {"postgres", "redis", *APPLICATION_SERVICES, "flower"} <= set(SERVICES)
    for name, service in SERVICES.items():
        assert service.get("image") or service.get("build"), f"{name}: neither image nor build"
    assert {SERVICES[name]["image"] for name in APPLICATION_SERVICES} == {"${TRAINYARD_IMAGE:-trainyard:latest}"}
    assert all(SERVICES[name]["build"] == "." for name in APPLICATION_SERVICES)


def test_postgres_keeps_its_data_in_a_named_volume_and_reports_ready_with_pg_isready():
    postgres = SERVICES["postgres"]
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in COMPOSE["volumes"] and postgres["volumes"][0].endswith(":/var/lib/postgresql/data")
    assert healthcheck_words(postgres)[:2] == ["CMD", "pg_isready"]


def test_redis_persists_its_queue_append_only_and_has_a_healthcheck():
    redis = SERVICES["redis"]
    command = command_of(redis)
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"  # an evicted message is a lost run
    assert redis["volumes"][0].split(":")[0] in COMPOSE["volumes"] and redis["volumes"][0].endswith(":/data")
    assert "redis-cli" in " ".join(healthcheck_words(redis))


def test_every_dependency_waits_for_health_or_for_the_migration_to_succeed():
    assert depends_on(SERVICES["migrate"]) == {"postgres": "service_healthy"}
    for name in ("api", "worker"):
        assert depends_on(SERVICES[name]) == {
            "migrate": "service_completed_successfully",
            "postgres": "service_healthy",
            "redis": "service_healthy",
        }, name
    for name, service in SERVICES.items():
        for dependency, condition in depends_on(service).items():
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{name} waits for {dependency}'s missing healthcheck"


def test_the_migration_runs_once_and_the_application_services_run_trainyard_commands():
    assert SERVICES["migrate"]["restart"] == "no"  # a one-shot: restarted, it would never "complete"
    assert parse_trainyard(command_of(SERVICES["migrate"]))[0] == "db upgrade"
    assert parse_trainyard(command_of(SERVICES["api"]))[0] == "api"
    assert parse_trainyard(command_of(SERVICES["worker"]))[0] == "worker"


def test_the_api_serves_on_gthread_workers_and_is_healthy_only_when_ready():
    api = SERVICES["api"]
    _, options = parse_trainyard(command_of(api))
    assert options["host"] == "0.0.0.0" and api["ports"] == [f"${{TRAINYARD_PORT:-8000}}:{options['port']}"]
    gunicorn = server.options(options["host"], options["port"], workers=options["workers"], threads=options["threads"])
    assert gunicorn["worker_class"] == "gthread"
    assert options["threads"] >= 4 and options["workers"] >= 2
    probe = healthcheck_words(api)
    assert probe[:2] == ["CMD", "python"]  # the image has Python, not curl
    assert f"http://127.0.0.1:{options['port']}/readyz" in probe[-1]


def test_the_api_stops_after_gunicorn_has_finished_the_requests_in_flight():
    arguments = shlex.split(environment_of(SERVICES["api"])["GUNICORN_CMD_ARGS"])
    graceful = float(arguments[arguments.index("--graceful-timeout") + 1])
    assert duration_seconds(SERVICES["api"]["stop_grace_period"]) > graceful


def test_the_worker_has_time_for_its_soft_shutdown_before_docker_kills_it():
    """SIGTERM is Celery's warm shutdown, which the worker turns into "flush, checkpoint and requeue at the next
    epoch" (``trainyard.worker.run``). Docker sends SIGKILL after ``stop_grace_period``: it must be longer than the
    time the code allows that shutdown (``trainyard.local.STOP_TIMEOUT`` in local mode, and Celery's soft shutdown,
    if set)."""
    worker = SERVICES["worker"]
    celery = make_celery(Settings.from_env({"TRAINYARD_BROKER_URL": "redis://redis:6379/0"}))
    try:
        soft_shutdown = celery.conf.worker_soft_shutdown_timeout
    finally:
        celery.close()
    assert duration_seconds(worker["stop_grace_period"]) > max(local.STOP_TIMEOUT, soft_shutdown)
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    # REMAP_SIGTERM=SIGQUIT would make SIGTERM a cold shutdown: runs would wait for their lease to expire.
    assert "REMAP_SIGTERM" not in environment_of(worker)


def test_the_worker_scales_with_no_name_or_host_port_of_its_own():
    worker = SERVICES["worker"]
    assert "container_name" not in worker and "ports" not in worker and "hostname" not in worker


def test_flower_is_optional():
    assert SERVICES["flower"]["profiles"] == ["monitoring"]
    assert all("profiles" not in SERVICES[name] for name in ("postgres", "redis", *APPLICATION_SERVICES))


def flower_invocation(command: list[str]) -> tuple[str, list[str]]:
    """The flower service's command, ``sh -c SCRIPT NAME WORDS...``: the script (which checks the login and then
    runs ``exec "$@"``) and the words it runs."""
    assert command[:2] == ["sh", "-c"] and len(command) > 4, command
    return command[2], command[4:]


def test_flower_watches_the_workers_broker_and_is_healthy_only_when_it_answers():
    flower = SERVICES["flower"]
    _, words = flower_invocation(command_of(flower))
    broker = environment_of(SERVICES["worker"])["TRAINYARD_BROKER_URL"]
    assert words[:3] == ["celery", f"--broker={broker}", "flower"]
    (port,) = [word.removeprefix("--port=") for word in words[3:] if word.startswith("--port=")]
    assert flower["ports"] == [f"127.0.0.1:${{FLOWER_PORT:-5555}}:{port}"], "published on this host only"
    probe = healthcheck_words(flower)
    assert probe[:2] == ["CMD", "python"] and f"http://127.0.0.1:{port}/healthcheck" in probe[-1]
    assert depends_on(flower) == {"redis": "service_healthy"}


def test_flower_runs_the_flower_version_the_tests_run_on_the_projects_python():
    """tests/worker/test_flower.py runs the installed ``flower``: the image must carry that version."""
    build = SERVICES["flower"]["build"]
    inline = build["dockerfile_inline"]
    pinned = re.findall(r"\bflower==([\w.]+)", inline)
    assert pinned == [version("flower")], f"docker-compose.yml pins flower {pinned}, the tests ran {version('flower')}"
    (base,) = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "FROM"]
    assert re.search(rf"^FROM {re.escape(base)}$", inline, re.MULTILINE), "the Python of the project's image"
    assert re.search(r"^USER (?!root\b|0\b)\w+$", inline, re.MULTILINE), "runs as a user"


@pytest.mark.parametrize(("login", "starts"), [(None, False), ("", False), ("password", False),
                                              ("flower:s3cret", True), ("a:b,flower:s3cret", True)])
def test_flower_starts_only_with_a_login_in_flower_basic_auth(login, starts):
    """Flower without a login would refuse its API and, with an empty one, every page: its command refuses to start
    instead, naming the variable. Not as a required variable: compose interpolates every service, and ``:?`` would
    stop ``docker compose up`` without the monitoring profile too."""
    variables = dict.fromkeys(REQUIRED_VARIABLES, "set") | ({} if login is None else {"FLOWER_BASIC_AUTH": login})
    flower = interpolate(COMPOSE, variables)["services"]["flower"]  # no MissingVariable, whatever the login
    script, _ = flower_invocation(command_of(flower))
    env = {"PATH": os.environ["PATH"], **environment_of(flower)}
    assert env["FLOWER_BASIC_AUTH"] == (login or "")
    # the service's own command, with `echo started` for the words it runs
    done = subprocess.run(["sh", "-c", script, "flower", "echo", "started"], env=env, capture_output=True, text=True)
    if starts:
        assert (done.returncode, done.stdout) == (0, "started\n")
    else:
        assert done.returncode == 1 and done.stdout == ""
        assert "set FLOWER_BASIC_AUTH=user:password in .env" in done.stderr


# ------------------------------------------------------------------------------------------------ variables


def test_required_secrets_are_never_used_without_the_required_form():
    uses = variable_uses(compose_text())
    assert {name for name, operator in uses if operator == ":?"} == REQUIRED_VARIABLES
    assert all(operator == ":?" for name, operator in uses if name in REQUIRED_VARIABLES)
    assert all(operator == ":-" for name, operator in uses if name not in REQUIRED_VARIABLES), "defaults for the rest"


@pytest.mark.parametrize("missing", sorted(REQUIRED_VARIABLES))
def test_compose_refuses_to_start_without_a_required_secret(missing):
    variables = dict.fromkeys(REQUIRED_VARIABLES, "set") | {missing: ""}
    with pytest.raises(MissingVariable, match=f"^{missing}: set {missing} in .env") as caught:
        interpolate(COMPOSE, variables)
    assert caught.value.name == missing


def test_env_example_lists_every_variable_the_compose_file_uses_with_the_secrets_left_blank():
    example = read_env_file()
    assert set(example) == {name for name, _ in variable_uses(compose_text())}
    assert all(example[name] == "" for name in REQUIRED_VARIABLES)
    defaults = {match[1]: match[2] for match in re.finditer(r"\$\{(\w+):-([^}]*)\}", compose_text())}
    assert {name: example[name] for name in defaults} == defaults, ".env.example shows the compose file's defaults"


# ------------------------------------------------------------------------------------------------ Dockerfile


def test_the_dockerfile_builds_one_slim_image_that_runs_as_a_user_and_serves_the_api():
    instructions = dockerfile_instructions()
    (base,) = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    version = re.fullmatch(r"python:3\.(\d+)-slim", base)
    assert version and int(version[1]) >= 11, base
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    installs = [arguments for keyword, arguments in instructions if keyword == "RUN" and "pip install" in arguments]
    assert len(installs) == 1 and installs[0].endswith("pip install /src"), "the project alone, no dev extras"
    assert not [keyword for keyword, _ in instructions if keyword == "ENTRYPOINT"]
    (cmd,) = [exec_form(arguments) for keyword, arguments in instructions if keyword == "CMD"]
    assert parse_trainyard(cmd)[0] == "api"
    assert parse_trainyard(cmd)[1]["host"] == "0.0.0.0"


def test_the_build_context_holds_what_pip_install_needs():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*", "everything is left out (.git, tests, local data) but what is named"
    kept = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()
    assert set(folders) | {"pyproject.toml", "README.md"} == kept
