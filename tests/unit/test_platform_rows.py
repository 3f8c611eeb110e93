"""Binding files (CSV / JSON Lines) and the platform SDK's pure parts, without a registry."""

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
from numbind.cli.rows import (
    FileFormatError,
    RowError,
    csv_delimiter,
    delimiter_name,
    detect_format,
    read_rows,
)
from numbind.protocol.bundle import Bundle
from numbind.protocol.digest import binding_digest, bucket_of, xor
from numbind.sdk import AccountRefs, Kind, PlatformClient, Record, Row, errors
from numbind.sdk.account_refs import ACCOUNT_REF_KEY_FILE
from numbind.sdk.bindings import BindingRpc
from numbind.sdk.model import from_us, to_us
from numbind.sdk.pipeline import chunks_by_key, pipeline
from numbind.sdk.retry import RetryPolicy
from numbind.sdk.snapshot import SnapshotStore, choose_bucket_bits
from numbind.v1 import common_pb2

PHONE = "13800138000"
OTHER_PHONE = "13912345678"
HEADER = "phone,account_id,bound_at,kind\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _parse(path: Path) -> tuple[list[Row], list[RowError]]:
    rows: list[Row] = []
    errors: list[RowError] = []
    for item in read_rows(path):
        (errors if isinstance(item, RowError) else rows).append(item)  # type: ignore[arg-type]
    return rows, errors


def _assert_no_number(errors: list[RowError]) -> None:
    for error in errors:
        text = str(error)
        assert PHONE not in text and OTHER_PHONE not in text and "138" not in text, text


# ---- good files --------------------------------------------------------------------------


def test_csv_good_rows(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "b.csv",
        "\ufeffKind, phone ,bound_at,account_id,extra\n"
        f"login,{PHONE},2024-05-01T08:00:00+08:00,u-1,x\n"
        "\n"
        f"PAYMENT,+86 139 1234 5678,2024-05-01T00:00:00.123456Z,u-2,y\n",
    )
    rows, errors = _parse(path)
    assert errors == []
    assert [(r.phone, r.account_id, r.kind) for r in rows] == [
        ("+8613800138000", "u-1", Kind.LOGIN),
        ("+8613912345678", "u-2", Kind.PAYMENT),
    ]
    assert rows[0].bound_at == datetime(2024, 5, 1, tzinfo=UTC)
    assert rows[1].bound_at == datetime(2024, 5, 1, 0, 0, 0, 123456, tzinfo=UTC)


def test_jsonl_good_rows_accept_integer_phone_and_account(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "b.jsonl",
        f'{{"phone": "{PHONE}", "account_id": "a", "bound_at": "2024-01-01T00:00:00Z",'
        ' "kind": "Recovery"}\n'
        "\n"
        f'{{"phone": {OTHER_PHONE}, "account_id": 42, "bound_at": "2023-06-01T12:00:00-05:00",'
        ' "kind": "other", "note": "ignored"}\n',
    )
    rows, errors = _parse(path)
    assert errors == []
    assert [(r.phone, r.account_id, r.kind) for r in rows] == [
        ("+8613800138000", "a", Kind.RECOVERY),
        ("+8613912345678", "42", Kind.OTHER),
    ]
    assert rows[1].bound_at.utcoffset() == timedelta(hours=-5)


def test_format_detection(tmp_path: Path) -> None:
    assert detect_format(_write(tmp_path, "a.CSV", HEADER)) == "csv"
    assert detect_format(_write(tmp_path, "a.ndjson", "{}")) == "jsonl"
    assert detect_format(_write(tmp_path, "a.jsonl", "x")) == "jsonl"
    assert detect_format(_write(tmp_path, "a.txt", '\n  {"phone": 1}\n')) == "jsonl"
    assert detect_format(_write(tmp_path, "b.txt", HEADER)) == "csv"
    assert detect_format(_write(tmp_path, "c.txt", "{"), "csv") == "csv"
    with pytest.raises(FileFormatError):
        detect_format(tmp_path / "c.txt", "xml")


def test_content_detected_jsonl_parses(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "export.data",
        f'{{"phone": "{PHONE}", "account_id": "a", "bound_at": "2024-01-01T00:00:00Z",'
        ' "kind": "login"}\n',
    )
    rows, errors = _parse(path)
    assert len(rows) == 1 and not errors


# ---- bad rows ----------------------------------------------------------------------------


def test_csv_bad_rows_name_line_field_and_reason_never_the_number(tmp_path: Path) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    lines = [
        f"{PHONE},ok,2024-01-01T00:00:00Z,login",  # 2: fine
        "12345,a,2024-01-01T00:00:00Z,login",  # 3: not valid
        "not-a-number,a,2024-01-01T00:00:00Z,login",  # 4: not a phone number
        f"{PHONE},,2024-01-01T00:00:00Z,login",  # 5: account missing
        f"{PHONE},a,2024-01-01 00:00:00,login",  # 6: no offset
        f"{PHONE},a,yesterday,login",  # 7: not a time
        f"{PHONE},a,{future},login",  # 8: future
        f"{PHONE},a,1989-12-31T23:59:59Z,login",  # 9: too early
        f"{PHONE},a,2024-01-01T00:00:00Z,{OTHER_PHONE}",  # 10: number in the kind column
        f"{PHONE},a,2024-01-01T00:00:00Z",  # 11: a field short
        f"{PHONE},a,2024-01-01,login",  # 12: a date is not a time with offset
        "",
        f'"{PHONE}\nstill the phone",a,2024-01-01T00:00:00Z,login',  # 14 (two lines)
        f"{OTHER_PHONE},b,2024-01-01T00:00:00Z,NOTIFICATION",  # 16: fine
    ]
    path = _write(tmp_path, "b.csv", HEADER + "\n".join(lines) + "\n")
    rows, errors = _parse(path)
    assert [r.account_id for r in rows] == ["ok", "b"]
    got = [(e.line, e.field, e.reason) for e in errors]
    assert got == [
        (3, "phone", "not a valid number for its region"),
        (4, "phone", "not a phone number"),
        (5, "account_id", "missing"),
        (6, "bound_at", "no UTC offset (write Z or +hh:mm)"),
        (7, "bound_at", "not an RFC 3339 time"),
        (8, "bound_at", "in the future"),
        (9, "bound_at", "before 1990-01-01"),
        (
            10,
            "kind",
            "got a value with digits (a number in the wrong column?), want one of LOGIN, "
            "RECOVERY, PAYMENT, NOTIFICATION, OTHER",
        ),
        (11, "row", "got 3 fields, want 4 (as the header)"),
        (12, "bound_at", "no UTC offset (write Z or +hh:mm)"),
        (14, "phone", "not a phone number"),
    ]
    assert str(errors[0]) == "line 3: phone: not a valid number for its region"
    _assert_no_number(errors)


def test_jsonl_bad_rows(tmp_path: Path) -> None:
    good = f'"phone": "{PHONE}", "account_id": "a", "kind": "login"'
    lines = [
        f'{{{good}, "bound_at": "2024-01-01T00:00:00Z"}}',  # 1 fine
        f'{{{good}, "bound_at": "2024-01-01T00:00:00"}}',  # 2 no offset
        f'{{"phone": "{PHONE}", "account_id": "a", "bound_at": "2024-01-01T00:00:00Z"}}',  # 3
        f'["{PHONE}"]',  # 4 not an object
        f'{{"phone": "{PHONE}", ',  # 5 broken JSON
        f'{{{good}, "bound_at": 1704067200}}',  # 6 epoch number
        '{"phone": true, "account_id": "a", "kind": "login",'
        ' "bound_at": "2024-01-01T00:00:00Z"}',  # 7 not a string
        f'{{"phone": "{OTHER_PHONE}0", "account_id": "a", "kind": "login",'
        ' "bound_at": "2024-01-01T00:00:00Z"}',  # 8 too long
    ]
    path = _write(tmp_path, "b.jsonl", "\n".join(lines) + "\n")
    rows, errors = _parse(path)
    assert len(rows) == 1
    assert [(e.line, e.field) for e in errors] == [
        (2, "bound_at"),
        (3, "kind"),
        (4, "row"),
        (5, "row"),
        (6, "bound_at"),
        (7, "phone"),
        (8, "phone"),
    ]
    assert errors[0].reason.startswith("no UTC offset")
    assert errors[1].reason == "missing"
    assert errors[4].reason == "got a JSON int, want a string"
    _assert_no_number(errors)


def test_non_utf8_bytes_fail_their_row_only(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes(
        HEADER.encode()
        + f"{PHONE},caf\xe9,2024-01-01T00:00:00Z,login\n".encode("latin-1")
        + f"{PHONE},ok,2024-01-01T00:00:00Z,login\n".encode()
    )
    rows, errors = _parse(path)
    assert [r.account_id for r in rows] == ["ok"]
    assert [(e.line, e.field, e.reason) for e in errors] == [(2, "account_id", "not UTF-8")]


def test_a_bad_kind_is_echoed_with_the_allowed_values(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "k.csv",
        HEADER
        + f"{PHONE},a,2024-01-01T00:00:00Z,logn\n"
        + f"{PHONE},b,2024-01-01T00:00:00Z,{'x' * 40}\n",
    )
    _, errors = _parse(path)
    allowed = "want one of LOGIN, RECOVERY, PAYMENT, NOTIFICATION, OTHER"
    assert [(e.line, e.field, e.reason) for e in errors] == [
        (2, "kind", f"got 'logn', {allowed}"),
        (3, "kind", f"got '{'x' * 24}…', {allowed}"),
    ]


@pytest.mark.parametrize(("delimiter", "name"), [(";", "semicolon"), ("\t", "tab")])
def test_semicolon_and_tab_files_are_read_by_their_header(
    tmp_path: Path, delimiter: str, name: str
) -> None:
    text = delimiter.join(["phone", "account_id", "bound_at", "kind"]) + "\n"
    text += delimiter.join([PHONE, "a,b", "2024-01-01T00:00:00Z", "login"]) + "\n"
    path = _write(tmp_path, "s.csv", text)
    assert delimiter_name(csv_delimiter(path)) == name
    rows, errors = _parse(path)
    assert errors == [] and [r.account_id for r in rows] == ["a,b"]


def test_a_header_in_another_delimiter_that_still_lacks_columns_gets_a_hint(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, "s.csv", "phone;account;bound_at;kind\n")
    with pytest.raises(FileFormatError) as err:
        list(read_rows(path))
    message = str(err.value)
    assert "line 1: CSV header (read as semicolon-separated) lacks account_id;" in message
    assert "separated by commas, semicolons or tabs" in message


def test_csv_header_problems_fail_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="lacks bound_at"):
        list(read_rows(_write(tmp_path, "a.csv", "phone,account_id,kind\n")))
    with pytest.raises(FileFormatError, match="twice"):
        list(read_rows(_write(tmp_path, "b.csv", "phone,phone,account_id,bound_at,kind\n")))
    with pytest.raises(FileFormatError, match="empty"):
        list(read_rows(_write(tmp_path, "c.csv", "\n\n")))


def test_reader_streams(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "big.csv",
        HEADER + f"{PHONE},a,2024-01-01T00:00:00Z,login\n" * 50_000,
    )
    it = read_rows(path)
    first = next(it)
    assert isinstance(first, Row)  # no need to read the whole file to get a row
    assert sum(1 for _ in it) == 49_999


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
    bundle = Bundle(
        directory=tmp_path,
        registry="127.0.0.1:1",
        role="platform",
        principal_id="acme",
        ca_pem=b"",
        cert_pem=b"",
        key_pem=b"",
    )
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
