"""Hostile and extreme input through the API under gunicorn, while workers train other runs.

A diverging run fails with its message; a spec at every limit is accepted and
one past it refused (422 naming the field, nothing written); uploads that are
not CSV, too large or malformed are refused.  None of it may disturb the runs
already training: they end exactly as an undisturbed ``fit`` would, and no
worker process dies.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
from factories import DIGITS, DIVERGES, XOR, spec_of
from worker_kit import (
    Stack,
    assert_bit_identical_to_fit,
    assert_one_row_per_epoch,
    wait_for,
)

from trainyard.service.storage import repo
from trainyard.trainer.spec import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_HIDDEN_LAYERS,
    MAX_NAME_LENGTH,
    MAX_NOTES_LENGTH,
    MAX_PARAMETERS,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_UNITS,
    count_parameters,
)


def hidden(*units: int) -> dict[str, Any]:
    return {"type": "mlp", "hidden": [{"units": n, "activation": "tanh"} for n in units]}


def widest_second_layer() -> int:
    """The most units a second layer of 4096 can have on XOR (2 inputs, 1 output) within the parameter limit."""
    units = 1
    while count_parameters([2, MAX_UNITS, units + 1, 1]) <= MAX_PARAMETERS:
        units += 1
    return units


WIDEST = widest_second_layer()

#: (what, the change at the limit, the change one past it, the field the refusal names).
LIMITS: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("hidden layers", {"model": hidden(*[2] * MAX_HIDDEN_LAYERS)}, {"model": hidden(*[2] * (MAX_HIDDEN_LAYERS + 1))},
     "model.hidden"),
    ("units", {"model": hidden(MAX_UNITS)}, {"model": hidden(MAX_UNITS + 1)}, "model.hidden.0.units"),
    ("parameters", {"model": hidden(MAX_UNITS, WIDEST)}, {"model": hidden(MAX_UNITS, WIDEST + 1)}, "model.hidden"),
    ("epochs", {"epochs": MAX_EPOCHS}, {"epochs": MAX_EPOCHS + 1}, "epochs"),
    ("batch size", {"batch_size": MAX_BATCH_SIZE}, {"batch_size": MAX_BATCH_SIZE + 1}, "batch_size"),
    ("name", {"name": "n" * MAX_NAME_LENGTH}, {"name": "n" * (MAX_NAME_LENGTH + 1)}, "name"),
    ("tags", {"tags": [f"t{i}" for i in range(MAX_TAGS)]}, {"tags": [f"t{i}" for i in range(MAX_TAGS + 1)]}, "tags"),
    ("tag length", {"tags": ["t" * MAX_TAG_LENGTH]}, {"tags": ["t" * (MAX_TAG_LENGTH + 1)]}, "tags.0"),
    ("notes", {"notes": "n" * MAX_NOTES_LENGTH}, {"notes": "n" * (MAX_NOTES_LENGTH + 1)}, "notes"),
]

#: (what, file name, content, status, the field the refusal names).
BAD_UPLOADS: list[tuple[str, str, bytes, int, str]] = [
    ("a PNG image", "plot.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), 422, "file"),
    ("invalid UTF-8", "latin1.csv", "x,y,target\n1,2,caf\u00e9\n".encode("latin-1"), 422, "file"),
    ("larger than 16 MiB", "big.csv", b"x,target\n" + b"1.0,0\n" * (3 * 1024 * 1024), 413, "file"),
    ("a ragged row", "ragged.csv", b"x,y,target\n1,2,0\n3,1\n4,5,1\n", 422, "file"),
    ("a non-numeric cell", "cells.csv", b"x,y,target\n1,2,0\n3,abc,1\n4,5,1\n", 422, "file"),
    ("no header", "empty.csv", b"", 422, "file"),
]


def test_hostile_input_is_refused_and_disturbs_no_run(shared_stack: Stack, start_api):
    stack = shared_stack
    with stack.Session() as s, s.begin():
        token, _ = repo.create_token(session=s, scope="write", name="hostile")
    first, second = stack.start_worker(), stack.start_worker()
    api = start_api(stack)
    api.wait_ready()
    http = api.client(token)

    def post_run(spec: dict[str, Any]) -> httpx.Response:
        return http.post("/api/runs", json=spec)

    # Two runs training while everything below happens.
    bystanders = [spec_of(DIGITS, name=f"bystander-{seed}", seed=seed, epochs=400) for seed in (1, 2)]
    bystander_ids = [post_run(spec).json()["id"] for spec in bystanders]
    wait_for(lambda: all(stack.run(run_id).epochs_done for run_id in bystander_ids), 30, "the bystanders to train")

    # At every limit: accepted (then cancelled, so no worker spends minutes on it); one past: refused, nothing written.
    accepted = []
    for what, at_limit, past_limit, field in LIMITS:
        response = post_run({**copy.deepcopy(XOR), **at_limit})
        assert response.status_code == 201, (what, response.json())
        accepted.append(response.json()["id"])
        assert http.post(f"/api/runs/{accepted[-1]}/cancel").status_code in (200, 202)
        response = post_run({**copy.deepcopy(XOR), **past_limit})
        assert response.status_code == 422, (what, response.json())
        assert [f["field"] for f in response.json()["error"]["fields"]] == [field], what
    assert len(http.get("/api/runs", params={"limit": 500}).json()["runs"]) == len(bystander_ids) + len(accepted)

    diverging_id = post_run(DIVERGES).json()["id"]

    for what, filename, content, status, field in BAD_UPLOADS:
        response = http.post("/api/datasets", files={"file": (filename, content, "text/csv")})
        assert response.status_code == status, (what, response.text[:300])
        assert [f["field"] for f in response.json()["error"]["fields"]] == [field], what
    assert http.get("/api/datasets").json()["uploads"] == []

    # Every run ends as it should; no worker died on the way.
    for run_id in [*bystander_ids, diverging_id, *accepted]:
        stack.wait_finished(run_id, timeout=120)
    diverged = stack.run(diverging_id)
    assert diverged.status == "failed" and "diverged at epoch 9" in diverged.error
    assert {stack.run(run_id).status for run_id in accepted} == {"cancelled"}
    for run_id, spec in zip(bystander_ids, bystanders):
        run = stack.run(run_id)
        assert (run.status, run.error, run.attempts) == ("succeeded", None, 1)
        assert_one_row_per_epoch(stack, run_id, 400)
        assert_bit_identical_to_fit(stack, run_id, spec)
    assert first.process.poll() is None and second.process.poll() is None

