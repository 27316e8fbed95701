"""The files in ``examples/`` are what the README says they are: valid job specs, and a valid sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainyard.service.sweeps import SweepRequest, expand
from trainyard.trainer import TrainSpec

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda path: path.name)
def test_example_is_a_valid_spec_or_sweep(path):
    body = json.loads(path.read_text())
    if path.name.startswith("sweep-"):
        specs = expand(SweepRequest.model_validate(body))
        assert len(specs) == 9 and len({(s.optimizer.lr, s.model.hidden[0].units) for s in specs}) == 9
    else:
        assert TrainSpec.model_validate(body).epochs >= 1
