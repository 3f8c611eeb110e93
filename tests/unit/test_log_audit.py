"""The checks a witness and an auditor run, the entries the log commits to, and the rules a
monitor replays: pure, each failure named."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from numbind.protocol import note
from numbind.protocol.checkpoint import Checkpoint
from numbind.protocol.log_audit import AuditState, LogFailure, check_extension, open_signed, replay
from numbind.protocol.log_entries import EntryError, Opening, canonical, commitment, orders_digest
from numbind.protocol.merkle import CompactRange, MemoryTree, leaf_hash
from numbind.sdk.log_monitor import Monitor, check

ORIGIN = "numbind.local/log"


def tree(n: int, forged: int | None = None) -> MemoryTree:
    return MemoryTree(leaf_hash(b"forged" if i == forged else b"leaf %d" % i) for i in range(n))


def cp(t: MemoryTree, size: int | None = None) -> Checkpoint:
    size = t.size if size is None else size
    return Checkpoint(ORIGIN, size, t.root(size))


@given(st.integers(1, 40), st.integers(0, 40))
def test_an_honest_log_always_extends(old: int, more: int) -> None:
    t = tree(old + more)
    check_extension(cp(t, old), cp(t), t.consistency_proof(old))


@pytest.mark.parametrize(
    ("old", "new", "failure"),
    [
        (cp(tree(8)), cp(tree(5)), "rollback"),
        (cp(tree(8)), cp(tree(8, forged=3)), "fork"),
    ],
)
def test_rollback_and_fork_are_named(old: Checkpoint, new: Checkpoint, failure: str) -> None:
    with pytest.raises(LogFailure) as exc:
        check_extension(old, new, [])
    assert exc.value.failure == failure and failure in exc.value.message


@given(st.integers(2, 30), st.integers(1, 10), st.data())
def test_any_rewritten_old_leaf_is_a_rewrite(old: int, more: int, data: st.DataObject) -> None:
    forged = data.draw(st.integers(0, old - 1))
    honest, bent = tree(old), tree(old + more, forged=forged)
    with pytest.raises(LogFailure) as exc:
        check_extension(cp(honest), cp(bent), bent.consistency_proof(old))
    assert exc.value.failure == "rewrite"


def test_replayed_leaves_must_hash_to_the_checkpoint() -> None:
    leaves = [b"c%d" % i for i in range(9)]
    t = MemoryTree(leaf_hash(c) for c in leaves)
    edge = CompactRange.from_source(4, t)
    assert replay(edge, leaves[4:], cp(t)).root() == t.root()
    with pytest.raises(LogFailure) as exc:
        replay(edge, [*leaves[4:8], b"other"], cp(t))
    assert exc.value.failure == "leaves"


def test_a_checkpoint_under_another_key_is_an_unknown_key() -> None:
    log, other = note.Ed25519Signer.generate(ORIGIN), note.Ed25519Signer.generate(ORIGIN)
    signed = note.sign_note(cp(tree(3)).text(), other)
    with pytest.raises(LogFailure) as exc:
        open_signed(signed, log.verifier)
    assert exc.value.failure == "unknown-key"
    state = AuditState(log.verifier.vkey(), note.sign_note(cp(tree(3)).text(), log))
    assert AuditState.from_json(state.to_json()).verified().checkpoint.size == 3
    forged = AuditState(log.verifier.vkey(), signed)  # a state file edited by hand
    with pytest.raises(LogFailure, match="unknown-key"):
        forged.verified()


def test_an_opening_opens_only_its_own_leaf() -> None:
    body = canonical({"t": "order", "id": "o-1"})
    salt = bytes(16)
    o = Opening(7, salt, body)
    o.check(commitment(salt, body))
    assert o.entry() == {"t": "order", "id": "o-1", "v": 1}
    with pytest.raises(EntryError, match="opening of leaf 7"):
        Opening(7, bytes([1]) + salt[1:], body).check(commitment(salt, body))
    with pytest.raises(EntryError, match="not a canonical"):
        Opening(7, salt, b'{"t": "order"}').entry()
    with pytest.raises(EntryError, match="log entry type"):
        canonical({"t": "binding"})
    assert commitment(salt, body) == hashlib.sha256(salt + body).digest()


def _life(token: str, kind: str, tenure: int | None, rid: str | None = None) -> dict[str, object]:
    return {
        "t": "lifecycle",
        "token": token,
        "kind": kind,
        "applied": True,
        "tenure_start_us": tenure,
        "revocation": rid,
    }


def _revocation_r1() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Revocation r1's two order entries and its trigger, committing to them."""
    orders: list[dict[str, Any]] = [
        {"t": "order", "id": f"o{i}", "revocation": "r1"} for i in range(2)
    ]
    trigger = {
        "t": "revocation",
        "id": "r1",
        "orders": 2,
        "orders_sha256": orders_digest(["o0", "o1"]),
    }
    return orders, trigger


def test_the_monitor_passes_an_honest_history_and_names_each_broken_rule() -> None:
    orders, trigger = _revocation_r1()
    honest = [
        _life("aa", "ISSUED", 1),
        _life("aa", "PORTED_OUT", 1),
        _life("aa", "PORTED_IN", 1),
        _life("aa", "REISSUED", 5, "r1"),
        trigger,
        *orders,
        {"t": "ack", "order": "o0"},
    ]
    assert check(enumerate(honest)).ok
    dropped = [e for e in honest if e.get("id") != "o1"]
    assert "silently dropped" in check(enumerate(dropped)).problems[0]
    backwards = [*honest, _life("aa", "REISSUED", 3)]
    assert "moved back from 5 to 3" in check(enumerate(backwards)).problems[0]
    porting = [*honest[:2], _life("aa", "PORTED_IN", 1, "r1"), *honest[3:]]
    assert "porting never revokes" in check(enumerate(porting)).problems[0]
    # A partial view (leaves this bundle cannot open) checks only what it holds.
    partial = check([(0, None), *enumerate(orders, 1)])
    assert partial.ok and partial.partial == 1


def test_a_monitor_fed_in_parts_through_its_saved_state_reports_as_one_replay() -> None:
    orders, trigger = _revocation_r1()
    history = [
        _life("aa", "ISSUED", 1),
        _life("aa", "REISSUED", 5, "r1"),
        trigger,
        *orders,
        {"t": "ack", "order": "o0"},
        {"t": "ack", "order": "o9"},  # an outcome of an order never logged
        _life("aa", "REISSUED", 3),  # tenure moves back
    ]
    whole = check(enumerate(history))
    assert len(whole.problems) == 2
    for cut in range(len(history) + 1):
        first = Monitor()
        first.feed(list(enumerate(history))[:cut])
        saved = json.loads(json.dumps(first.to_json()))
        later = Monitor.from_json(saved)
        later.feed(list(enumerate(history))[cut:])
        report = later.report()
        assert (report.problems, report.by_type, report.leaves) == (
            whole.problems,
            whole.by_type,
            whole.leaves,
        ), cut
    with pytest.raises(ValueError, match="in order"):
        Monitor().feed([(1, None)])
    with pytest.raises(ValueError, match="numbind-log-monitor/v1"):
        Monitor.from_json({"format": "other"})


def test_a_revocation_being_applied_is_pending_until_its_grace_runs_out() -> None:
    """A single registry logs a report's events first and the trigger with its last chunk of
    orders: a monitor with a clock lists the revocation as pending in that window, carries
    when it first saw it through its saved state, and names it once the grace is over."""
    orders, trigger = _revocation_r1()
    applying = [_life("aa", "ISSUED", 1), _life("aa", "REISSUED", 5, "r1"), orders[0]]

    # Without a clock the history is judged finished: both cross-entry rules fire.
    assert len(check(enumerate(applying)).problems) == 2

    first = Monitor()
    first.feed(enumerate(applying))
    seen = first.report(now=1000.0, grace_seconds=60)
    assert (seen.ok, seen.pending) == (True, ["r1"])
    later = Monitor.from_json(json.loads(json.dumps(first.to_json())))
    still = later.report(now=1059.0, grace_seconds=60)
    assert (still.ok, still.pending) == (True, ["r1"])
    overdue = later.report(now=1060.0, grace_seconds=60)
    assert overdue.pending == []
    assert any("names revocation r1, never logged" in p for p in overdue.problems)
    assert any("whose trigger is not logged" in p for p in overdue.problems)

    # The trigger arrives with the last chunk: nothing pending, nothing wrong.
    later.feed([(3, orders[1]), (4, trigger)])
    done = later.report(now=5000.0, grace_seconds=60)
    assert (done.ok, done.pending, later.pending_since) == (True, [], {})
