"""Input files of `numbind platform` and `numbind carrier`: check, report, resend, locate.

Every file command works the same way. A check pass reads the whole file (streaming) and
counts its rows, so the progress bar has a total and a bad row stops the command before
anything is sent; ``--skip-invalid`` (where offered) sends the rest and writes each bad row's
``line,field,reason`` to a reject file (never the row: no number lands there). The send pass
reads the file again and hands the valid rows to the SDK. When the registry refuses one of
them, the SDK names its 1-based place among the rows it was given (``.position``) and
``refused`` turns that back into the file's line by reading the file once more.

A reader is a function that opens the file afresh and yields ``(line, row)`` for each row in
order, the row parsed or a ``RowError`` saying why not (see numbind.cli.rows).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from numbind.cli.common import CliError, plural
from numbind.cli.rows import RowError
from numbind.sdk.errors import NumbindClientError
from numbind.sdk.progress import Progress, ProgressCallback

__all__ = [
    "SHOWN_ERRORS",
    "Checked",
    "Reader",
    "check",
    "line_of",
    "lines_of",
    "refused",
    "report_invalid",
    "valid",
]

T = TypeVar("T")
Reader = Callable[[], Iterable[tuple[int, T | RowError]]]

# Errors printed on the terminal; the rest are counted (and all go to a reject file).
SHOWN_ERRORS = 20
# Rows between reports of the check pass: a few thousand rows a second, so the bar moves
# several times a second; tqdm redraws at most ten times a second whatever it is told.
_CHECK_REPORT_EVERY = 1_000


@dataclass
class Checked:
    """What the check pass found."""

    rows: int = 0  # valid rows
    rejected: int = 0
    shown: list[RowError] = field(default_factory=list)


def check(
    read: Reader[T],
    *,
    progress: ProgressCallback,
    reject_file: Path | None = None,
) -> Checked:
    """Read every row once: count the valid ones, keep the first errors, and write every
    error to ``reject_file`` when given. Blocking: run it in a worker thread."""
    checked = Checked()
    with contextlib.ExitStack() as stack:
        writer = None
        if reject_file is not None:
            out = stack.enter_context(open(reject_file, "w", encoding="utf-8", newline=""))
            writer = csv.writer(out)
            writer.writerow(["line", "field", "reason"])
        for _, item in read():
            if isinstance(item, RowError):
                checked.rejected += 1
                if len(checked.shown) < SHOWN_ERRORS:
                    checked.shown.append(item)
                if writer is not None:
                    writer.writerow([item.line, item.field, item.reason])
            else:
                checked.rows += 1
                if checked.rows % _CHECK_REPORT_EVERY == 0:
                    progress(Progress("check", checked.rows, None, 0.0))
    if checked.rows % _CHECK_REPORT_EVERY:
        progress(Progress("check", checked.rows, None, 0.0))
    return checked


def valid(read: Reader[T], path: Path, *, skip_invalid: bool = False) -> Iterator[T]:
    """The valid rows again, in order, for sending. A bad row that the check pass did not
    see (the file changed underneath) stops the command unless bad rows are skipped."""
    for _, item in read():
        if not isinstance(item, RowError):
            yield item
        elif not skip_invalid:
            raise CliError(f"{path}: {item} (the file changed since it was checked)")


def line_of(read: Reader[Any], position: int) -> int | None:
    """The file line of the ``position``-th valid row (1-based), or None past the end."""
    seen = 0
    for line, item in read():
        if not isinstance(item, RowError):
            seen += 1
            if seen == position:
                return line
    return None


def lines_of(read: Reader[Any], positions: list[int]) -> list[int]:
    """The file lines of the valid rows at these 1-based positions, in one pass, in the
    order of ``positions`` (a position past the end is left out)."""
    wanted = set(positions)
    found: dict[int, int] = {}
    seen = 0
    for line, item in read():
        if not isinstance(item, RowError):
            seen += 1
            if seen in wanted:
                found[seen] = line
                if len(found) == len(wanted):
                    break
    return [found[p] for p in positions if p in found]


def refused(exc: NumbindClientError, read: Reader[Any], path: Path) -> CliError | None:
    """The registry refused one row of a batch: the error naming that row's file line, or
    None when the SDK could not say which row (then the error stands as it is)."""
    position = getattr(exc, "position", None)
    if not isinstance(position, int) or isinstance(position, bool) or position < 1:
        return None
    line = line_of(read, position)
    if line is None:
        return None
    # The file line replaces the SDK's count ("event 12: ", kept apart in .reason) and the
    # registry's 0-based index within one batch ("events[3].token: " -> "token: ").
    reason = getattr(exc, "reason", None)
    message = reason if isinstance(reason, str) and reason else exc.message
    message = re.sub(rf"^\w+ ({position}|{position:,}): ", "", message)
    wire = re.match(r"\w+\[\d+\](?:\.([\w.]+))?: ", message)
    if wire is not None:
        message = (f"{wire.group(1)}: " if wire.group(1) else "") + message[wire.end() :]
    return CliError(f"{path}: line {line}: the registry refused this row: {message}")


def report_invalid(
    command: str, path: Path, checked: Checked, *, as_json: bool, hint: str = ""
) -> None:
    """The failure of a file with bad rows: the first SHOWN_ERRORS on stderr (line, field,
    reason; never a value), a count, and with ``as_json`` one JSON object on stdout."""
    for error in checked.shown:
        print(f"{path}: {error}", file=sys.stderr)
    if checked.rejected > len(checked.shown):
        more = checked.rejected - len(checked.shown)
        print(f"{path}: ... and {plural(more, 'more invalid row')}", file=sys.stderr)
    print(
        f"numbind {command}: {plural(checked.rejected, 'invalid row')} in {path}; nothing "
        f"sent{f' ({hint})' if hint else ''}",
        file=sys.stderr,
    )
    if as_json:
        print(
            json.dumps(
                {
                    "ok": False,
                    "command": command.rsplit(" ", 1)[-1],
                    "file": str(path),
                    "error": "invalid rows",
                    "invalid_rows": checked.rejected,
                    "errors": [dataclasses.asdict(e) for e in checked.shown],
                }
            )
        )
