"""Machine-readable figures of the benchmark scripts, for ``benchmarks/report.py``.

Every script takes ``--record FILE`` and, with it, appends one JSON line per
figure it measured (besides printing its own table)::

    {"benchmark": "compare latency", "figure": "GET /api/compare, 50 runs x 5,000 epochs", "unit": "ms",
     "ours": 212.0, "reference": "target", "reference_value": 300.0, "ratio": 0.71, "target": "<= 300 ms",
     "met": true}
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--record FILE`` to a benchmark's arguments."""
    parser.add_argument("--record", metavar="FILE", help="append the figures as JSON lines (benchmarks/report.py)")


def record(path: str | None, **figure: Any) -> None:
    """Append one figure to ``path`` (nothing when None)."""
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(json.dumps(figure) + "\n")
