"""Binding files (CSV / JSON Lines) as the CLI reads them: good rows, bad rows, headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from numbind.cli.rows import (
    FileFormatError,
    RowError,
    csv_delimiter,
    delimiter_name,
    detect_format,
    read_rows,
)
from numbind.sdk import Kind, Row

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
