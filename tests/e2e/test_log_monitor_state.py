"""`numbind log monitor --state`: a monitor that keeps its last verified checkpoint and
replay proves and replays only the leaves added since, and its rules still span runs (an
outcome logged now is checked against an order replayed in an earlier run)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from numbind.registry.testing import RunningRegistry
from numbind.sdk import AckOutcome, PlatformClient
from numbind.sdk.log import LogClient

from tests.e2e._cli import cli
from tests.e2e._log import report_more, seed

# The leaf indices each LogClient.prove call asked for, since the last monitor run began.
PROVED: list[list[int]] = []


async def _monitor(capsys: pytest.CaptureFixture[str], reg: RunningRegistry, state: Path) -> Any:
    PROVED.clear()  # the SDK's own proofs (reports, acks) are not the monitor's
    rc, out, err = await cli(
        capsys, "log", "monitor", "--bundle", reg.admin_bundle.directory, "--state", state, "--json"
    )
    assert rc == 0, out + err
    return json.loads(out)


async def test_a_monitor_with_state_replays_only_new_leaves(
    registry_any_store: RunningRegistry,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reg = registry_any_store
    proved = PROVED
    prove = LogClient.prove

    async def recording(self: LogClient, indices: Sequence[int], **kw: Any) -> Any:
        proved.append(list(indices))
        return await prove(self, indices, **kw)

    monkeypatch.setattr(LogClient, "prove", recording)
    state = tmp_path / "monitor.json"
    cm, platforms, _ = await seed(reg)
    first = await _monitor(capsys, reg, state)
    size = first["tree_size"]
    assert first["ok"] and first["replayed"] == size and proved == [list(range(size))]
    assert state.stat().st_mode & 0o077 == 0

    await report_more(cm, 3)
    second = await _monitor(capsys, reg, state)
    assert second["ok"] and second["tree_size"] == size + 3
    assert second["replayed"] == 3 and proved[-1] == [size, size + 1, size + 2]

    # Outcomes logged now name orders replayed in the first run: the state carries them.
    for bundle in platforms:
        async with PlatformClient(bundle) as client:
            async for event in client.events(follow=False):
                await event.ack(AckOutcome.UNBOUND)
    third = await _monitor(capsys, reg, state)
    assert third["ok"] and third["replayed"] == third["tree_size"] - size - 3 >= 3
    assert proved == [list(range(size + 3, third["tree_size"]))]
    assert third["by_type"]["ack"] == 3 and third["by_type"]["order"] == 3
    # Nothing new: nothing proved, the rules still hold.
    fourth = await _monitor(capsys, reg, state)
    assert fourth["ok"] and fourth["replayed"] == 0 and proved == []
    # The same verdict as a replay of every leaf.
    rc, out, _ = await cli(
        capsys, "log", "monitor", "--bundle", reg.admin_bundle.directory, "--json"
    )
    full = json.loads(out)
    assert rc == 0 and full["by_type"] == fourth["by_type"] and full["opened"] == fourth["opened"]


async def test_a_state_file_that_is_not_one_is_refused_in_one_line(
    registry: RunningRegistry, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "monitor.json"
    state.write_text('{"audit": {}, "monitor": {}}\n')
    rc, out, err = await cli(
        capsys, "log", "monitor", "--bundle", registry.admin_bundle.directory, "--state", state
    )
    assert rc != 0 and out == "" and "not a log monitor state" in err, err
