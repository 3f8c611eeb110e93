"""`make bench` on a new machine: the PostgreSQL benches' database is created when the
server answers and it is missing (bench._pgfloor.reachable), and a server that does not
answer is a reason to skip, said in one line."""

from __future__ import annotations

import os

import psycopg
import pytest
from sqlalchemy import make_url

from bench._pgfloor import reachable
from tests.conftest import require_postgres


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    server = make_url(url).set(database="postgres", drivername="postgresql")
    return psycopg.connect(server.render_as_string(hide_password=False), autocommit=True)


def test_a_missing_bench_database_is_created() -> None:
    url = make_url(require_postgres()).set(database=f"numbind_bench_new_{os.getpid()}")
    named = url.render_as_string(hide_password=False)
    with _admin(named) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{url.database}"')
    try:
        assert reachable(named) is None
        with _admin(named) as admin:
            found = admin.execute(
                "SELECT count(*) FROM pg_database WHERE datname = %s", (url.database,)
            ).fetchone()
        assert found == (1,)
        assert reachable(named) is None  # there already: nothing to do
    finally:
        with _admin(named) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{url.database}"')


def test_a_server_that_does_not_answer_is_a_reason_to_skip() -> None:
    why = reachable("postgresql+psycopg://postgres@127.0.0.1:1/numbind_bench")
    assert why is not None and "\n" not in why


def test_the_reissue_bench_says_why_when_postgresql_does_not_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before, `bench.reissue --database-url` dropped the schema first and ended in a
    traceback when the server was down or the database missing."""
    from bench import reissue

    url = "postgresql+psycopg://postgres@127.0.0.1:1/numbind_bench"
    assert reissue.main(["--quick", "--database-url", url]) == 2
    said = capsys.readouterr().out
    assert f"PostgreSQL unreachable at {url}" in said
