"""`numbind carrier report|query|revoke|revocation`: a carrier's lifecycle reports, and its
subscribers' 一证通查 (query) and 一键解绑 (revoke) from the command line.

    numbind carrier report --bundle DIR --file F
        F is CSV with the header ``phone,event,effective_at`` (any order, extra columns
        ignored) or JSON Lines with those keys. ``event`` is ISSUED, DEACTIVATED, REISSUED,
        PORTED_OUT or PORTED_IN in any case; ``effective_at`` is RFC 3339 with an offset. Every
        row is checked before anything is sent: a bad row stops the command (exit 1) with its
        line number and reason, never its values.
    numbind carrier query --bundle DIR --subject S --phone P --tenure-start T [--phone ...]
    numbind carrier revoke --bundle DIR [--subject S] --phone P --tenure-start T --scope ...
        T is RFC 3339 with an offset, or a date alone: 00:00 that day in the time zone of
        ``--region`` (default CN, +08:00).
        ``--scope pre-tenure`` (every binding older than the tenure), ``all`` (every binding,
        the holder's own too) or one or more platform ids. ``pre-tenure`` and ``all`` are
        keywords, so platforms with those ids cannot be named here. ``--subject`` is the
        subscriber id written into the attestation; it defaults to "cli".
    numbind carrier revocation --bundle DIR ID [--wait SECONDS]
        With ``--wait``, polls every second until every platform is DONE or REJECTED; exit 1
        when the time runs out first.

Each command prints text, or with ``--json`` one JSON object on stdout. Times are printed in
UTC. Usage mistakes exit 2, failures 1. When the registry refuses one event of a report, the
error names the file line of that event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from numbind.cli import files
from numbind.cli.common import (
    UsageError,
    add_bundle,
    add_json,
    add_region,
    check_reachable,
    command,
    load_bundle,
    plural,
)
from numbind.cli.holders import add_holder_commands
from numbind.cli.rows import (
    Format,
    InvalidField,
    RowError,
    detect_format,
    read_records,
    text_field,
)
from numbind.protocol.limits import instant_problem
from numbind.sdk import CarrierClient, Lifecycle, LifecycleReport, ReportSummary
from numbind.sdk.carrier import MAX_REPORT
from numbind.sdk.errors import NumbindClientError
from numbind.sdk.phone import DEFAULT_REGION, InvalidNumber, to_e164
from numbind.sdk.progress import Meter, TqdmProgress

# Events a request from the command line: each batch is tokenised, then reported, so at a
# few thousand numbers a second a smaller batch moves the report bar several times a second.
CLI_BATCH = 2_000

__all__ = [
    "REPORT_FIELDS",
    "add_commands",
    "numbered_reports",
    "read_reports",
]

REPORT_FIELDS = ("phone", "event", "effective_at")


# -- parser --------------------------------------------------------------------------------
def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``carrier`` and its actions on the top-level parser's subparsers."""
    carrier = sub.add_parser(
        "carrier",
        help="report number lifecycles; query and revoke for subscribers",
        description="A carrier's side: report lifecycle events (issued, deactivated, "
        "reissued, ported) from a file, and for a subscriber list (一证通查) and revoke "
        "(一键解绑) the bindings to their numbers.",
    )
    actions = carrier.add_subparsers(
        dest="carrier_command", metavar="ACTION", required=True, help="what to do"
    )

    report = actions.add_parser(
        "report",
        help="report lifecycle events from a file",
        description="Check every row of FILE, then tokenise and report the events in "
        "batches. A bad row stops the command before anything is sent.",
    )
    add_bundle(report, "carrier")
    report.add_argument(
        "--file",
        type=Path,
        required=True,
        help="CSV (header phone,event,effective_at) or JSON Lines with those keys; "
        "effective_at is RFC 3339 with an offset",
    )
    report.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        help="file format (default: from the extension .csv/.jsonl/.ndjson, else content)",
    )
    report.add_argument(
        "--batch-size",
        type=int,
        default=CLI_BATCH,
        metavar="N",
        help=f"events a request (1..{MAX_REPORT:,}, default {CLI_BATCH:,}: the report bar "
        "then moves several times a second); each batch is all-or-nothing",
    )
    report.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_region(report)
    add_json(report)
    command(report, _report)

    add_holder_commands(actions)


# -- report file ---------------------------------------------------------------------------
def read_reports(
    path: Path, fmt: Format | None = None, *, region: str = DEFAULT_REGION
) -> Iterator[LifecycleReport | RowError]:
    """Each row of a lifecycle file in order: a LifecycleReport (phone in E.164) or a
    RowError naming its line and field, never a value. FileFormatError for the whole file."""
    for _, item in numbered_reports(path, fmt, region=region):
        yield item


def numbered_reports(
    path: Path, fmt: Format | None = None, *, region: str = DEFAULT_REGION
) -> Iterator[tuple[int, LifecycleReport | RowError]]:
    """As read_reports, each with the file line it starts on."""
    for line, record in read_records(path, REPORT_FIELDS, fmt):
        if isinstance(record, RowError):
            yield line, record
            continue
        try:
            yield line, _report_row(record, region)
        except InvalidField as bad:
            yield line, RowError(line, bad.field, bad.reason)


def _report_row(record: dict[str, Any], region: str) -> LifecycleReport:
    try:
        e164 = to_e164(text_field(record, "phone", allow_int=True), 0, region)
    except InvalidNumber as exc:
        raise InvalidField("phone", exc.reason) from None
    name = text_field(record, "event").upper().replace("-", "_")
    try:
        event = Lifecycle[name]
    except KeyError:
        raise InvalidField(
            "event", f"unknown; want one of {', '.join(e.name for e in Lifecycle)}"
        ) from None
    # A date alone is refused here (see numbind.cli.rows): a reissue read as 00:00 would
    # put the new holder's own bindings of that day before their tenure.
    try:
        effective_at = datetime.fromisoformat(text_field(record, "effective_at"))
    except ValueError:
        raise InvalidField("effective_at", "not an RFC 3339 time") from None
    problem = instant_problem(effective_at)  # the registry's rule for every instant
    if problem is not None:
        raise InvalidField("effective_at", problem)
    return LifecycleReport(e164, event, effective_at)


async def _report(args: argparse.Namespace) -> int:
    if not 1 <= args.batch_size <= MAX_REPORT:
        raise UsageError(f"--batch-size: got {args.batch_size}, want 1..{MAX_REPORT}")
    path: Path = args.file
    bundle = load_bundle(args.bundle, "carrier")
    fmt = detect_format(path, args.format)
    await check_reachable(bundle)

    def read() -> Iterator[tuple[int, LifecycleReport | RowError]]:
        return numbered_reports(path, fmt, region=args.region)

    started = time.monotonic()
    with TqdmProgress(enabled=False if args.no_progress else None) as bar:
        checked = await asyncio.to_thread(files.check, read, progress=bar)
        bar.close()
        if checked.rejected:
            files.report_invalid("carrier report", path, checked, as_json=args.json)
            return 1
        tokenised = Meter("tokenise", checked.rows, bar).start()
        meter = Meter("report", checked.rows, bar).start()
        async with CarrierClient(bundle, region=args.region) as client:
            try:
                summary: ReportSummary = await client.report(
                    files.valid(read, path),
                    batch_size=args.batch_size,
                    progress=meter.add,
                    tokenised=tokenised.add,
                )
            except NumbindClientError as exc:
                located = await asyncio.to_thread(files.refused, exc, read, path)
                if located is None:
                    raise
                raise located from None
    result: dict[str, Any] = {
        "ok": True,
        "command": "report",
        "file": str(path),
        "events": summary.events,
        "applied": summary.applied,
        "superseded": summary.superseded,
        "orders_created": summary.orders_created,
        "notices_created": summary.notices_created,
        "revocation_ids": summary.revocation_ids,
        "seconds": round(time.monotonic() - started, 3),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"reported {plural(summary.events, 'event')} from {path}: {summary.applied:,} applied, "
        f"{summary.superseded:,} superseded (older than what was already known); "
        f"{plural(summary.orders_created, 'revocation order')}, "
        f"{plural(summary.notices_created, 'deactivation notice')} ({result['seconds']:.1f} s)"
    )
    for rid in summary.revocation_ids:
        print(f"revocation {rid}")
    return 0
