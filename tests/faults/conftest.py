"""The fault suite's summary table, printed at the end of every run that loaded it."""

from __future__ import annotations

import pytest

from tests.faults import checker


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not checker.ROWS and not checker.BAD_INPUT_ROWS:
        return
    terminalreporter.write_sep("=", "fault suite: owed events and bad inputs")
    for line in checker.summary_lines():
        terminalreporter.write_line(line)
