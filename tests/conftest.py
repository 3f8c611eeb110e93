"""Shared fixtures. Storage-backed tests run on SQLite always and on PostgreSQL when
NUMBIND_TEST_DATABASE_URL is set; under CI=true a missing PostgreSQL is a failure.

`make test` runs the suite in pytest-xdist workers (`-n 2`). Each worker has a PostgreSQL
database of its own, NUMBIND_TEST_DATABASE_URL's name plus the worker's (`test_gw0`,
`test_gw1`), created on first use beside it: tests wipe their database, so two workers
never share one. The fault suite's summary table is gathered from the workers and printed
once, here, at the end of the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from numbind.registry.testing import RunningRegistry, running_registry
from sqlalchemy import create_engine, make_url, text

from tests.faults import checker

IN_CI = os.environ.get("CI", "").lower() == "true"

# Every PostgreSQL store the tests build (storage tests, registries in-process and as
# child processes) gets 4 hash partitions per growing table instead of the default 16: the
# same schema and routing by token at a quarter of the DDL, which is most of a migration's
# time. tests/storage/test_migrations.py checks the default 16 and the --partitions
# parameter with this variable unset and set otherwise.
os.environ.setdefault("NUMBIND_PARTITIONS", "4")


def worker_database_url(url: str, worker: str) -> str:
    """`url` with the xdist worker's name appended to its database name (as it is without
    a worker)."""
    if not url or not worker:
        return url
    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}_{worker}").render_as_string(hide_password=False)


SHARED_PG_URL = os.environ.get("NUMBIND_TEST_DATABASE_URL", "")
PG_URL = worker_database_url(SHARED_PG_URL, os.environ.get("PYTEST_XDIST_WORKER", ""))
_created: set[str] = set()


def _ensure_database(url: str) -> None:
    """Create a worker's database beside the shared one (once per process)."""
    if url == SHARED_PG_URL or url in _created:
        return
    name = make_url(url).database
    engine = create_engine(SHARED_PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if found is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    _created.add(url)


def reset_postgres(url: str) -> None:
    _ensure_database(url)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def require_postgres() -> str:
    """The test PostgreSQL database, wiped; a skip without one (a failure under CI=true)."""
    if not PG_URL:
        if IN_CI:
            pytest.fail("CI=true but NUMBIND_TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL: set NUMBIND_TEST_DATABASE_URL to run")
    reset_postgres(PG_URL)
    return PG_URL


def _backends() -> list[object]:
    pg = pytest.param("postgresql", marks=pytest.mark.postgres, id="postgresql")
    return ["sqlite", pg]


@pytest.fixture(params=_backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: SQLite file, or the test PostgreSQL database wiped."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    if not PG_URL:
        if IN_CI:
            pytest.fail("CI=true but NUMBIND_TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL: set NUMBIND_TEST_DATABASE_URL to run")
    try:
        reset_postgres(PG_URL)
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL unreachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    yield PG_URL


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[RunningRegistry]:
    """A real registry on a loopback port, embedded SQLite store."""
    async with running_registry(tmp_path / "data") as reg:
        yield reg


@pytest.fixture
async def registry_any_store(tmp_path: Path, database_url: str) -> AsyncIterator[RunningRegistry]:
    """The same, once per storage backend."""
    async with running_registry(tmp_path / "data", database_url=database_url) as reg:
        yield reg


# -- scheduling ------------------------------------------------------------------------------
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with a test marked `slow` run first (in collection order), then the rest.
    `make test`'s xdist workers take a file at a time in this order, so the long files
    (the re-key crash, 50-120 s a case) start early and the short ones fill in at the end:
    a long file taken last would keep one worker busy while the other had nothing left.
    Measured, it changed little: the suite is balanced already (1,686 s of setup, calls and
    teardowns over two workers, 903 s of wall time, in one run after this change)."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


# -- the fault suite's summary table, gathered from xdist workers -----------------------------
def _rows() -> dict[str, list[dict[str, object]]]:
    return {
        "rows": [vars(r) for r in checker.ROWS],
        "bad": [
            {**vars(b), "by_status": [list(x) for x in b.by_status]} for b in checker.BAD_INPUT_ROWS
        ],
    }


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the rows to the controller
        workeroutput["fault_suite"] = json.dumps(_rows())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """xdist's controller: take a finished worker's fault-suite rows."""
    output = getattr(node, "workeroutput", {}).get("fault_suite")
    if not output:
        return
    got = json.loads(output)
    for r in got["rows"]:
        checker.record(checker.FaultRow(**r))
    for b in got["bad"]:
        statuses = {name: n for name, n in b["by_status"]}
        checker.record_bad_inputs(b["case"], b["sent"], statuses)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not checker.ROWS and not checker.BAD_INPUT_ROWS:
        return
    terminalreporter.write_sep("=", "fault suite: owed events and bad inputs")
    for line in checker.summary_lines():
        terminalreporter.write_line(line)
