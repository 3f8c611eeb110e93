"""The schema, as SQLAlchemy 2.0 typed mappings. Alembic migrations are written from it.

One `Base` (models.base) holds every table; the modules here group them by area:
principals (principals, token keys, store re-key), numbers (bindings, numbers), orders
(lifecycle events, revocations, orders, feed, fan-out outbox), requests (idempotency,
nonces, usage, quota) and log (lifecycle log replication, verifiable log, witnesses).
Importing this package registers them all on `Base.metadata`.

Conventions, and why:
- Every instant is an integer of microseconds since the Unix epoch (`*_us`): exact, fast to
  compare and index on every backend, and free of SQLite's text-datetime quirks.
- Small enums are small integers whose values live in `registry.domain.types`.
- Principals get an integer surrogate key so the big tables (bindings, orders, feed) carry
  4 bytes per row rather than a string id.
- A token is 32 bytes (a ristretto255 element) and every row holding one names its key id:
  after a rotation the re-key moves rows from the old key to the new one in place, and
  `key_id` is what says which form a row is in (see `registry.rekey`).
- The tables that grow with bindings (bindings, numbers, lifecycle_events, orders) all
  hold a token, and on PostgreSQL they are hash-partitioned by it (migration
  0008_partitions). A partitioned table's primary and unique keys must include the
  partition key, so there the surrogate-keyed ones have primary keys (pk, token); SQLite
  keeps the keys declared here (a rowid table's INTEGER PRIMARY KEY is its fastest insert
  path). The pk values stay unique on both: one sequence per table hands them out. Every
  unique key names the token on both (orders' feed position: (platform_pk, feed_seq,
  token)). Each platform's feed is its orders by `feed_seq` (migration
  0015_feed_in_orders; before, a feed_events table held one row per order). Orders carry
  their binding's token so they live in the same partition (and, on a distributed engine, the
  same shard) as the binding they are about; the re-key moves them with it
  (storage.rekey). No foreign key joins two growing tables: one into a partitioned table
  would have to name the partition key, and the storage layer writes them together in
  one transaction anyway.
"""

from __future__ import annotations

from numbind.registry.storage.models.base import Base, BigId
from numbind.registry.storage.models.log import (
    LifecycleLogHeadRow,
    LogCheckpointRow,
    LogLeafRow,
    LogNodeRow,
    LogStateRow,
    LogWitnessKeyRow,
    ReplicationAckRow,
    ReplicationCursorRow,
    WitnessAlarmRow,
    WitnessStateRow,
)
from numbind.registry.storage.models.numbers import (
    BindingRow,
    NumberRow,
)
from numbind.registry.storage.models.orders import (
    FanoutOutboxRow,
    LifecycleEventRow,
    OrderRow,
    RevocationRow,
)
from numbind.registry.storage.models.principals import (
    KeyDeltaRow,
    PrincipalRow,
    RekeyRow,
    StoreStateRow,
    TokenKeyRow,
)
from numbind.registry.storage.models.requests import (
    AttestationNonceRow,
    IdempotencyRow,
    QuotaBucketRow,
    UsageRow,
)

__all__ = [
    "AttestationNonceRow",
    "Base",
    "BigId",
    "BindingRow",
    "FanoutOutboxRow",
    "IdempotencyRow",
    "KeyDeltaRow",
    "LifecycleEventRow",
    "LifecycleLogHeadRow",
    "LogCheckpointRow",
    "LogLeafRow",
    "LogNodeRow",
    "LogStateRow",
    "LogWitnessKeyRow",
    "NumberRow",
    "OrderRow",
    "PrincipalRow",
    "QuotaBucketRow",
    "RekeyRow",
    "ReplicationAckRow",
    "ReplicationCursorRow",
    "RevocationRow",
    "StoreStateRow",
    "TokenKeyRow",
    "UsageRow",
    "WitnessAlarmRow",
    "WitnessStateRow",
]
