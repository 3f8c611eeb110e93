"""The registry's own rules, checked by replaying its log (an auditor with openings).

    every REISSUED that revoked names a revocation, whose trigger is logged, and that
        trigger's orders are all logged (its count and its SHA-256 over their ids match
        the order leaves carrying its id); no order names a trigger the log lacks
    a number's tenure never moves backwards (applied events, per token)
    porting never revokes (PORTED_OUT / PORTED_IN trigger nothing)
    an outcome (ack) is for an order the log holds

Pure: `check(entries)` takes (leaf index, opened entry or None) in log order and returns
the problems found, each naming its leaf. Leaves the auditor cannot open are counted, not
guessed about: a carrier's or platform's bundle checks what it holds, an admin's everything.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from numbind.protocol.log_entries import orders_digest

__all__ = ["MonitorReport", "check"]

_PORTING = ("PORTED_OUT", "PORTED_IN")


@dataclass
class MonitorReport:
    leaves: int = 0
    opened: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # Leaves this auditor could not open (cross-entry rules then were not checked).
    partial: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def check(entries: Iterable[tuple[int, dict[str, Any] | None]]) -> MonitorReport:
    report = MonitorReport()
    tenure: dict[str, int] = {}
    triggers: dict[str, tuple[int, dict[str, Any]]] = {}
    orders: dict[str, list[str]] = defaultdict(list)
    order_leaf: dict[str, int] = {}
    named: list[tuple[int, str]] = []  # (leaf, revocation) named by a lifecycle event
    acks: list[tuple[int, str]] = []
    for index, entry in entries:
        report.leaves += 1
        if entry is None:
            continue
        report.opened += 1
        kind = str(entry.get("t"))
        report.by_type[kind] = report.by_type.get(kind, 0) + 1
        if kind == "lifecycle":
            _lifecycle(index, entry, tenure, named, report.problems)
        elif kind == "revocation":
            triggers[str(entry["id"])] = (index, entry)
        elif kind == "order":
            orders[str(entry["revocation"])].append(str(entry["id"]))
            order_leaf[str(entry["id"])] = index
        elif kind == "ack":
            acks.append((index, str(entry["order"])))
    complete = report.opened == report.leaves
    if not complete:
        # Rules across entries need every entry: a trigger this bundle cannot open may be
        # the one an order names. Only an auditor's (admin) bundle checks those.
        report.partial = report.leaves - report.opened
    for index, rid in named if complete else []:
        if rid not in triggers:
            report.problems.append(f"leaf {index}: names revocation {rid}, never logged")
    for rid, (index, trig) in triggers.items():
        ids = orders.get(rid, [])
        if len(ids) != trig["orders"] or orders_digest(ids) != trig["orders_sha256"]:
            report.problems.append(
                f"leaf {index}: revocation {rid} commits to {trig['orders']} orders, the log "
                f"holds {len(ids)} of them (an order silently dropped or added)"
            )
    for rid, ids in orders.items() if complete else []:
        if rid not in triggers and ids:
            report.problems.append(
                f"leaf {order_leaf[ids[0]]}: order {ids[0]} of revocation {rid}, whose "
                "trigger is not logged"
            )
    for index, oid in acks if complete else []:
        if oid not in order_leaf:
            report.problems.append(f"leaf {index}: outcome of order {oid}, never logged")
    return report


def _lifecycle(
    index: int,
    entry: dict[str, Any],
    tenure: dict[str, int],
    named: list[tuple[int, str]],
    problems: list[str],
) -> None:
    kind, rid = entry.get("kind"), entry.get("revocation")
    if kind in _PORTING and rid:
        problems.append(f"leaf {index}: {kind} triggered revocation {rid}; porting never revokes")
    if rid:
        named.append((index, str(rid)))
    if not entry.get("applied"):
        return
    token, start = str(entry.get("token")), entry.get("tenure_start_us")
    if start is None:
        return
    before = tenure.get(token)
    if before is not None and start < before:
        problems.append(
            f"leaf {index}: tenure of token {token[:12]}... moved back from {before} to {start}"
        )
    tenure[token] = max(start, before or start)
