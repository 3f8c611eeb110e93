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

__all__ = ["AdminClient", "KeyInfo", "OrderCounts", "PrincipalUsage", "RegistryStats"]

_KEY_STATES = {1: "ACTIVE", 2: "EVALUATE_ONLY", 3: "RETIRED"}
_ROLES = {1: "platform", 2: "carrier", 3: "admin"}
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
    role: str  # platform, carrier or admin
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

    def rotate_key(self, request_id: str | None = None) -> KeyInfo:
        rid = request_id or uuid.uuid4().hex
        resp = self._call(self._stub.RotateKey, admin_pb2.RotateKeyRequest(request_id=rid))
        return _key(resp.key)

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
        )


def _key(k: tokens_pb2.KeyInfo) -> KeyInfo:
    return KeyInfo(
        key_id=k.key_id,
        public_key=bytes(k.public_key),
        state=_KEY_STATES.get(k.state, "UNKNOWN"),
        created_at=k.created_at.ToDatetime(tzinfo=UTC) if k.HasField("created_at") else None,
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
