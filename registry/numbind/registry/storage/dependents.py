"""A binding's orders follow its token: they are partitioned by it on
PostgreSQL (storage.models), so when a binding's token changes (an upsert that met the old
form, a re-key batch) they move with it, in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence

from numbind.registry.storage.db import driver_sql, marks
from sqlalchemy import Connection

__all__ = ["move_dependents"]


def move_dependents(conn: Connection, moved: Sequence[tuple[int, bytes]]) -> None:
    """Bindings (pk, new token) changed token: their orders take the new one too, so they
    stay in their binding's partition (storage.models).

    Called in the transaction that converts the bindings (an upsert that met the old form,
    a re-key batch). Most bindings have no order: one read finds those that do."""
    if not moved:
        return
    new_of = dict(moved)
    pks = sorted(new_of)
    found: list[tuple[int, bytes, bytes]] = []  # (order pk, old token, new token)
    chunk = 500
    for i in range(0, len(pks), chunk):
        part = pks[i : i + chunk]
        for order_pk, binding_pk, token in conn.exec_driver_sql(
            driver_sql(
                conn,
                "SELECT pk, binding_pk, token FROM orders"
                f" WHERE binding_pk IN ({marks(len(part))})",
            ),
            tuple(part),
        ):
            new = new_of[binding_pk]
            if bytes(token) != new:
                found.append((order_pk, bytes(token), new))
    if not found:
        return
    conn.exec_driver_sql(
        driver_sql(conn, "UPDATE orders SET token = ? WHERE pk = ? AND token = ?"),
        [(new, pk, old) for pk, old, new in found],
    )
