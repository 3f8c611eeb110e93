"""`make test` runs in pytest-xdist workers: the fault suite's summary table must still be
printed, once, with the rows every worker recorded (two workers here, each recording rows
named after itself); and each worker has a PostgreSQL database of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import worker_database_url

ROOT = Path(__file__).resolve().parents[2]

# Every worker runs both tests (--dist each) and names its rows after itself, so the table
# can only hold both workers' rows if the controller gathered them from each.
TINY = """
import os

from tests.faults import checker

WORKER = os.environ["PYTEST_XDIST_WORKER"]


def test_one_case() -> None:
    checker.record(checker.classify(f"xdist case {WORKER}", ["a", "b"], ["a", "b", "b"]))


def test_a_fuzz_tally() -> None:
    checker.record_bad_inputs(f"xdist fuzz {WORKER}", 3, {"INVALID_ARGUMENT": 2, "NOT_FOUND": 1})
"""


def test_the_summary_table_gathers_rows_from_every_worker(tmp_path: Path) -> None:
    ini, tiny = tmp_path / "pytest.ini", tmp_path / "test_tiny.py"
    ini.write_text("[pytest]\n")
    tiny.write_text(TINY)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_XDIST_WORKER", None)
    args = ["-n", "2", "--dist", "each", "-p", "tests.conftest", "-p", "no:cacheprovider"]
    args += ["-c", str(ini)]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--rootdir", str(tmp_path), str(tiny)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert "4 passed" in out, out  # two tests on each of two workers
    assert out.count("fault suite: owed events and bad inputs") == 1, out
    table = out.split("fault suite: owed events and bad inputs", 1)[1]
    for worker in ("gw0", "gw1"):
        case = [line for line in table.splitlines() if line.startswith(f"xdist case {worker}")]
        assert len(case) == 1 and case[0].split()[-5:] == ["2", "2", "1", "0", "0"], table
        fuzz = [line for line in table.splitlines() if f"xdist fuzz {worker}" in line]
        assert len(fuzz) == 1 and "bad inputs 3, INTERNAL/UNKNOWN 0" in fuzz[0], table


def test_each_worker_gets_a_database_of_its_own() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    assert worker_database_url(url, "gw0") == url + "_gw0"
    assert worker_database_url(url, "gw1") == url + "_gw1"
    assert worker_database_url(url, "") == url  # not under xdist: the database named
    assert worker_database_url("", "gw0") == ""  # no PostgreSQL configured
    with_query = "postgresql+psycopg://u:p@h:5433/db?connect_timeout=5"
    assert worker_database_url(with_query, "gw1") == (
        "postgresql+psycopg://u:p@h:5433/db_gw1?connect_timeout=5"
    )
