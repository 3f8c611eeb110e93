"""kill -9 during the store re-key of 200,000 bindings, on SQLite
(the scenario: tests/e2e/_rekey_crash.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e._rekey_crash import scenario

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_kill_9_during_the_rekey_of_200k_bindings(tmp_path: Path, database_url: str) -> None:
    await scenario(tmp_path, database_url)
