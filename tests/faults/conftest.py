"""The fault suite's own PostgreSQL cluster. Its summary table is printed by
tests/conftest.py (which gathers the rows from xdist workers too)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults._procs import IN_CI, PgCluster, pg_bin


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
