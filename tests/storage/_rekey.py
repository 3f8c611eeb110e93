"""The store a re-key test runs on: two token keys, one platform, and rows of every
token-keyed table filled under the old key (tests/storage/test_rekey_*.py)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from numbind.protocol import rekey as rekey_algebra
from numbind.protocol import voprf
from numbind.protocol.digest import binding_digest, bucket16
from numbind.registry.domain.types import now_us
from numbind.registry.services.rekey import RekeyRunner, RekeySettings
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import keymap, migrate, principals
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import (
    BindingRow,
    LifecycleEventRow,
    NumberRow,
    RevocationRow,
    TokenKeyRow,
)
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from tests.tokens import random_token

OLD, NEW = "0000000000000001", "0000000000000002"
T0 = 1_700_000_000_000_000


def _keyed(key_id: str | None, token: bytes | None) -> tuple[str, bytes]:
    # Only holder revocations carry a token; fill() writes every row with one.
    assert key_id is not None and token is not None, "a filled row lost its token"
    return key_id, token


class Store:
    def __init__(self, url: str) -> None:
        self.db = Database(url)
        migrate.upgrade(self.db.write_engine)
        self.k_old = voprf.generate_key_pair()[0]
        self.k_new = voprf.generate_key_pair()[0]
        self.delta = rekey_algebra.rekey_delta(self.k_old, self.k_new)
        self.carrier = self.db.transact(lambda s: principals.register(s, "carrier", "cm").pk)
        self.platform = self.db.transact(lambda s: principals.register(s, "platform", "p").pk)
        self.db.transact(self._keys)

    def _keys(self, s: Session) -> None:
        for key_id, state in ((OLD, 1),):
            s.add(TokenKeyRow(key_id=key_id, public_key=bytes(32), state=state, created_us=T0))
        keymap.ensure_store_key(s, OLD)

    def rotate(self) -> None:
        def act(s: Session) -> None:
            keymap.require_no_rekey(s)
            s.add(TokenKeyRow(key_id=NEW, public_key=bytes(32), state=1, created_us=T0 + 1))
            keymap.begin_rekey(s, OLD, NEW, self.delta, now_us())

        self.db.transact(act)

    def fill(self, n: int) -> list[bytes]:
        """n numbers, n bindings, n lifecycle events and n revocations under the old key."""
        tokens = [random_token() for _ in range(n)]

        def act(s: Session) -> None:
            s.execute(
                insert(NumberRow),
                [
                    dict(
                        token=t,
                        key_id=OLD,
                        carrier_pk=self.carrier,
                        state=1,
                        first_known_us=T0,
                        last_effective_us=T0,
                        updated_us=T0,
                    )
                    for t in tokens
                ],
            )
            s.execute(
                insert(BindingRow),
                [
                    dict(
                        platform_pk=self.platform,
                        key_id=OLD,
                        token=t,
                        account_ref=b"ref%d" % i,
                        bound_us=T0 - i,
                        kind=1,
                        state=1,
                        bucket=bucket16(t),
                        digest=binding_digest(OLD, t, b"ref%d" % i, T0 - i, 1),
                        updated_us=T0,
                    )
                    for i, t in enumerate(tokens)
                ],
            )
            s.execute(
                insert(LifecycleEventRow),
                [
                    dict(
                        token=t,
                        key_id=OLD,
                        carrier_pk=self.carrier,
                        kind=1,
                        effective_us=T0,
                        recorded_us=T0,
                        applied=True,
                    )
                    for t in tokens
                ],
            )
            s.execute(
                insert(RevocationRow),
                [
                    dict(
                        id=str(uuid.uuid4()),
                        cause=2,
                        carrier_pk=self.carrier,
                        token=t,
                        key_id=OLD,
                        scope=1,
                        created_us=T0,
                    )
                    for t in tokens
                ],
            )

        self.db.transact(act)
        return tokens

    def rows(self) -> dict[str, list[tuple[str, bytes]]]:
        def read(s: Session) -> dict[str, list[tuple[str, bytes]]]:
            return {
                m.__tablename__: [_keyed(k, t) for k, t in s.execute(select(m.key_id, m.token))]
                for m in (NumberRow, BindingRow, LifecycleEventRow, RevocationRow)
            }

        return self.db.transact(read, write=False)

    def runner(self, pause: float = 0.0, batch: int = 7) -> RekeyRunner:
        return RekeyRunner(
            self.db,
            TokenMapper(self.db),
            ThreadPoolExecutor(2),
            RekeySettings(batch_rows=batch, pause_seconds=pause, lease_seconds=5.0),
        )
