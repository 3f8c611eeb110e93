"""The fault suite's summary table (printed at the end of every run that loaded it) and
its own PostgreSQL cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults import checker
from tests.faults._procs import IN_CI, PgCluster, pg_bin


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not checker.ROWS and not checker.BAD_INPUT_ROWS:
        return
    terminalreporter.write_sep("=", "fault suite: owed events and bad inputs")
    for line in checker.summary_lines():
        terminalreporter.write_line(line)


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A running cluster of our own; skipped locally (failed under CI) without PostgreSQL."""
    bindir = pg_bin()
    if bindir is None:
        if IN_CI:
            pytest.fail("CI=true but no initdb/pg_ctl of PostgreSQL on this machine")
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    cluster = PgCluster(bindir)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
