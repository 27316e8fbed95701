"""``--project`` and ``TRAINYARD_PROJECT`` on the client commands, and ``trainyard projects``, over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

from trainyard.cli import main


@pytest.fixture
def cli(server, tmp_path) -> Callable[..., Result]:
    """``cli(*args, input=None, **env)``: run `trainyard` against the test server with a write token."""

    def invoke(*args: str, input: str | None = None, **env: str) -> Result:
        environment = {"TRAINYARD_URL": server.url, "TRAINYARD_DATA_DIR": str(tmp_path / "cli-data"),
                       "TRAINYARD_TOKEN": server.tokens["write"], "TRAINYARD_PROJECT": None, **env}
        result = CliRunner().invoke(main, list(args), env=environment, input=input, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    return invoke


def _ids(result: Result) -> list[str]:
    return sorted(line.split()[0] for line in result.stdout.splitlines()[1:])


def test_submit_files_the_run_under_the_project_given(cli, spec, client):
    given = cli("submit", "--project", "vision", "-", input=json.dumps(spec))
    run_id = given.stdout.strip()
    assert "queued in project vision" in given.stderr
    from_env = cli("submit", "-", input=json.dumps(spec), TRAINYARD_PROJECT="audio").stdout.strip()
    plain = cli("submit", "-", input=json.dumps(spec)).stdout.strip()
    named = cli("submit", "--project", "vision", "-", input=json.dumps(spec | {"project": "own"})).stdout.strip()
    assert [client.run(run)["project"] for run in (run_id, from_env, plain, named)] == [
        "vision", "audio", "default", "own"]


def test_sweep_files_the_sweep_and_its_runs_under_the_project(cli, spec, client):
    grid = {"name": "lr", "spec": spec, "method": "grid", "space": {"optimizer.lr": [0.5, 0.05]}}
    sweep_id = cli("sweep", "--project", "search", "-", input=json.dumps(grid)).stdout.strip()
    made = client.sweep(sweep_id)
    assert made["project"] == "search" and {run["project"] for run in made["runs"]} == {"search"}
    in_spec = {**grid, "spec": spec | {"project": "base"}}
    other = client.sweep(cli("sweep", "-", input=json.dumps(in_spec), TRAINYARD_PROJECT="search").stdout.strip())
    assert other["project"] == "base"


def test_runs_and_sweeps_list_a_projects_own(cli, spec, client):
    vision = [client.submit(spec | {"project": "vision"})["id"] for _ in range(2)]
    client.submit(spec)
    grid = {"name": "lr", "spec": spec, "method": "grid", "space": {"optimizer.lr": [0.5, 0.05]}}
    searched = client.create_sweep(grid | {"project": "search"})
    client.create_sweep(grid)
    assert _ids(cli("runs", "--project", "vision")) == sorted(vision)
    assert _ids(cli("runs", TRAINYARD_PROJECT="vision")) == sorted(vision)
    assert len(_ids(cli("runs"))) == 7
    assert _ids(cli("sweeps", "--project", "search")) == [searched["id"]]
    assert len(_ids(cli("sweeps"))) == 2
    assert ["project", "vision"] in [line.split() for line in cli("show", vision[0]).stdout.splitlines()]


def test_projects_lists_them_with_their_runs(cli, spec, client):
    client.submit(spec | {"project": "vision"})
    client.submit(spec | {"project": "vision"})
    client.submit(spec)
    lines = cli("projects").stdout.splitlines()
    assert lines[0].split()[:3] == ["project", "runs", "by"]
    assert [line.split()[:2] for line in lines[1:]] == [["default", "1"], ["vision", "2"]]
    assert "2 queued" in lines[2]
