"""The fault-injection suite: real anvil, Redis, audit writer and ``vcgate serve`` processes.

Each test states its bounds (time to fail closed, time to recover) as constants and records
what it measured; the numbers are printed at the end of the run (terminal summary).
"""

from __future__ import annotations

import pytest

_TIMINGS = pytest.StashKey[list[tuple[str, str, float]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TIMINGS] = []


@pytest.fixture
def timing(request: pytest.FixtureRequest):
    """``timing("fail closed", seconds)``: kept for the summary under the test's id."""
    found = request.config.stash[_TIMINGS]

    def record(what: str, seconds: float) -> None:
        found.append((request.node.name, what, seconds))

    return record


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    found = config.stash.get(_TIMINGS, [])
    if found:
        terminalreporter.section("fault timings (seconds)")
        for test, what, seconds in found:
            terminalreporter.write_line(f"{test:60s} {what:24s} {seconds:7.2f}")
