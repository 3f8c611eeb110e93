"""services.order_routes: the tokens of orders a stream sent, remembered until acked and
bounded (oldest forgotten first)."""

from __future__ import annotations

import pytest
from numbind.registry.services.order_routes import OrderRoutes


def test_routes_remember_sent_orders_until_acked_and_forget_the_oldest_past_the_limit() -> None:
    routes = OrderRoutes(limit=3)
    routes.sent([("a", b"ta"), ("b", b"tb")])
    assert routes.hints(["a", "b", "x"]) == {"a": b"ta", "b": b"tb"}
    routes.acked(["a", "x"])
    assert routes.hints(["a", "b"]) == {"b": b"tb"}
    routes.sent([("c", b"tc"), ("d", b"td"), ("e", b"te")])
    assert len(routes) == 3
    assert routes.hints(["b", "c", "d", "e"]) == {"c": b"tc", "d": b"td", "e": b"te"}
    # Sent again (a redelivery): the newer token wins.
    routes.sent([("c", b"tc2")])
    assert routes.hints(["c"]) == {"c": b"tc2"}
    with pytest.raises(ValueError, match="limit"):
        OrderRoutes(limit=0)
