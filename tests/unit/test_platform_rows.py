"""The platform SDK's pure parts, without a registry: values, the snapshot store, pipelines
and retries."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio
import pytest
from numbind.protocol.digest import binding_digest, bucket_of, xor
from numbind.sdk import AccountRefs, Kind, PlatformClient, Record, Row, errors
from numbind.sdk.account_refs import ACCOUNT_REF_KEY_FILE
from numbind.sdk.bindings import BindingRpc
from numbind.sdk.model import from_us, to_us
from numbind.sdk.pipeline import chunks_by_key, pipeline
from numbind.sdk.retry import RetryPolicy
from numbind.sdk.snapshot import SnapshotStore, choose_bucket_bits
from numbind.v1 import common_pb2

from tests.unit._bundles import bare_platform_bundle

PHONE = "13800138000"


# ---- SDK values --------------------------------------------------------------------------


def test_kind_matches_the_wire_enum() -> None:
    for kind in Kind:
        assert common_pb2.BindingKind.Value(f"BINDING_KIND_{kind.name}") == kind.value
    assert Kind.parse(" payment ") is Kind.PAYMENT
    with pytest.raises(ValueError, match="want one of"):
        Kind.parse("SMS")


def test_row_hides_number_and_checks_time() -> None:
    row = Row(PHONE, "acct-secret", datetime(2024, 1, 1, tzinfo=UTC), Kind.LOGIN)
    assert PHONE not in repr(row) and "acct-secret" not in repr(row)
    with pytest.raises(ValueError, match="no UTC offset"):
        Row(PHONE, "a", datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="future"):
        Row(PHONE, "a", datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(ValueError, match="account_id"):
        Row(PHONE, "", datetime(2024, 1, 1, tzinfo=UTC))


def test_microsecond_conversion_is_exact() -> None:
    moment = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=8)))
    assert from_us(to_us(moment)) == moment
    assert to_us(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == -1


def test_account_ref_key_file_created_once_0600(tmp_path: Path) -> None:
    refs = AccountRefs.from_bundle(tmp_path)
    key_file = tmp_path / ACCOUNT_REF_KEY_FILE
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    again = AccountRefs.from_bundle(tmp_path)
    assert refs("user-1") == again("user-1") != refs("user-2")
    assert len(refs("user-1")) == 32
    assert "user" not in repr(refs) and key_file.read_text().strip() not in repr(refs)
    other = AccountRefs(b"\x01" * 32)
    assert other("user-1") != refs("user-1")
    with pytest.raises(ValueError):
        AccountRefs(b"short")


def test_bucket_bits_follow_snapshot_size() -> None:
    assert choose_bucket_bits(0) == 0
    assert choose_bucket_bits(256) == 0
    assert choose_bucket_bits(100_000) == 9
    assert choose_bucket_bits(10_000_000) == 15
    assert choose_bucket_bits(10**12) == 16


def _token(i: int) -> bytes:
    return i.to_bytes(4, "big") * 8


def test_store_digests_match_the_shared_definition_even_with_duplicates(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    try:
        items = [(_token(i * 7919), b"ref%d" % i, 1_700_000_000_000_000 + i, 1) for i in range(300)]
        store.add("k" * 16, items[:200], 0)
        # A repeat with a later bound_at wins; an exact repeat changes nothing.
        later = (items[5][0], items[5][1], items[5][2] + 10, 2)
        store.add("k" * 16, [*items[200:], later, items[6]], 200)
        assert store.finish() == 300
        final = [later if i == 5 else item for i, item in enumerate(items)]
        for bits in (0, 3, 16):
            want: dict[int, tuple[int, bytes]] = {}
            for token, ref, us, kind in final:
                b = bucket_of(token, bits)
                n, d = want.get(b, (0, bytes(32)))
                want[b] = (n + 1, xor(d, binding_digest("k" * 16, token, ref, us, kind)))
            assert store.buckets(bits) == want
        # Rows under another key (the registry rotated during the fill) are kept with
        # their key, to be tokenised again under the key the sync settles on.
        extra = (_token(7), b"other", 1_700_000_000_000_000, 1)
        store.add("j" * 16, [extra], 300, ["+8613800138000"])
        assert store.mixed and store.keys() == {"k" * 16, "j" * 16}
        [stale] = store.stale("k" * 16, 10)
        assert stale[1:] == (*extra, "+8613800138000")
    finally:
        store.close()
    assert list(tmp_path.iterdir()) == []


def test_store_retokenised_rows_keep_their_snapshot_positions(tmp_path: Path) -> None:
    """After a rotation the sync tokenises stale rows again: each keeps its 1-based position
    (so a refusal still names the caller's row), and a binding that also arrived under the
    new key keeps the later bound_at."""
    store = SnapshotStore(tmp_path)
    try:
        old = [(_token(i), b"ref%d" % i, 1_700_000_000_000_000 + i, 1) for i in range(3)]
        phones = [f"+861380000000{i}" for i in range(3)]
        store.add("k" * 16, old, 0, phones)
        # Row 4 is row 2's binding again, already under the new key, with a later bound_at.
        again = (_token(101), b"ref1", old[1][2] + 5, 2)
        store.add("j" * 16, [again], 3, ["+8613800000001"])
        stale = store.stale("j" * 16, 10)
        assert sorted(str(r[-1]) for r in stale) == phones
        by_e164 = {phone: _token(100 + i) for i, phone in enumerate(phones)}
        store.replace(stale, [by_e164[str(r[-1])] for r in stale], "j" * 16)
        assert store.keys() == {"j" * 16} and not store.mixed and store.stale("j" * 16, 10) == []
        store.refold()
        assert store.finish() == 3
        rows = store.bucket(0, 0)
        assert rows[(_token(100), b"ref0")] == (old[0][2], 1, 1)
        assert rows[(_token(101), b"ref1")] == (again[2], 2, 4)  # the later one, row 4
        assert rows[(_token(102), b"ref2")] == (old[2][2], 1, 3)
        want: dict[int, tuple[int, bytes]] = {}
        for (token, ref), (us, kind, _) in rows.items():
            n, d = want.get(0, (0, bytes(32)))
            want[0] = (n + 1, xor(d, binding_digest("j" * 16, token, ref, us, kind)))
        assert store.buckets(0) == want
    finally:
        store.close()


def test_store_rows_skipped_as_revoked_leave_the_digests_and_come_back_on_reset(
    tmp_path: Path,
) -> None:
    """A sync skips snapshot rows the registry revoked: they leave the snapshot's digests for
    this comparison. A rotation restarts the comparison (reset_plan): they come back, still
    with their E.164 and position, to be tokenised under the new key and checked again."""
    store = SnapshotStore(tmp_path)
    try:
        items = [(_token(i * 31), b"ref%d" % i, 1_700_000_000_000_000 + i, 1) for i in range(6)]
        phones = [f"+861380000000{i}" for i in range(6)]
        store.add("k" * 16, items, 0, phones)
        assert store.finish() == 6
        whole = {bits: store.buckets(bits) for bits in (0, 4, 16)}
        skipped = [items[1], items[4]]
        store.drop([(t, r, us, k, pos) for (t, r, us, k), pos in zip(skipped, (2, 5), strict=True)])
        kept = [item for i, item in enumerate(items) if i not in (1, 4)]
        for bits in (0, 4, 16):
            want: dict[int, tuple[int, bytes]] = {}
            for token, ref, us, kind in kept:
                b = bucket_of(token, bits)
                n, d = want.get(b, (0, bytes(32)))
                want[b] = (n + 1, xor(d, binding_digest("k" * 16, token, ref, us, kind)))
            assert store.buckets(bits) == want
        assert set(store.bucket(0, 0)) == {(t, r) for t, r, _, _ in kept}
        store.reset_plan()
        assert {bits: store.buckets(bits) for bits in (0, 4, 16)} == whole
        rows = store.bucket(0, 0)
        assert rows[(items[1][0], items[1][1])] == (items[1][2], 1, 2)
        assert rows[(items[4][0], items[4][1])] == (items[4][2], 1, 5)
        assert sorted(str(r[-1]) for r in store.stale("j" * 16, 10)) == phones
        store.reset_plan()  # nothing skipped: nothing changes
        assert store.buckets(16) == whole[16]
    finally:
        store.close()


async def test_chunks_by_key_never_mix_keys() -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    records = [
        Record(_token(i), "a" * 16 if i < 3 or i > 6 else "b" * 16, b"r", when, Kind.LOGIN)
        for i in range(10)
    ]
    got = [
        (start, [r.key_id[0] for r in chunk]) async for start, chunk in chunks_by_key(records, 4)
    ]
    assert got == [
        (0, ["a", "a", "a"]),
        (3, ["b"]),
        (4, ["b", "b", "b"]),
        (7, ["a"]),
        (8, ["a", "a"]),
    ]


async def test_pipeline_bounds_reading_and_raises_the_first_error_unwrapped() -> None:
    produced = 0
    gate = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        nonlocal produced
        for i in range(100):
            produced += 1
            yield i

    async def slow(_: int) -> None:
        await gate.wait()

    task = asyncio.create_task(pipeline(source(), slow, 2))
    await asyncio.sleep(0.05)
    # 2 workers busy + 2 queued + 1 waiting to be queued: back-pressure holds the rest.
    assert produced <= 5
    gate.set()
    await task
    assert produced == 100

    async def failing(i: int) -> None:
        if i == 3:
            raise KeyError("boom")

    with pytest.raises(KeyError):
        await pipeline(source(), failing, 2)


class _FakeStub:
    """PublishBindings that fails UNAVAILABLE once, then answers; records request ids."""

    def __init__(self) -> None:
        self.request_ids: list[str] = []

    def PublishBindings(self, request: Any, **_: Any) -> Awaitable[Any]:
        # Like a grpc.aio multicallable: a plain call returning something awaitable.
        return self._answer(request)

    async def _answer(self, request: Any) -> Any:
        from numbind.v1 import platforms_pb2

        self.request_ids.append(request.request_id)
        if len(self.request_ids) == 1:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(("retry-after-ms", "1")),
                "try later",
            )
        if len(self.request_ids) == 3:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                "bindings[0].token.key_id: not live",
            )
        return platforms_pb2.PublishBindingsResponse(inserted=len(request.bindings))


async def test_publish_retries_with_the_same_request_id_and_raises_typed_errors(
    tmp_path: Path,
) -> None:
    bundle = bare_platform_bundle(tmp_path)
    client = PlatformClient(bundle, retry=RetryPolicy(base=0.001), in_flight=1)
    stub = _FakeStub()
    # No registry here: stand in for the channel's stub and tokenizer.
    client._channel = cast(Any, object())
    client._rpc = BindingRpc(cast(Any, stub), in_flight=1, retry=client._retry, timeout=5.0)
    client._tokenizer = cast(Any, object())
    when = datetime(2024, 1, 1, tzinfo=UTC)
    records = [Record(_token(i), "a" * 16, b"r", when, Kind.LOGIN) for i in range(3)]
    summary = await client.publish_records(records)
    assert summary.inserted == 3
    assert stub.request_ids[0] == stub.request_ids[1]
    with pytest.raises(errors.InvalidRequest, match="not live") as err:
        await client.publish_records(records)
    assert not isinstance(err.value, grpc.RpcError)
    assert len(set(stub.request_ids)) == 2
