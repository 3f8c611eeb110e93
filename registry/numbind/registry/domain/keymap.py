"""The store's key map: which key stored tokens are under, and how every live key maps to it.

Pure (no grpc, no SQL). The store never holds a token key, only, for each live older key,
``Delta = k_store / k_old``: a token under an older key becomes the store's token for the
same number with one multiplication (``Delta * N_old = N_store``). While a re-key runs
(rows moving from ``from_key_id`` to the store key in the background) a stored row may be
in either form, so each mapped token also carries its form under the old key, and a
lookup asks for both: one identity per number whichever state its rows are in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from numbind.protocol import rekey as rekey_algebra
from numbind.protocol import voprf
from numbind.protocol.limits import TOKEN_BYTES
from numbind.registry.domain.validate import KEY_ID
from numbind.registry.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotStoreKey,
    RekeyInProgress,
    field_error,
)

__all__ = [
    "KeyView",
    "RekeyState",
    "RekeyStatus",
    "StoreToken",
    "retry_after",
]


_IDENTITY = bytes(TOKEN_BYTES)
_WANT_ELEMENT = "a canonical ristretto255 encoding of a non-identity element"


class RekeyState(IntEnum):
    RUNNING = 1
    DONE = 2


@dataclass(frozen=True)
class RekeyStatus:
    """One store re-key as `admin stats` shows it."""

    id: int
    from_key_id: str
    to_key_id: str
    state: RekeyState
    rows_total: int | None
    rows_done: int
    rows_per_second: float
    started_us: int
    finished_us: int | None

    @property
    def running(self) -> bool:
        return self.state == RekeyState.RUNNING

    @property
    def eta_seconds(self) -> float:
        """Seconds left at the current rate; 0 when done or not yet known."""
        if not self.running or self.rows_total is None or self.rows_per_second <= 0:
            return 0.0
        return max(0, self.rows_total - self.rows_done) / self.rows_per_second

    def describe(self) -> str:
        total = "?" if self.rows_total is None else f"{self.rows_total:,}"
        text = (
            f"re-key from {self.from_key_id} to {self.to_key_id}: "
            f"{self.rows_done:,} of {total} rows"
        )
        if self.rows_total:
            text += f" ({100 * min(self.rows_done, self.rows_total) // self.rows_total}%)"
        if eta := self.eta_seconds:
            text += f", about {eta:,.0f} s left"
        return text


def retry_after(status: RekeyStatus) -> float:
    """How long a client should wait before asking again: a tenth of the time left, kept
    between half a second and ten seconds (two when the rate is not known yet)."""
    eta = status.eta_seconds
    return 2.0 if eta <= 0 else min(10.0, max(0.5, eta / 10))


@dataclass(frozen=True, slots=True)
class StoreToken:
    """A request's token mapped to the store key, and its form under the key being re-keyed
    away from (None when no re-key runs). Stored rows are in exactly one of the two forms."""

    value: bytes
    old: bytes | None = None

    @property
    def forms(self) -> tuple[bytes, ...]:
        return (self.value,) if self.old is None else (self.value, self.old)


@dataclass(frozen=True)
class KeyView:
    """The key map as of one epoch (see storage.models.StoreStateRow)."""

    epoch: int
    store_key_id: str
    # ACTIVE and EVALUATE_ONLY keys; RETIRED ones are in `retired`.
    live: frozenset[str]
    retired: frozenset[str]
    # Live older key -> Delta to the store key.
    deltas: Mapping[str, bytes]
    # The latest re-key (running or done), for its source key and progress.
    rekey: RekeyStatus | None = None
    # Delta back from the store key to a running re-key's source key.
    back: bytes | None = None

    @property
    def rekeying(self) -> bool:
        return self.rekey is not None and self.rekey.running

    @property
    def rekey_from(self) -> str | None:
        return self.rekey.from_key_id if self.rekey is not None and self.rekey.running else None

    def check_key(self, field: str, key_id: str) -> None:
        """A well-formed id of a live key, else InvalidArgument naming `field`."""
        if not KEY_ID.fullmatch(key_id):
            raise field_error(field, repr(key_id[:40]), "16 lowercase hex characters")
        if key_id in self.retired:
            raise InvalidArgument(
                f"{field}: {key_id} is retired and its tokens are no longer accepted; "
                f"tokenise under the active key {self.store_key_id}"
            )
        if key_id not in self.live:
            raise InvalidArgument(f"{field}: {key_id} is not a key of this registry")

    def map(self, field: str, key_id: str, value: bytes) -> StoreToken:
        """Validate one token and map it to the store key; errors name `field`.

        A token is accepted only as a canonical, non-identity ristretto255 encoding under a
        live key. Costs one multiplication for a token under an older key, and one more
        while a re-key runs (the other form), none otherwise.
        """
        if len(value) != TOKEN_BYTES:
            raise field_error(f"{field}.value", f"{len(value)} bytes", f"{TOKEN_BYTES}")
        try:
            voprf.deserialize_element(value)
        except voprf.DeserializeError:
            got = "the identity" if value == _IDENTITY else "a non-canonical or invalid encoding"
            raise field_error(f"{field}.value", got, _WANT_ELEMENT) from None
        self.check_key(f"{field}.key_id", key_id)
        if key_id == self.store_key_id:
            store = value
        else:
            delta = self.deltas.get(key_id)
            if delta is None:  # a live key always has one (see app.reconcile_key_map)
                raise FailedPrecondition(
                    f"{field}.key_id: {key_id} has no mapping to the store key yet; retry"
                )
            store = rekey_algebra.rekey_many(delta, [value])[0]
        old: bytes | None = None
        if self.back is not None:
            old = (
                value
                if key_id == self.rekey_from
                else rekey_algebra.rekey_many(self.back, [store])[0]
            )
        return StoreToken(store, old)

    def require_store_key(self, key_id: str, latest: RekeyStatus | None = None) -> str:
        """The key reconciliation answers in: `key_id` must be empty or the store key, and no
        re-key may be running (rows would be in two forms, and digests would differ from
        the platform's for no change at all). `latest` is fresher progress to report."""
        if key_id and key_id != self.store_key_id:
            raise NotStoreKey(
                f"key_id: got {key_id}, want {self.store_key_id}: every binding is held "
                f"under the store key {self.store_key_id} (the active key); tokenise under it",
                self.store_key_id,
            )
        status = latest or self.rekey
        if self.rekeying and status is not None:
            raise RekeyInProgress(
                f"bindings are being re-keyed after a key rotation ({status.describe()}); "
                "digests and lists answer again when it is done",
                retry_after(status),
                status.rows_done,
                status.rows_total,
            )
        return self.store_key_id
