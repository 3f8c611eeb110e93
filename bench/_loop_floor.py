"""The reissue's whole-loop floor, shared by its PostgreSQL (bench._pgfloor) and SQLite
(bench._reissue_floor) forms: the rows the design requires of the loop, built once, and the
phases they are written in, each timed.

For each live binding of the reissued numbers: an order (with its place in its platform's
feed), the binding marked REVOKING, the order's log leaf and its share of Merkle nodes; then
what its ack writes: the order DONE, the binding REVOKED, an ack leaf and its share of
nodes. Not the registry's own bookkeeping (the delivery marks, the log head, idempotency
records), no network, no hashing: the database's share, which a last-ack target must hold
before anything else.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench._reissue_plan import CAUSE, DAY_US, PENDING, REVOKE, now_us

# Bytes of a log leaf's body as the registry writes them (canonical JSON; on this bench's
# PostgreSQL store after a run: every order leaf 311, every ack leaf 122). The registry also
# stores the Merkle nodes of 16 leaves and more (storage.log.STORED_FROM_LEVEL): about one
# per 8 leaves (12,500 of 100,000 leaves), so one per 8 here (one per leaf before that).
NODE_EVERY = 8
ORDER_BODY, ACK_BODY = 311, 122
# Feed sequences and leaf indices the floor makes up start far above any real one.
FAR = 10**12
# Floors that run side by side, or one after another on the same copy, each make up their
# keys from a base of their own: a multiple of this.
PART_BASE = 10**9

ORDER_COLUMNS = (
    *("pk", "id", "revocation_id", "platform_pk", "binding_pk", "token", "kind", "cause"),
    *("state", "outcome", "reason", "tenure_start_us", "created_us", "deadline_us"),
    "feed_seq",
)
LEAF_COLUMNS = ("idx", "commitment", "kind", "ref", "holder_pk", "salt", "body", "created_us")
NODE_COLUMNS = ("level", "idx", "hash")


@dataclass(frozen=True)
class LoopFloor:
    """Seconds per phase, in the order run."""

    orders: int
    phases: tuple[tuple[str, float], ...]
    # The same work split over this many connections at once (one per core): wall seconds;
    # 0: not measured (SQLite has one writer).
    connections: int = 1
    parallel_s: float = 0.0

    @property
    def total_s(self) -> float:
        return sum(s for _, s in self.phases)


@dataclass
class Phases:
    """Times the phases: `done(name)` closes the one running since the last."""

    spans: list[tuple[str, float]] = field(default_factory=list)
    _t: float = field(default_factory=time.perf_counter)

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.spans.append((name, now - self._t))
        self._t = now


class LoopRows:
    """The rows of the loop for `targets` ((binding pk, platform pk, token) each), orders
    numbered from `first_pk`, made-up keys shifted by `base` (parallel parts use distinct
    bases, so none waits on another's uncommitted key)."""

    def __init__(self, targets: list[tuple[int, int, bytes]], first_pk: int, base: int) -> None:
        self.now, self.revocation_id, self.base = now_us(), str(uuid.uuid4()), base
        self.targets = targets
        self.ids = [str(uuid.uuid4()) for _ in targets]
        self.pks = [first_pk + base + i for i in range(len(targets))]
        self.binding_keys = ([b for b, _, _ in targets], [t for _, _, t in targets])

    def orders(self) -> list[tuple[Any, ...]]:
        now, seq = self.now, FAR + self.base
        return [
            (
                pk,
                oid,
                self.revocation_id,
                p,
                b,
                t,
                REVOKE,
                CAUSE,
                PENDING,
                0,
                "",
                now,
                now,
                now + DAY_US,
                seq + i,
            )
            for i, (pk, oid, (b, p, t)) in enumerate(
                zip(self.pks, self.ids, self.targets, strict=True)
            )
        ]

    def _first_index(self, kind: str) -> int:
        """Where the made-up leaf and node indices of `kind` start."""
        if kind not in ("order", "ack"):
            raise ValueError(f"kind: got {kind!r}, want 'order' or 'ack'")
        return (FAR if kind == "order" else 2 * FAR) + self.base

    def leaves(self, kind: str) -> list[tuple[Any, ...]]:
        """An order's (`kind` "order") or its ack's ("ack") leaf per order."""
        start = self._first_index(kind)
        body = ORDER_BODY if kind == "order" else ACK_BODY
        return [
            (start + i, os.urandom(32), kind, ref, p, os.urandom(16), os.urandom(body), self.now)
            for i, (ref, (_, p, _)) in enumerate(zip(self.ids, self.targets, strict=True))
        ]

    def nodes(self, kind: str) -> list[tuple[int, int, bytes]]:
        start = self._first_index(kind)
        return [(4, start + i, os.urandom(32)) for i in range(0, len(self.ids), NODE_EVERY)]


def all_rows(rowcount: int, want: int, what: str) -> None:
    """An UPDATE that missed rows would make the floor look faster than the work."""
    if rowcount != want:
        raise RuntimeError(f"loop floor: {what} updated {rowcount} rows, want {want}")
