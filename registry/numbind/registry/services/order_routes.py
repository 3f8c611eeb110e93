"""Where this process's streams found each order they sent: a hint for routing its ack.

An ack names only its order; on PostgreSQL orders are hash-partitioned by token, so an id
alone probes every partition's index (storage.order_acks). The stream that sent an order
read its token with it; an ack arriving at the same process (the usual case: a platform
acks on the channel it streams on) looks the order up by (id, token), one partition. A hint
is never trusted: an order it misses (moved by a re-key, evicted, or acked through another
process) is looked up by id alone. Nothing here must agree across processes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

# Orders remembered at most, oldest forgotten first: an order is forgotten once acked, so
# this bounds only what is sent and not (yet) acked, ~100 bytes each.
LIMIT = 100_000


class OrderRoutes:
    def __init__(self, limit: int = LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit: got {limit}, want at least 1")
        self._limit = limit
        self._tokens: OrderedDict[str, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tokens)

    def sent(self, orders: Iterable[tuple[str, bytes]]) -> None:
        """(order id, token as stored) of orders a stream just sent."""
        tokens = self._tokens
        for order_id, token in orders:
            tokens[order_id] = token
        while len(tokens) > self._limit:
            tokens.popitem(last=False)

    def hints(self, order_ids: Sequence[str]) -> dict[str, bytes]:
        tokens = self._tokens
        return {i: t for i in order_ids if (t := tokens.get(i)) is not None}

    def acked(self, order_ids: Iterable[str]) -> None:
        for order_id in order_ids:
            self._tokens.pop(order_id, None)
