"""What many tests make: job specs, and a PostgreSQL database of a test's own.

``XOR`` is the spec most tests train or store (it trains in milliseconds);
``xor(**changes)`` is a fresh copy with top-level keys changed, and
``stored(spec)`` the spec as the API stores it (validated, every default
filled in).  ``DIGITS`` trains for about a second with held-out data,
``DIVERGES`` fails with a diverged loss.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, text

from trainyard.trainer import TrainSpec

XOR: dict[str, Any] = {
    "name": "xor",
    "dataset": {"name": "xor"},
    "model": {"type": "mlp", "hidden": [{"units": 8, "activation": "tanh"}]},
    "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9},
    "epochs": 200,
    "batch_size": 4,
    "seed": 3,
}

#: Digits: 2 to 7 ms an epoch on an idle core, by machine; held-out data, so validation metrics too.
DIGITS: dict[str, Any] = {
    "name": "digits",
    "dataset": {"name": "digits", "test_fraction": 0.2},
    "model": {"type": "mlp", "hidden": [{"units": 32, "activation": "relu"}]},
    "optimizer": {"name": "adam", "lr": 0.01},
    "epochs": 400,
    "batch_size": 64,
    "seed": 1,
}

#: Full-batch SGD far too fast for a regression: diverges after a few epochs (at epoch 9 with seed 0).
DIVERGES: dict[str, Any] = {
    "name": "diverges",
    "dataset": {"name": "sine"},
    "model": {"type": "mlp", "hidden": [{"units": 8, "activation": "relu"}]},
    "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9},
    "epochs": 200,
    "batch_size": None,
    "seed": 0,
}


def spec_of(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``base`` with these top-level keys changed."""
    return copy.deepcopy(base) | changes


def xor(**changes: Any) -> dict[str, Any]:
    """A copy of :data:`XOR` with these top-level keys changed."""
    return spec_of(XOR, **changes)


def stored(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` as the API stores it: validated, with every default written out."""
    return TrainSpec.model_validate(spec).model_dump(mode="json")


@contextmanager
def postgres_database(admin: Engine, *, template: str | None = None, options: str = "") -> Iterator[str]:
    """The URL of a database made for the caller alone on ``admin``'s server (empty, or a copy of the database
    ``template``, which nobody may be connected to; ``options`` of CREATE DATABASE such as a locale), dropped
    (connections and all) on exit."""
    name = f"trainyard_t_{secrets.token_hex(6)}"
    copy = "" if template is None else f' TEMPLATE "{template}"'
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"{copy} {options}'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
