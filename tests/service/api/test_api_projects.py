"""Projects in the API: a run's from its spec, a sweep's for all its runs, ``?project=`` on the lists of runs and
sweeps, and ``GET /api/projects`` with runs counted by status."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from trainyard.service.context import EXTENSION
from trainyard.service.storage.models import Run


@pytest.fixture
def grid(spec) -> dict:
    return {"name": "lr", "spec": spec, "method": "grid", "space": {"optimizer.lr": [0.5, 0.1]}}


def _names(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    return sorted(item["name"] for item in body.get("runs", body.get("sweeps", [])))


def test_a_run_is_in_its_specs_project_or_in_default(api, spec):
    plain = api.create_run(spec)
    filed = api.create_run(spec | {"name": "filed", "project": "vision"})
    assert (plain["project"], plain["spec"]["project"]) == ("default", "default")
    assert (filed["project"], filed["spec"]["project"]) == ("vision", "vision")
    assert "project" not in filed["defaults"]
    assert api.get(f"/api/runs/{filed['id']}").get_json()["project"] == "vision"


def test_a_bad_project_is_refused_naming_the_field(api, spec, run_count, assert_error):
    for project in ("", " ", "p" * 201, 7):
        assert_error(api.post("/api/runs", json=spec | {"project": project}), 422, field="project")
    assert run_count() == 0


def test_the_runs_list_filters_by_project(api, reader, spec, assert_error):
    for name, project in (("a", "vision"), ("b", "vision"), ("c", "audio"), ("d", None)):
        api.create_run(spec | {"name": name} | ({"project": project} if project else {}))
    assert _names(reader.get("/api/runs?project=vision")) == ["a", "b"]
    assert _names(reader.get("/api/runs?project=default")) == ["d"]
    assert _names(reader.get("/api/runs?project=nothing")) == []
    assert _names(reader.get("/api/runs?project=vision&q=b")) == ["b"]
    assert _names(reader.get("/api/runs")) == ["a", "b", "c", "d"]
    assert_error(reader.get("/api/runs?project="), 400, field="project")


def test_a_sweeps_project_applies_to_all_its_runs(api, reader, grid):
    made = api.post("/api/sweeps", json=grid | {"project": "search"}).get_json()
    assert made["project"] == "search"
    assert [run["project"] for run in made["runs"]] == ["search", "search"]
    assert all(run["spec"]["project"] == "search" for run in made["runs"])
    assert made["spec"] == grid["spec"]  # the base spec is kept as it was sent
    listed = reader.get("/api/runs?project=search").get_json()["runs"]
    assert sorted(run["id"] for run in listed) == sorted(run["id"] for run in made["runs"])


def test_a_sweep_without_a_project_takes_its_base_specs(api, grid):
    from_spec = api.post("/api/sweeps", json=grid | {"spec": grid["spec"] | {"project": "base"}}).get_json()
    plain = api.post("/api/sweeps", json=grid).get_json()
    assert [from_spec["project"], *(run["project"] for run in from_spec["runs"])] == ["base"] * 3
    assert [plain["project"], *(run["project"] for run in plain["runs"])] == ["default"] * 3
    same = api.post("/api/sweeps", json=grid | {"project": "base", "spec": grid["spec"] | {"project": "base"}})
    assert same.status_code == 201 and same.get_json()["project"] == "base"


@pytest.mark.parametrize("change, field", [
    ({"project": "one", "spec_project": "two"}, "project"),
    ({"space": {"project": ["a", "b"]}}, "space.project"),
    ({"project": ""}, "project"),
    ({"spec_project": ""}, "spec.project"),
])
def test_a_sweep_is_in_one_project(api, grid, change, field, run_count, assert_error):
    body = grid | {key: value for key, value in change.items() if key != "spec_project"}
    if "spec_project" in change:
        body["spec"] = grid["spec"] | {"project": change["spec_project"]}
    assert_error(api.post("/api/sweeps", json=body), 422, field=field)
    assert run_count() == 0


def test_the_sweeps_list_filters_by_project(api, reader, grid, assert_error):
    api.post("/api/sweeps", json=grid | {"name": "s1", "project": "search"})
    api.post("/api/sweeps", json=grid | {"name": "s2", "project": "search"})
    api.post("/api/sweeps", json=grid | {"name": "s3"})
    assert _names(reader.get("/api/sweeps?project=search")) == ["s1", "s2"]
    assert _names(reader.get("/api/sweeps?project=default")) == ["s3"]
    first = reader.get("/api/sweeps?project=search&limit=1").get_json()
    rest = reader.get(f"/api/sweeps?project=search&limit=1&cursor={first['next']}").get_json()
    assert [s["name"] for s in first["sweeps"] + rest["sweeps"]] == ["s2", "s1"] and rest["next"] is None
    assert_error(reader.get("/api/sweeps?project=" + "p" * 201), 400, field="project")


def test_projects_are_listed_with_their_runs_counted_by_status(api, reader, spec, grid, Session):
    vision = [api.create_run(spec | {"project": "vision"}) for _ in range(3)]
    api.create_run(spec)
    api.post("/api/sweeps", json=grid | {"project": "search"})
    api.post(f"/api/runs/{vision[0]['id']}/cancel")
    response = reader.get("/api/projects")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["next"] is None
    assert [(p["name"], p["runs"], p["sweeps"]) for p in body["projects"]] == [
        ("default", 1, 0), ("search", 2, 1), ("vision", 3, 0)]
    shown = body["projects"][2]
    assert shown["counts"] == {"queued": 2, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 1}
    with Session() as s:
        latest = max(s.get(Run, run["id"]).updated_at for run in vision)
    assert shown["last_activity"] == latest.isoformat().replace("+00:00", "Z")


def test_the_projects_list_pages_and_reads_no_run(api, reader, spec, app, assert_error):
    for name in ("c", "a", "b"):
        api.create_run(spec | {"project": name})
    statements: list[str] = []
    event.listen(app.extensions[EXTENSION].engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    first = reader.get("/api/projects?limit=2").get_json()
    rest = reader.get(f"/api/projects?limit=2&cursor={first['next']}").get_json()
    assert [p["name"] for p in first["projects"]] == ["a", "b"]
    assert [p["name"] for p in rest["projects"]] == ["c"] and rest["next"] is None
    assert statements and not any("runs.spec" in statement for statement in statements)
    assert_error(reader.get("/api/projects?cursor=nope"), 400, field="cursor")
    assert_error(reader.get("/api/projects?limit=501"), 400, field="limit")
    assert_error(reader.get("/api/projects?sort=name"), 400)


def test_listing_projects_needs_a_token(client):
    assert client.get("/api/projects").status_code == 401


def test_a_comparison_does_not_count_the_project_as_a_parameter(api, reader, spec):
    """Like name and tags, a project describes a run: two runs alike but for it have no parameter that differs."""
    ids = [api.create_run(spec | {"project": project})["id"] for project in ("vision", "audio")]
    compared = reader.get(f"/api/compare?runs={','.join(ids)}").get_json()
    assert compared["params"]["differ"] == {}
    assert not any(path == "project" or path.startswith("project.") for path in compared["params"]["same"])
