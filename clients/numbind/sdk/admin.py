"""A small synchronous client for the Admin service (used by `numbind admin ...`)."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
from numbind.protocol.bundle import Bundle
from numbind.sdk.channel import secure_channel
from numbind.sdk.errors import from_rpc_error
from numbind.v1 import admin_pb2, admin_pb2_grpc

T = TypeVar("T")
_STATES = {1: "ACTIVE", 2: "EVALUATE_ONLY", 3: "RETIRED"}


class AdminClient:
    def __init__(self, bundle: Bundle, *, address: str | None = None) -> None:
        self._channel = secure_channel(bundle, aio=False, target=address)
        self._stub = admin_pb2_grpc.AdminStub(self._channel)

    @classmethod
    def from_bundle(cls, directory: Path | str) -> AdminClient:
        return cls(Bundle.load(directory))

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._channel.close()

    def _call(self, fn: Any, request: Any) -> Any:
        try:
            return fn(request, timeout=30)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    def rotate_key(self, request_id: str | None = None) -> dict[str, Any]:
        rid = request_id or uuid.uuid4().hex
        resp = self._call(self._stub.RotateKey, admin_pb2.RotateKeyRequest(request_id=rid))
        out = {"key_id": resp.key.key_id, "state": _STATES.get(resp.key.state, "?")}
        if resp.HasField("rekey"):
            out["rekey"] = rekey_dict(resp.rekey)
        return out

    def retire_key(self, key_id: str) -> None:
        self._call(
            self._stub.RetireKey,
            admin_pb2.RetireKeyRequest(request_id=uuid.uuid4().hex, key_id=key_id),
        )

    def export_key(self, key_id: str) -> str:
        resp = self._call(self._stub.ExportKey, admin_pb2.ExportKeyRequest(key_id=key_id))
        return bytes(resp.secret_scalar).hex()

    def list_keys(self) -> list[dict[str, Any]]:
        resp = self._call(self._stub.ListKeys, admin_pb2.ListKeysRequest())
        return [
            {
                "key_id": k.key_id,
                "public_key": k.public_key.hex(),
                "state": _STATES.get(k.state, "?"),
                "created_at": k.created_at.ToJsonString(),
            }
            for k in resp.keys
        ]

    def stats(self) -> dict[str, Any]:
        resp = self._call(self._stub.GetStats, admin_pb2.GetStatsRequest())
        out: dict[str, Any] = {
            f.name: getattr(resp, f.name)
            for f in resp.DESCRIPTOR.fields
            if f.name not in ("usage", "rekey")
        }
        out["usage"] = [
            {
                "principal": u.principal_id,
                "tokens_evaluated": u.tokens_evaluated,
                "reassigned_checks": u.reassigned_checks,
            }
            for u in resp.usage
        ]
        if resp.HasField("rekey"):
            out["rekey"] = rekey_dict(resp.rekey)
        return out


_REKEY_STATES = {admin_pb2.REKEY_STATE_RUNNING: "RUNNING", admin_pb2.REKEY_STATE_DONE: "DONE"}


def rekey_dict(p: admin_pb2.RekeyProgress) -> dict[str, Any]:
    """A store re-key's progress as `admin stats` prints it."""
    out: dict[str, Any] = {
        "from_key_id": p.from_key_id,
        "to_key_id": p.to_key_id,
        "state": _REKEY_STATES.get(p.state, "?"),
        "rows_done": p.rows_done,
        "rows_total": p.rows_total,
        "rows_per_second": round(p.rows_per_second, 1),
        "eta_seconds": round(p.eta_seconds, 1),
        "started_at": p.started_at.ToJsonString(),
    }
    if p.HasField("finished_at"):
        out["finished_at"] = p.finished_at.ToJsonString()
    return out
