"""`numbind log`: check the registry's verifiable log from any bundle.

numbind log checkpoint --bundle DIR [--json]
    The newest checkpoint (signed by the pinned log key, DIR/log.vkey; pinned on first
    use), its size, root and cosignatures.
numbind log prove --bundle DIR (--order ID | --event LEAF | --revocation ID) [--out F] [--json]
    Fetches and verifies the inclusion proof of each leaf (an order and its outcome; a
    lifecycle event by the leaf index ReportLifecycle returned; a revocation's trigger,
    orders and outcomes) and checks every opening the bundle holds. A carrier proving
    its revocation also checks the trigger commits to exactly the orders GetRevocation
    lists. Exit 0 only if everything verifies; --out writes the proofs as JSON.
numbind log audit --bundle DIR --state FILE [--compare FILE ...]
    Keeps the last verified checkpoint in FILE; verifies the newest one extends it
    (and every --compare state: another auditor's, to catch a split view). Exits 1
    naming the failure: rollback, fork, rewrite, unknown-key, quorum.
numbind log monitor --bundle DIR [--state FILE] [--json]
    Replays the log with the openings the bundle holds (an admin bundle: all) and checks
    the registry's rules: every REISSUED has its orders, tenure never moves backwards,
    porting never revokes. With --state, FILE keeps the last verified checkpoint and what
    the rules need of the leaves replayed: the next run checks the new checkpoint extends
    it and proves and replays only the leaves added since. Exit 1 on any problem.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from numbind.cli.common import CliError, add_bundle, add_json, command, load_bundle
from numbind.protocol import note
from numbind.protocol.bundle import Bundle
from numbind.protocol.checkpoint import CosignatureVerifier, WitnessPolicy
from numbind.protocol.files import write_atomically
from numbind.protocol.log_audit import AuditState
from numbind.protocol.log_entries import orders_digest
from numbind.protocol.log_errors import LogError
from numbind.sdk.channel import secure_channel
from numbind.sdk.log import LogClient, ProvedLeaf
from numbind.sdk.log_monitor import Monitor
from numbind.v1 import holders_pb2, holders_pb2_grpc

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser(
        "log",
        help="check the registry's verifiable log: checkpoints, proofs, audits",
        description="The registry logs every lifecycle event, revocation, order, outcome "
        "and key rotation in an append-only Merkle tree; these commands check it.",
    )
    actions = group.add_subparsers(
        dest="log_command", metavar="ACTION", required=True, help="what to do"
    )
    cp = actions.add_parser(
        "checkpoint",
        help="the newest checkpoint, verified",
        description="Print the newest checkpoint after checking it is signed by the pinned "
        "log key (DIR/log.vkey, pinned on first use) and cosigned by every --witness.",
    )
    add_bundle(cp, "any")
    _add_witness(cp)
    add_json(cp)
    command(cp, _checkpoint)

    prove = actions.add_parser(
        "prove",
        help="verify that an entry is in the log",
        description="Fetch and verify inclusion proofs (and the openings this bundle holds) "
        "for an order, a lifecycle event or a revocation. Exit 0 only if all verify.",
    )
    add_bundle(prove, "any")
    about = prove.add_mutually_exclusive_group(required=True)
    about.add_argument("--order", metavar="ID", help="an order id (platform bundles)")
    about.add_argument("--event", metavar="LEAF", type=int, help="a lifecycle event's leaf index")
    about.add_argument("--revocation", metavar="ID", help="a revocation id")
    prove.add_argument("--out", type=Path, metavar="FILE", help="write the proofs as JSON")
    _add_witness(prove)
    add_json(prove)
    command(prove, _prove)

    audit = actions.add_parser(
        "audit",
        help="check the log only ever grew since last time",
        description="Verify the newest checkpoint extends the one kept in --state (and each "
        "--compare state); exit 1 naming a rollback, fork, rewrite or unknown key.",
    )
    add_bundle(audit, "any")
    audit.add_argument(
        "--state",
        type=Path,
        required=True,
        metavar="FILE",
        help="where the last verified checkpoint is kept (created on the first audit)",
    )
    audit.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="another auditor's state file: its checkpoint must be consistent with ours",
    )
    _add_witness(audit)
    command(audit, _audit)

    monitor = actions.add_parser(
        "monitor",
        help="replay the log and check the rules",
        description="Replay every leaf with the openings this bundle holds (an admin's: all) "
        "and check every REISSUED has its orders, tenure never moves backwards and porting "
        "never revokes. Exit 1 on any problem.",
    )
    add_bundle(monitor, "any")
    monitor.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="keep the last verified checkpoint and the replay here; the next run proves "
        "and replays only the leaves added since (default: every leaf, every run)",
    )
    monitor.add_argument(
        "--pending-grace",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="a revocation named before its trigger is logged (a report still being "
        "applied) is pending, not a problem, for this long after this monitor first saw it "
        "so; with --state that spans runs (default: 600)",
    )
    add_json(monitor)
    command(monitor, _monitor)


def _add_witness(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--witness",
        action="append",
        default=[],
        type=_witness_key,
        metavar="VKEY",
        help="a witness whose cosignature the checkpoint must carry (repeatable; replaces "
        "the default: in a federation, every member the bundle's manifest names a witness "
        "key for; alone, none)",
    )
    p.add_argument(
        "--no-witnesses",
        action="store_true",
        help="accept a checkpoint signed by the log key with no cosignature",
    )
    p.add_argument(
        "--quorum-wait",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="how long to wait for the cosignatures the policy needs (default 20)",
    )


def _trust(args: argparse.Namespace | None) -> WitnessPolicy | None:
    if args is None:
        return None
    if getattr(args, "no_witnesses", False):
        if args.witness:
            raise CliError("--witness and --no-witnesses: give one or the other")
        return WitnessPolicy.none()
    witnesses = getattr(args, "witness", None) or []
    return WitnessPolicy.all_of(witnesses) if witnesses else None


def _witness_key(text: str) -> CosignatureVerifier:
    try:
        return CosignatureVerifier.parse(text.strip())
    except LogError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _client(bundle: Bundle, channel: Any, args: argparse.Namespace | None = None) -> LogClient:
    wait = getattr(args, "quorum_wait", 20.0)
    return LogClient.for_bundle(channel, bundle.directory, trust=_trust(args), quorum_wait=wait)


async def _checkpoint(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    async with secure_channel(bundle) as channel:
        client = _client(bundle, channel, args)
        cp = await client.checkpoint()
    body = cp.verified.checkpoint
    policy = client.policy_for(cp)
    verified = {c.witness for c in cp.verified.cosignatures}
    cosigs = [
        {"witness": s.name, "verified": s.name in verified}
        for s in note.split_note(cp.signed)[1]
        if s.name != body.origin
    ]
    out: dict[str, Any] = {
        "origin": body.origin,
        "tree_size": body.size,
        "root_hash": body.root_hash.hex(),
        "log_key": cp.log_key,
        "cosignatures": cosigs,
        "policy": {"witnesses": [w.name for w in policy.witnesses], "quorum": policy.quorum},
        "checkpoint": cp.signed.decode(),
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"origin:       {body.origin}")
        print(f"tree size:    {body.size:,}")
        print(f"root hash:    {body.root_hash.hex()}")
        print(f"log key:      {cp.log_key}")
        names = (
            ", ".join(f"{c['witness']}{'' if c['verified'] else ' (unverified)'}" for c in cosigs)
            or "none"
        )
        print(f"cosigned by:  {names}")
        wanted = ", ".join(w.name for w in policy.witnesses) or "no witness"
        print(f"policy:       {policy.quorum} of {wanted}")
    return 0


async def _prove(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    async with secure_channel(bundle) as channel:
        log = _client(bundle, channel, args)
        if args.event is not None:
            refs = [(args.event, "lifecycle", "")]
        else:
            refs = await log.find(order_id=args.order or "", revocation_id=args.revocation or "")
        proved = await log.prove([i for i, _, _ in refs])
        for (_, kind, ref), leaf in zip(refs, proved, strict=True):
            _check_opened(leaf, kind, ref)
        if args.revocation and bundle.role == "carrier":
            await _check_trigger(channel, args.revocation, refs, proved)
    cp = proved[0].checkpoint
    if args.out:
        args.out.write_text(json.dumps([p.proof_json() for p in proved], indent=2) + "\n")
    summary = {
        "verified": True,
        "tree_size": cp.size,
        "root_hash": cp.root.hex(),
        "leaves": [
            {"leaf_index": p.index, "kind": k, "opened": p.entry is not None}
            for p, (_, k, _) in zip(proved, refs, strict=True)
        ],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(_proved_line(proved, cp.size, cp.root.hex()))
    return 0


def _proved_line(proved: list[ProvedLeaf], size: int, root: str) -> str:
    """One line: how many leaves are included, and whether what they commit to was checked
    (only whoever holds an entry gets its opening: another platform's order is included
    but not opened, and saying "verified" alone overstated what was shown)."""
    n, opened = len(proved), sum(p.entry is not None for p in proved)
    leaves = "1 leaf" if n == 1 else f"{n:,} leaves"
    head = f"verified: {leaves} included in the checkpoint of size {size:,} (root {root[:16]}...)"
    if opened == n:
        return f"{head}, {'its' if n == 1 else 'each'} opening checked"
    if opened == 0:
        what = "what it commits to" if n == 1 else "what they commit to"
        return f"{head}; not opened (this bundle does not hold the opening), so {what} is unchecked"
    return f"{head}; {opened:,} opened and checked, {n - opened:,} not held by this bundle"


def _check_opened(leaf: ProvedLeaf, kind: str, ref: str) -> None:
    entry = leaf.entry
    if entry is None:
        return
    if entry.get("t") != kind:
        raise CliError(f"leaf {leaf.index}: opens as a {entry.get('t')} entry, want {kind}")
    if ref and ref not in (entry.get("id"), entry.get("order")):
        raise CliError(f"leaf {leaf.index}: opens as {entry.get('id')}, not {ref}")


async def _check_trigger(
    channel: Any, revocation_id: str, refs: list[tuple[int, str, str]], proved: list[ProvedLeaf]
) -> None:
    """The trigger's commitment to its orders, against the orders the registry lists."""
    resp = await holders_pb2_grpc.HoldersStub(channel).GetRevocation(
        holders_pb2.GetRevocationRequest(revocation_id=revocation_id), timeout=30
    )
    listed = [oid for p in resp.platforms for oid in p.order_ids]
    logged = [ref for _, kind, ref in refs if kind == "order"]
    trigger = next((p.entry for p in proved if p.entry and p.entry.get("t") == "revocation"), None)
    if trigger is None:
        raise CliError(f"revocation {revocation_id}: its trigger leaf is missing or unopened")
    if (
        trigger["orders"] != len(listed)
        or trigger["orders_sha256"] != orders_digest(listed)
        or sorted(logged) != sorted(listed)
    ):
        raise CliError(
            f"revocation {revocation_id}: the trigger commits to {trigger['orders']} orders; "
            f"the registry lists {len(listed)} and logged {len(logged)}"
        )


async def _audit(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    previous = AuditState.from_json(args.state.read_bytes()) if args.state.exists() else None
    others = [AuditState.from_json(p.read_bytes()) for p in args.compare]
    async with secure_channel(bundle) as channel:
        # The bundle's pinned log key counts on a first audit too (a saved state's key wins).
        client = _client(bundle, channel, args)
        new = await client.audit(previous, compare=others)
    args.state.write_bytes(new.state().to_json())
    was = previous.verified().checkpoint.size if previous else None
    since = "first audit, key pinned" if was is None else f"consistent with size {was:,}"
    print(f"ok: checkpoint of size {new.size:,} (root {new.root.hex()[:16]}...), {since}")
    return 0


async def _monitor(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    state: Path | None = args.state
    previous, monitor = _monitor_state(state) if state is not None else (None, Monitor())
    async with secure_channel(bundle) as channel:
        log = _client(bundle, channel)
        # With a state: the new checkpoint must extend the one verified before (an audit),
        # and the leaves that one covers were proved and replayed then.
        cp = await log.audit(previous) if previous is not None else await log.checkpoint()
        start = monitor.leaves
        if cp.size < start:
            raise CliError(f"checkpoint of size {cp.size} is behind the {start} leaves replayed")
        fresh = list(range(start, cp.size))
        proved = await log.prove(fresh, checkpoint=cp) if fresh else []
    monitor.feed((p.index, p.entry) for p in proved)
    report = monitor.report(now=time.time(), grace_seconds=args.pending_grace)
    if state is not None:
        body = {"audit": json.loads(cp.state().to_json()), "monitor": monitor.to_json()}
        write_atomically(state, (json.dumps(body) + "\n").encode(), 0o600)
    if args.json:
        print(
            json.dumps(
                {
                    "tree_size": cp.size,
                    "replayed": len(proved),
                    "opened": report.opened,
                    "by_type": report.by_type,
                    "problems": report.problems,
                    "pending": report.pending,
                    "unopened": report.partial,
                    "ok": report.ok,
                },
                indent=2,
            )
        )
    else:
        before = f" ({start:,} replayed before)" if start else ""
        print(
            f"replayed {len(proved):,} leaves{before} (checkpoint size {cp.size:,}), "
            f"opened {report.opened:,}: {report.by_type}"
        )
        if report.partial:
            print(
                f"{report.partial:,} leaves are not this bundle's to open: rules across "
                "entries need an auditor's (admin) bundle"
            )
        for rid in report.pending:
            print(f"pending: revocation {rid} is named but its trigger is not logged yet")
        for problem in report.problems:
            print(f"PROBLEM {problem}")
        print("ok: every rule holds" if report.ok else f"{len(report.problems)} problems")
    return 0 if report.ok else 1


def _monitor_state(path: Path) -> tuple[AuditState | None, Monitor]:
    """The checkpoint and replay a --state file holds (none yet: a first run)."""
    if not path.exists():
        return None, Monitor()
    try:
        body = json.loads(path.read_bytes())
        audit = AuditState.from_json(json.dumps(body["audit"]).encode())
        return audit, Monitor.from_json(body["monitor"])
    except (ValueError, KeyError, TypeError, LogError) as exc:
        raise CliError(f"--state {path}: not a log monitor state ({exc})") from None
