"""Wire <-> domain conversions that more than one servicer needs."""

from __future__ import annotations

import hashlib

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from numbind.registry.domain.types import Token
from numbind.registry.keys import TokenKey
from numbind.v1 import common_pb2, tokens_pb2


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
