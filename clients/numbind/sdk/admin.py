"""A small synchronous client for the Admin service (what `numbind admin ...` calls).

    with AdminClient(Bundle.load("data/admin-bundle"), address="127.0.0.1:7443") as admin:
        stats = admin.stats()          # RegistryStats; stats.as_json() for one JSON object
        for key in admin.list_keys():  # KeyInfo
            ...

Errors are the SDK's own (numbind.sdk.errors); a registry that cannot be reached raises
Unavailable.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from numbind.protocol.bundle import Bundle
from numbind.sdk.channel import secure_channel
from numbind.sdk.errors import from_rpc_error
from numbind.v1 import admin_pb2, admin_pb2_grpc, tokens_pb2

__all__ = [
    "AdminClient",
    "KeyInfo",
    "KeyRotation",
    "OrderCounts",
    "PrincipalUsage",
    "RegistryStats",
    "RekeyProgress",
]

_KEY_STATES = {1: "ACTIVE", 2: "EVALUATE_ONLY", 3: "RETIRED"}
_REKEY_STATES = {admin_pb2.REKEY_STATE_RUNNING: "RUNNING", admin_pb2.REKEY_STATE_DONE: "DONE"}
_ROLES = {1: "platform", 2: "carrier", 3: "admin", 4: "registry"}
_TIMEOUT = 30.0


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    public_key: bytes
    state: str  # ACTIVE, EVALUATE_ONLY or RETIRED
    created_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "public_key": self.public_key.hex(),
            "state": self.state,
            "created_at": _iso(self.created_at),
        }


@dataclass(frozen=True)
class RekeyProgress:
    """The registry's latest store re-key: after a rotation every stored token is moved to
    the new key in the background."""

    from_key_id: str
    to_key_id: str
    state: str  # RUNNING or DONE
    rows_done: int
    rows_total: int  # rows under the old key when it started; 0 until counted
    rows_per_second: float  # since the current runner took over; 0 before it converted any
    eta_seconds: float  # at that rate; 0 when done or not yet known
    started_at: datetime | None
    finished_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "from_key_id": self.from_key_id,
            "to_key_id": self.to_key_id,
            "state": self.state,
            "rows_done": self.rows_done,
            "rows_total": self.rows_total,
            "rows_per_second": round(self.rows_per_second, 1),
            "eta_seconds": round(self.eta_seconds, 1),
            "started_at": _iso(self.started_at),
        }
        if self.finished_at is not None:
            out["finished_at"] = _iso(self.finished_at)
        return out


@dataclass(frozen=True)
class KeyRotation:
    """What `rotate_key` did: the new active key, and the store re-key it started (None on
    a store that held no key before)."""

    key: KeyInfo
    rekey: RekeyProgress | None

    def as_json(self) -> dict[str, Any]:
        out = self.key.as_json()
        if self.rekey is not None:
            out["rekey"] = self.rekey.as_json()
        return out


@dataclass(frozen=True)
class OrderCounts:
    """Revocation orders by state. ``overdue`` are open orders past their deadline; they
    are not counted again under pending or delivered."""

    pending: int
    delivered: int
    overdue: int
    done: int
    rejected: int

    @property
    def total(self) -> int:
        return self.pending + self.delivered + self.overdue + self.done + self.rejected


@dataclass(frozen=True)
class PrincipalUsage:
    role: str  # platform, carrier, admin or registry (a federation peer)
    principal_id: str
    tokens_evaluated: int
    reassigned_checks: int


@dataclass(frozen=True)
class RegistryStats:
    platforms: int
    carriers: int
    active_bindings: int
    numbers: int
    orders: OrderCounts
    usage: tuple[PrincipalUsage, ...]
    # The latest store re-key, running or done; None before the first rotation.
    rekey: RekeyProgress | None = None

    def as_json(self) -> dict[str, Any]:
        """One JSON-ready object, grouped as the table `numbind admin stats` prints."""
        return {
            "principals": {"platforms": self.platforms, "carriers": self.carriers},
            "bindings": {"active": self.active_bindings},
            "numbers": self.numbers,
            "orders": {
                "pending": self.orders.pending,
                "delivered": self.orders.delivered,
                "overdue": self.orders.overdue,
                "done": self.orders.done,
                "rejected": self.orders.rejected,
                "total": self.orders.total,
            },
            "usage": [
                {
                    "role": u.role,
                    "principal_id": u.principal_id,
                    "tokens_evaluated": u.tokens_evaluated,
                    "reassigned_checks": u.reassigned_checks,
                }
                for u in self.usage
            ],
            "rekey": None if self.rekey is None else self.rekey.as_json(),
        }


class AdminClient:
    def __init__(self, bundle: Bundle, *, address: str | None = None) -> None:
        """``address`` overrides the registry address written in the bundle."""
        self.address = address or bundle.registry
        self._channel = secure_channel(bundle, aio=False, target=address)
        self._stub = admin_pb2_grpc.AdminStub(self._channel)

    @classmethod
    def from_bundle(cls, directory: Path | str, *, address: str | None = None) -> AdminClient:
        return cls(Bundle.load(directory), address=address)

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, fn: Any, request: Any) -> Any:
        try:
            return fn(request, timeout=_TIMEOUT)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    def rotate_key(self, request_id: str | None = None) -> KeyRotation:
        """A new active key; the registry starts re-keying its store to it (refused while
        an earlier re-key still runs)."""
        rid = request_id or uuid.uuid4().hex
        resp = self._call(self._stub.RotateKey, admin_pb2.RotateKeyRequest(request_id=rid))
        return KeyRotation(
            key=_key(resp.key), rekey=_rekey(resp.rekey) if resp.HasField("rekey") else None
        )

    def retire_key(self, key_id: str, request_id: str | None = None) -> None:
        rid = request_id or uuid.uuid4().hex
        self._call(self._stub.RetireKey, admin_pb2.RetireKeyRequest(request_id=rid, key_id=key_id))

    def export_key(self, key_id: str) -> bytes:
        """The key's secret scalar: handle it as the key itself."""
        resp = self._call(self._stub.ExportKey, admin_pb2.ExportKeyRequest(key_id=key_id))
        return bytes(resp.secret_scalar)

    def list_keys(self) -> list[KeyInfo]:
        resp = self._call(self._stub.ListKeys, admin_pb2.ListKeysRequest())
        return [_key(k) for k in resp.keys]

    def stats(self) -> RegistryStats:
        r = self._call(self._stub.GetStats, admin_pb2.GetStatsRequest())
        return RegistryStats(
            platforms=r.platforms,
            carriers=r.carriers,
            active_bindings=r.active_bindings,
            numbers=r.numbers,
            orders=OrderCounts(
                pending=r.orders_pending,
                delivered=r.orders_delivered,
                overdue=r.orders_overdue,
                done=r.orders_done,
                rejected=r.orders_rejected,
            ),
            usage=tuple(
                PrincipalUsage(
                    role=_ROLES.get(u.role, "unknown"),
                    principal_id=u.principal_id,
                    tokens_evaluated=u.tokens_evaluated,
                    reassigned_checks=u.reassigned_checks,
                )
                for u in r.usage
            ),
            rekey=_rekey(r.rekey) if r.HasField("rekey") else None,
        )


def _key(k: tokens_pb2.KeyInfo) -> KeyInfo:
    return KeyInfo(
        key_id=k.key_id,
        public_key=bytes(k.public_key),
        state=_KEY_STATES.get(k.state, "UNKNOWN"),
        created_at=k.created_at.ToDatetime(tzinfo=UTC) if k.HasField("created_at") else None,
    )


def _rekey(p: admin_pb2.RekeyProgress) -> RekeyProgress:
    return RekeyProgress(
        from_key_id=p.from_key_id,
        to_key_id=p.to_key_id,
        state=_REKEY_STATES.get(p.state, "UNKNOWN"),
        rows_done=p.rows_done,
        rows_total=p.rows_total,
        rows_per_second=p.rows_per_second,
        eta_seconds=p.eta_seconds,
        started_at=_when(p, "started_at"),
        finished_at=_when(p, "finished_at"),
    )


def _when(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    moment: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return moment


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
