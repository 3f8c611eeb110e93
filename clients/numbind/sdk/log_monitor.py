"""The registry's own rules, checked by replaying its log (an auditor with openings).

    every REISSUED that revoked names a revocation, whose trigger is logged, and that
        trigger's orders are all logged (its count and its SHA-256 over their ids match
        the order leaves carrying its id); no order names a trigger the log lacks
    a number's tenure never moves backwards (applied events, per token)
    porting never revokes (PORTED_OUT / PORTED_IN trigger nothing)
    an outcome (ack) is for an order the log holds

Pure: `Monitor.feed(entries)` takes (leaf index, opened entry or None) in log order and
`report()` returns the problems found, each naming its leaf. The monitor keeps what the
rules need of the leaves it has seen, so a monitor saved (`to_json`) after one checkpoint
and fed only the leaves a later checkpoint adds reports what replaying every leaf would
(`numbind log monitor --state`). `check(entries)` is one replay from leaf 0. Leaves the
auditor cannot open are counted, not guessed about: a carrier's or platform's bundle
checks what it holds, an admin's everything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from numbind.protocol.log_entries import orders_digest

__all__ = ["Monitor", "MonitorReport", "check"]

_PORTING = ("PORTED_OUT", "PORTED_IN")
_FORMAT = "numbind-log-monitor/v1"


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


@dataclass
class Monitor:
    """What the rules need of the leaves fed so far (JSON-serialisable as it stands).

    Contract: `feed` takes leaves in log order, each once, starting where the last feed
    ended; a rule broken by one leaf (porting, tenure) is kept as found, the rules across
    leaves are checked afresh by every `report` over all leaves fed."""

    leaves: int = 0
    opened: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    tenure: dict[str, int] = field(default_factory=dict)
    # revocation id -> [trigger leaf, orders committed to, their SHA-256]
    triggers: dict[str, list[Any]] = field(default_factory=dict)
    orders: dict[str, list[str]] = field(default_factory=dict)  # revocation -> order ids
    order_leaf: dict[str, int] = field(default_factory=dict)
    named: list[list[Any]] = field(default_factory=list)  # [leaf, revocation] of an event
    acks: list[list[Any]] = field(default_factory=list)  # [leaf, order id]

    def feed(self, entries: Iterable[tuple[int, dict[str, Any] | None]]) -> None:
        for index, entry in entries:
            if index != self.leaves:
                raise ValueError(f"leaf {index} fed after {self.leaves} leaves; want in order")
            self.leaves += 1
            if entry is None:
                continue
            self.opened += 1
            kind = str(entry.get("t"))
            self.by_type[kind] = self.by_type.get(kind, 0) + 1
            if kind == "lifecycle":
                self._lifecycle(index, entry)
            elif kind == "revocation":
                self.triggers[str(entry["id"])] = [
                    index,
                    entry["orders"],
                    entry["orders_sha256"],
                ]
            elif kind == "order":
                self.orders.setdefault(str(entry["revocation"]), []).append(str(entry["id"]))
                self.order_leaf[str(entry["id"])] = index
            elif kind == "ack":
                self.acks.append([index, str(entry["order"])])

    def report(self) -> MonitorReport:
        report = MonitorReport(self.leaves, self.opened, dict(self.by_type), list(self.problems))
        problems = report.problems
        complete = self.opened == self.leaves
        if not complete:
            # Rules across entries need every entry: a trigger this bundle cannot open may
            # be the one an order names. Only an auditor's (admin) bundle checks those.
            report.partial = self.leaves - self.opened
        for index, rid in self.named if complete else []:
            if rid not in self.triggers:
                problems.append(f"leaf {index}: names revocation {rid}, never logged")
        for rid, (index, count, digest) in self.triggers.items():
            ids = self.orders.get(rid, [])
            if len(ids) != count or orders_digest(ids) != digest:
                problems.append(
                    f"leaf {index}: revocation {rid} commits to {count} orders, the log "
                    f"holds {len(ids)} of them (an order silently dropped or added)"
                )
        for rid, ids in self.orders.items() if complete else []:
            if rid not in self.triggers and ids:
                problems.append(
                    f"leaf {self.order_leaf[ids[0]]}: order {ids[0]} of revocation {rid}, "
                    "whose trigger is not logged"
                )
        for index, oid in self.acks if complete else []:
            if oid not in self.order_leaf:
                problems.append(f"leaf {index}: outcome of order {oid}, never logged")
        return report

    def to_json(self) -> dict[str, Any]:
        return {"format": _FORMAT, **vars(self)}

    @classmethod
    def from_json(cls, data: Any) -> Monitor:
        try:
            if data.get("format") != _FORMAT:
                raise ValueError(data.get("format"))
            fields = {k: v for k, v in data.items() if k != "format"}
            monitor = cls(**fields)
            json.dumps(monitor.to_json())  # plain JSON values only
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"not a {_FORMAT} state") from None
        return monitor

    def _lifecycle(self, index: int, entry: dict[str, Any]) -> None:
        kind, rid = entry.get("kind"), entry.get("revocation")
        if kind in _PORTING and rid:
            self.problems.append(
                f"leaf {index}: {kind} triggered revocation {rid}; porting never revokes"
            )
        if rid:
            self.named.append([index, str(rid)])
        if not entry.get("applied"):
            return
        token, start = str(entry.get("token")), entry.get("tenure_start_us")
        if start is None:
            return
        before = self.tenure.get(token)
        if before is not None and start < before:
            self.problems.append(
                f"leaf {index}: tenure of token {token[:12]}... moved back from {before} to {start}"
            )
        self.tenure[token] = max(start, before or start)


def check(entries: Iterable[tuple[int, dict[str, Any] | None]]) -> MonitorReport:
    """Every rule over `entries`, a replay from leaf 0."""
    monitor = Monitor()
    monitor.feed(entries)
    return monitor.report()
