"""Wire <-> domain conversions that more than one servicer needs."""

from __future__ import annotations

import hashlib

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from numbind.registry.domain.keymap import RekeyStatus
from numbind.registry.domain.types import Token
from numbind.registry.keys import TokenKey
from numbind.v1 import admin_pb2, common_pb2, tokens_pb2


def ts_from_us(us: int | None) -> Timestamp:
    ts = Timestamp()
    if us is not None:
        ts.FromMicroseconds(us)
    return ts


def us_from_ts(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def key_info(key: TokenKey) -> tokens_pb2.KeyInfo:
    return tokens_pb2.KeyInfo(
        key_id=key.key_id,
        public_key=key.public_key,
        created_at=ts_from_us(key.created_us),
        state=int(key.state),  # type: ignore[arg-type]
    )


def rekey_to_wire(status: RekeyStatus) -> admin_pb2.RekeyProgress:
    return admin_pb2.RekeyProgress(
        from_key_id=status.from_key_id,
        to_key_id=status.to_key_id,
        state=int(status.state),  # type: ignore[arg-type]
        rows_total=status.rows_total or 0,
        rows_done=status.rows_done,
        rows_per_second=status.rows_per_second,
        eta_seconds=status.eta_seconds,
        started_at=ts_from_us(status.started_us),
        finished_at=ts_from_us(status.finished_us) if status.finished_us else None,
    )


def body_hash(request: Message, without: tuple[str, ...] = ()) -> bytes:
    """SHA-256 of the request without its request_id (and any `without` fields): tells a
    retry from a reused id."""
    copy = type(request)()
    copy.CopyFrom(request)
    for name in ("request_id", *without):
        copy.ClearField(name)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).digest()


def token_from_wire(token: common_pb2.Token) -> Token:
    return Token(token.key_id, bytes(token.value))
