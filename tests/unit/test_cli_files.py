"""numbind.cli.files, the one module that checks, reports, resends and locates input rows
for both `numbind platform` and `numbind carrier`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from numbind.cli import files
from numbind.cli.carrier import numbered_reports
from numbind.cli.common import CliError, plural
from numbind.cli.rows import RowError, numbered_rows
from numbind.sdk.errors import InvalidRequest, NumbindClientError
from numbind.sdk.model import Row
from numbind.sdk.progress import Progress

PHONE = "13800138000"
GOOD = f"{PHONE},a,2024-01-01T00:00:00Z,login"


def _bindings(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "b.csv"
    path.write_text("phone,account_id,bound_at,kind\n" + "\n".join(rows) + "\n")
    return path


def _reader(path: Path) -> files.Reader[Row]:
    def read() -> Iterator[tuple[int, Row | RowError]]:
        return numbered_rows(path)

    return read


def test_check_counts_keeps_the_first_errors_and_writes_every_one(tmp_path: Path) -> None:
    bad = f"{PHONE},a,2024-01-01,login"  # a date alone is refused in a file
    path = _bindings(tmp_path, GOOD, *[bad] * 25, GOOD, "", GOOD)
    reject = tmp_path / "rejects.csv"
    seen: list[Progress] = []
    checked = files.check(_reader(path), progress=seen.append, reject_file=reject)
    assert (checked.rows, checked.rejected) == (3, 25)
    assert len(checked.shown) == files.SHOWN_ERRORS
    assert [e.line for e in checked.shown[:2]] == [3, 4]
    lines = reject.read_text().splitlines()
    assert lines[0] == "line,field,reason" and len(lines) == 26
    assert lines[1] == "3,bound_at,no UTC offset (write Z or +hh:mm)"
    assert PHONE not in reject.read_text()


def test_line_of_counts_valid_rows_only(tmp_path: Path) -> None:
    path = _bindings(tmp_path, GOOD, "12345,a,2024-01-01T00:00:00Z,login", "", GOOD, GOOD)
    read = _reader(path)
    # Valid rows are on lines 2, 5 and 6 (line 3 is bad, line 4 blank).
    assert [files.line_of(read, p) for p in (1, 2, 3, 4)] == [2, 5, 6, None]
    assert [r.account_id for r in files.valid(read, path, skip_invalid=True)] == ["a"] * 3
    with pytest.raises(CliError, match=r"line 3: phone: .* changed since it was checked"):
        list(files.valid(read, path))


def test_a_refused_row_is_named_by_its_file_line(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "phone,event,effective_at\n"
        f"{PHONE},ISSUED,2024-01-01T00:00:00Z\n"
        "\n"
        f"{PHONE},SOLD,2024-01-01T00:00:00Z\n"  # line 4, skipped when sent
        f"{PHONE},REISSUED,2024-02-01T00:00:00Z\n"  # line 5: the 2nd event sent
    )

    def read() -> Iterator[tuple[int, object]]:
        return numbered_reports(path)

    error = InvalidRequest("event 2: carrier cm does not currently serve this number")
    error.position = 2
    located = files.refused(error, read, path)
    assert located is not None
    assert str(located) == (
        f"{path}: line 5: the registry refused this row: carrier cm does not currently "
        "serve this number"
    )
    # The registry's 0-based index within one batch is not shown; the field it names is.
    wire = InvalidRequest("event 2: events[0].token: carrier cm does not serve it")
    wire.position = 2
    assert str(files.refused(wire, read, path)).endswith(
        "line 5: the registry refused this row: token: carrier cm does not serve it"
    )
    # Large positions may be written with separators.
    big = _big_file(tmp_path, 10_004)
    far = InvalidRequest("event 10,004: token: refused")
    far.position = 10_004
    assert str(files.refused(far, lambda: numbered_reports(big), big)).endswith(
        "line 10005: the registry refused this row: token: refused"
    )
    # Without a usable position the SDK's own error stands.
    assert files.refused(InvalidRequest("batch refused"), read, path) is None
    for position in (0, 3, True, "2"):
        other = NumbindClientError("x")
        # "2" is deliberately not an int: a caller's bad value must not be taken as a line.
        other.position = position  # type: ignore[assignment]
        assert files.refused(other, read, path) is None


def _big_file(tmp_path: Path, rows: int) -> Path:
    path = tmp_path / "big.csv"
    path.write_text("phone,event,effective_at\n" + f"{PHONE},ISSUED,2024-01-01T00:00:00Z\n" * rows)
    return path


def test_report_invalid_counts_in_words_and_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _bindings(tmp_path, "1,a,2024-01-01T00:00:00Z,login")
    checked = files.check(_reader(path), progress=lambda _: None)
    files.report_invalid("platform publish", path, checked, as_json=True, hint="try X")
    out, err = capsys.readouterr()
    assert f"{path}: line 2: phone:" in err
    assert f"numbind platform publish: 1 invalid row in {path}; nothing sent (try X)" in err
    report = json.loads(out)
    assert (report["command"], report["invalid_rows"]) == ("publish", 1)
    assert report["errors"][0]["line"] == 2

    checked.rejected = 22  # more than shown: the rest are counted
    files.report_invalid("carrier report", path, checked, as_json=False)
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{path}: ... and 21 more invalid rows" in err
    assert "22 invalid rows" in err


def test_plural() -> None:
    assert [plural(n, "row") for n in (0, 1, 2, 12000)] == [
        "0 rows",
        "1 row",
        "2 rows",
        "12,000 rows",
    ]
    assert plural(1, "--phone", "--phone") == "1 --phone"


def test_check_reports_every_thousand_rows_and_the_last(tmp_path: Path) -> None:
    path = _bindings(tmp_path, *[GOOD] * 2_500)
    seen: list[Progress] = []
    files.check(_reader(path), progress=seen.append)
    assert [p.done for p in seen] == [1_000, 2_000, 2_500]
    assert {p.phase for p in seen} == {"check"}


def test_lines_of_finds_many_positions_in_one_pass(tmp_path: Path) -> None:
    path = _bindings(tmp_path, GOOD, "12345,a,2024-01-01T00:00:00Z,login", "", GOOD, GOOD)
    read = _reader(path)
    assert files.lines_of(read, [3, 1, 9]) == [6, 2]
