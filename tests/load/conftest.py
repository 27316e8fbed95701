"""The load tests' report: what they measured, printed in the terminal summary so CI's log shows it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

#: Lines the load tests want shown at the end of the run.
SUMMARY = pytest.StashKey[list[str]]()


@pytest.fixture
def summary(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``summary(line)``: show ``line`` in the terminal summary's "API load" section (whatever the outcome)."""
    return request.config.stash.setdefault(SUMMARY, []).append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(SUMMARY, [])
    if lines:
        terminalreporter.section("API load: p50 and p99 (tests/load)")
        for line in lines:
            terminalreporter.write_line(line)
