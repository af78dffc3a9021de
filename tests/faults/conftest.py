"""Fault drills run against the real broker with the shared fixtures of `tests/conftest.py`."""

from typing import Any

from tests.faults.load import REPORTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Every drill's figures (lost, doubled, recovery) in the CI log, passed or failed."""
    if REPORTS:
        terminalreporter.section("fault drills")
        for line in REPORTS:
            terminalreporter.write_line(line)
