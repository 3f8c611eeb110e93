"""Every malformed PublishBindings, WithdrawBindings, GetDigest and ListBindings request
is INVALID_ARGUMENT, names what is wrong, and writes nothing; over real gRPC with mTLS, on
every storage backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from google.protobuf.timestamp_pb2 import Timestamp
from numbind.v1 import common_pb2, platforms_pb2

from tests.e2e._bindings import (
    NOW_US,
    US,
    Platform,
    Pub,
    Wd,
    digest,
    key_of,
    make,
    refusal,
)
from tests.tokens import token_in_bucket


def _set(field: str, value: object) -> Callable[[common_pb2.Binding], None]:
    def apply(b: common_pb2.Binding) -> None:
        if field == "bound_at":
            b.ClearField("bound_at")
            if value:
                assert isinstance(value, int)
                b.bound_at.CopyFrom(_ts(value))
        elif field in ("key_id", "value"):
            setattr(b.token, field, value)
        else:
            setattr(b, field, value)

    return apply


def _ts(us: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMicroseconds(us)
    return ts


# (what is wrong, change to item 3 of a valid batch of 6, words the message must contain)
BAD_ITEMS = [
    ("31-byte token", _set("value", bytes(31)), "bindings[3].token.value: got 31 bytes"),
    ("identity token", _set("value", bytes(32)), "bindings[3].token.value: got the identity"),
    (
        "odd (negative) encoding",
        _set("value", b"\x01" + bytes(31)),
        "bindings[3].token.value: got a non-canonical or invalid encoding, want a canonical",
    ),
    (
        "non-canonical encoding (p)",
        _set("value", (2**255 - 19).to_bytes(32, "little")),
        "bindings[3].token.value: got a non-canonical or invalid encoding",
    ),
    ("empty token", _set("value", b""), "bindings[3].token.value: got 0 bytes"),
    ("unknown key id", _set("key_id", "00000000000000ff"), "bindings[3].token.key_id"),
    ("malformed key id", _set("key_id", "Nope"), "bindings[3].token.key_id: got 'Nope'"),
    ("empty account_ref", _set("account_ref", b""), "bindings[3].account_ref: got 0 bytes"),
    ("65-byte ref", _set("account_ref", bytes(65)), "bindings[3].account_ref: got 65 bytes"),
    ("kind unspecified", _set("kind", 0), "bindings[3].kind: got 0"),
    ("kind out of range", _set("kind", 9), "bindings[3].kind: got 9"),
    ("bound_at future", _set("bound_at", NOW_US + 3600 * US), "bindings[3].bound_at: got 20"),
    ("bound_at 1989", _set("bound_at", 599_616_000 * US), "bindings[3].bound_at: got 1989"),
    ("bound_at unset", _set("bound_at", 0), "bindings[3].bound_at: got unset"),
]


async def test_every_bad_publish_is_invalid_argument_and_writes_nothing(acme: Platform) -> None:
    kept = [make(acme.key_id) for _ in range(4)]
    await acme.stub.PublishBindings(Pub(request_id="good", bindings=kept))
    before = await digest(acme, 16)

    async def refused(request: Pub, words: str) -> None:
        details = await refusal(lambda: acme.stub.PublishBindings(request))
        assert words in details, (words, details)
        assert await digest(acme, 16) == before, words

    for what, change, words in BAD_ITEMS:
        batch = [make(acme.key_id) for _ in range(6)]
        change(batch[3])
        await refused(Pub(request_id=f"bad-{what.replace(' ', '-')}", bindings=batch), words)
    batch = [make(acme.key_id) for _ in range(6)]
    batch[5] = make(acme.key_id, batch[2].token.value, batch[2].account_ref, kind=2)
    await refused(
        Pub(request_id="dup", bindings=batch),
        "bindings[5]: got the same token and account_ref as bindings[2]",
    )
    await refused(Pub(request_id="empty", bindings=[]), "bindings: got 0 items, want 1..10000")
    big = [make(acme.key_id) for _ in range(10_001)]
    await refused(Pub(request_id="big", bindings=big), "bindings: got 10001 items")
    for rid in ("", "has space", "x" * 129):
        await refused(Pub(request_id=rid, bindings=kept), "request_id: got")
    # Refused requests consumed nothing: their ids are still free.
    ok = await acme.stub.PublishBindings(Pub(request_id="bad-kind-unspecified", bindings=kept))
    assert ok.unchanged == 4


async def test_every_bad_withdraw_digest_or_list_is_invalid_argument(acme: Platform) -> None:
    kept = [make(acme.key_id, token_in_bucket(0x0707)) for _ in range(3)]
    await acme.stub.PublishBindings(Pub(request_id="good", bindings=kept))
    before = await digest(acme, 16)
    good = key_of(make(acme.key_id))
    short = common_pb2.BindingKey(
        token=common_pb2.Token(key_id=acme.key_id, value=bytes(10)), account_ref=b"a"
    )
    no_ref = common_pb2.BindingKey(token=kept[0].token, account_ref=b"")
    Call = Callable[[], Awaitable[object]]

    def wd(*keys: common_pb2.BindingKey, rid: str = "w") -> Call:
        return lambda: acme.stub.WithdrawBindings(Wd(request_id=rid, bindings=keys))

    def dg(**fields: object) -> Call:
        return lambda: acme.stub.GetDigest(platforms_pb2.GetDigestRequest(**fields))  # type: ignore[arg-type]

    def ls(**fields: object) -> Call:
        return lambda: acme.stub.ListBindings(platforms_pb2.ListBindingsRequest(**fields))  # type: ignore[arg-type]

    cases: list[tuple[Call, str]] = [
        (wd(), "bindings: got 0 items"),
        (wd(good, short), "bindings[1].token.value: got 10 bytes"),
        (wd(key_of(kept[1]), no_ref), "bindings[1].account_ref: got 0 bytes"),
        (
            wd(key_of(kept[0]), good, key_of(kept[0])),
            "bindings[2]: got the same token and account_ref as bindings[0]",
        ),
        (wd(key_of(kept[0]), rid=""), "request_id: got ''"),
        (dg(bucket_bits=17), "bucket_bits: got 17, want 0..16"),
        (dg(key_id="KEY"), "key_id: got 'KEY'"),
        (ls(bucket_bits=17), "bucket_bits: got 17, want 0..16"),
        (ls(bucket_bits=2, bucket=4), "bucket: got 4, want 0..3"),
        (ls(page_size=10_001), "page_size: got 10001"),
        (ls(page_token="not*base64"), "page_token: got"),
    ]
    for call, words in cases:
        details = await refusal(call)
        assert words in details, (words, details)
    # A real page token, replayed against another bucket, is refused too.
    first = await acme.stub.ListBindings(
        platforms_pb2.ListBindingsRequest(bucket_bits=16, bucket=0x0707, page_size=1)
    )
    assert first.next_page_token
    details = await refusal(
        lambda: acme.stub.ListBindings(
            platforms_pb2.ListBindingsRequest(
                bucket_bits=16, bucket=0x0708, page_token=first.next_page_token
            )
        )
    )
    assert "page_token: got" in details
    assert await digest(acme, 16) == before
