"""A malicious publisher, as akd's tests publish corrupted epochs: the registry (its log
tables rewritten behind its back, or its log key swapped) serves a log that (a) rewrote a
leaf, (b) dropped one, (c) rolled back, (d) shows two clients two views, (e) is signed by
a key nobody pinned. The witness refuses to cosign, names the failure and keeps the
evidence (reported by `federation show`); `numbind log audit` exits 1 naming it too."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from numbind.protocol import note
from numbind.protocol.bundle import Bundle
from numbind.protocol.log_audit import LogFailure
from numbind.registry.federation.witness import GrpcLogSource, Witness
from numbind.registry.log_key import load_or_create_witness
from numbind.registry.storage.models import WitnessAlarmRow
from numbind.registry.testing import RunningRegistry, running_registry
from numbind.sdk.channel import secure_channel
from sqlalchemy import select

from tests.e2e._cli import cli
from tests.e2e._log import (
    drop_checkpoints_at_or_above,
    report_more,
    seed,
    tamper,
    witness_for,
)

FORGED = hashlib.sha256(b"a leaf the registry never logged").digest()


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningRegistry]:
    member = load_or_create_witness(tmp_path / "member")
    async with running_registry(tmp_path / "hub", log_witnesses=member.verifier.vkey()) as reg:
        yield reg


async def _round(reg: RunningRegistry, witness: Witness) -> None:
    async with secure_channel(reg.admin_bundle) as channel:
        await witness.witness(GrpcLogSource(channel))


async def _size(reg: RunningRegistry) -> int:
    size, _ = await reg.registry.log.checkpoint()
    return size


async def _attack(
    name: str,
    reg: RunningRegistry,
    cm: Bundle,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    size = await _size(reg)
    if name == "rewrite":  # (a) leaf 1 replaced, the log then grows as usual
        tamper(reg, lambda leaves: [leaves[0], FORGED, *leaves[2:]], keep_size=size)
        await report_more(cm, 2)
    elif name == "drop":  # (b) leaf 2 dropped, later leaves shifted down, then growth
        tamper(reg, lambda leaves: leaves[:2] + leaves[3:], keep_size=size)
        await report_more(cm, 2)
    elif name == "rollback":  # (c) back to the tree of 3 leaves, newer checkpoints gone
        tamper(reg, lambda leaves: leaves[:3], keep_size=3)
    elif name == "split-view":  # (d) same size, another history, for whoever asks next
        tamper(reg, lambda leaves: [leaves[0], FORGED, *leaves[2:]], keep_size=size - 1)
        # Client B meets the registry only now: its first audit accepts what it is shown.
        rc, _, err = await cli(
            capsys, "log", "audit", "--bundle", cm.directory, "--state", tmp_path / "b.json"
        )
        assert rc == 0, err
    elif name == "unknown-key":  # (e) checkpoints signed by a key nobody pinned
        reg.registry.log._signer = note.Ed25519Signer.generate(reg.registry.log.origin)
        drop_checkpoints_at_or_above(reg, 0)


# What each attack is named by the witness and by `log audit`.
ATTACKS = {
    "rewrite": "rewrite",
    "drop": "rewrite",
    "rollback": "rollback",
    "split-view": "fork",
    "unknown-key": "unknown-key",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_a_corrupted_log_is_refused_by_the_witness_and_by_audit(
    hub: RunningRegistry, attack: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    failure = ATTACKS[attack]
    cm, _, _ = await seed(hub)
    witness = witness_for(hub, tmp_path / "member")
    await _round(hub, witness)  # the honest log: cosigned
    state_a = tmp_path / "a.json"
    rc, out, err = await cli(capsys, "log", "audit", "--bundle", cm.directory, "--state", state_a)
    assert rc == 0 and "first audit" in out, err
    rc, out, err = await cli(capsys, "log", "checkpoint", "--bundle", cm.directory, "--json")
    assert [c["witness"] for c in json.loads(out)["cosignatures"]] == ["numbind.local/witness/self"]
    honest = state_a.read_bytes()

    await _attack(attack, hub, cm, capsys, tmp_path)

    # The witness refuses, names it, and keeps both checkpoints and the proof.
    with pytest.raises(LogFailure) as refused:
        await _round(hub, witness)
    assert refused.value.failure == failure
    alarm = witness._db.transact(
        lambda s: s.execute(select(WitnessAlarmRow)).scalar_one(), write=False
    )
    assert alarm.failure == failure and alarm.old_note and alarm.new_note
    assert alarm.old_note != alarm.new_note
    rc, out, err = await cli(
        capsys, "federation", "show", "--data-dir", tmp_path / "member", "--json"
    )
    assert rc == 0 and [a["failure"] for a in json.loads(out)["log_alarms"]] == [failure]

    # `log audit` from the honest state exits 1 naming the same failure; the state file
    # keeps the last good checkpoint.
    if attack == "split-view":  # client B compares notes with client A (gossip)
        argv = ["--state", tmp_path / "b.json", "--compare", state_a]
    else:
        argv = ["--state", state_a]
    rc, out, err = await cli(capsys, "log", "audit", "--bundle", cm.directory, *argv)
    assert rc == 1 and f"log {failure}:" in err, err
    assert state_a.read_bytes() == honest


async def test_an_honest_log_stays_cosigned_and_audited_as_it_grows(
    hub: RunningRegistry, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cm, _, _ = await seed(hub)
    witness = witness_for(hub, tmp_path / "member")
    state = tmp_path / "a.json"
    for more in (0, 1, 5, 0):
        if more:
            await report_more(cm, more, start=await _size(hub))
        await _round(hub, witness)
        rc, out, err = await cli(capsys, "log", "audit", "--bundle", cm.directory, "--state", state)
        assert rc == 0 and "ok: checkpoint" in out, err
    assert await witness.alarms() == []
