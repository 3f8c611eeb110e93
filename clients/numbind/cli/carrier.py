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
        ``--scope pre-tenure`` (every binding older than the tenure), ``all`` (every binding,
        the holder's own too) or one or more platform ids. ``pre-tenure`` and ``all`` are
        keywords, so platforms with those ids cannot be named here. ``--subject`` is the
        subscriber id written into the attestation; it defaults to "cli".
    numbind carrier revocation --bundle DIR ID [--wait SECONDS]
        With ``--wait``, polls every second until every platform is DONE or REJECTED; exit 1
        when the time runs out first.

Each command prints text, or with ``--json`` one JSON object on stdout. Times are printed in
UTC. Usage mistakes exit 2, failures 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from numbind.cli.rows import (
    Format,
    InvalidField,
    RowError,
    detect_format,
    read_records,
    text_field,
)
from numbind.protocol.bundle import Bundle
from numbind.sdk import CarrierClient, Lifecycle, LifecycleReport, NumberView, ReportSummary, Scope
from numbind.sdk import RevocationProgress as PlatformProgress
from numbind.sdk.carrier import MAX_REPORT
from numbind.sdk.model import bound_at_problem
from numbind.sdk.phone import DEFAULT_REGION, InvalidNumber, to_e164
from numbind.sdk.progress import Meter, Progress, ProgressCallback, TqdmProgress

__all__ = [
    "DEFAULT_SUBJECT",
    "REPORT_FIELDS",
    "add_commands",
    "add_pair_options",
    "iso_utc",
    "paired",
    "parse_instant",
    "parse_since",
    "read_reports",
]

REPORT_FIELDS = ("phone", "event", "effective_at")
DEFAULT_SUBJECT = "cli"
SHOWN_ERRORS = 20
FINAL_STATES = frozenset({"DONE", "REJECTED"})
POLL_SECONDS = 1.0
_CHECK_REPORT_EVERY = 10_000
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SCOPE_KEYWORDS = {"pre-tenure": Scope.ALL_PRE_TENURE, "all": Scope.ALL}


# -- shared helpers (also used by numbind.cli.feed) ------------------------------------------
def parse_instant(text: str) -> datetime:
    """argparse type: an RFC 3339 time with an offset. The message never quotes the value
    (a phone number given to the wrong option must not reach a terminal log)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            "not an RFC 3339 time (e.g. 2024-05-01T08:00:00+08:00)"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise argparse.ArgumentTypeError("time without a UTC offset (write Z or +hh:mm)")
    return moment


def parse_since(text: str) -> datetime:
    """argparse type: YYYY-MM-DD (00:00 UTC that day) or an RFC 3339 time with an offset."""
    text = text.strip()
    if _DATE_RE.fullmatch(text):
        try:
            return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise argparse.ArgumentTypeError("not a calendar date (YYYY-MM-DD)") from None
    try:
        return parse_instant(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            "want YYYY-MM-DD (00:00 UTC) or an RFC 3339 time with an offset"
        ) from None


def iso_utc(moment: datetime | None) -> str | None:
    """``2024-05-01T00:00:00Z``, or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def paired(
    args: argparse.Namespace, first: str, second: str, second_flag: str
) -> list[tuple[str, datetime]]:
    """The repeated ``--phone P --<second> T`` options as pairs, in order."""
    phones: list[str] = getattr(args, first) or []
    times: list[datetime] = getattr(args, second) or []
    if len(phones) != len(times):
        args.usage(
            f"give one {second_flag} per --phone, in the same order "
            f"(got {len(phones)} --phone and {len(times)} {second_flag})"
        )
    return list(zip(phones, times, strict=True))


def add_pair_options(
    p: argparse.ArgumentParser,
    second_flag: str,
    parse: Callable[[str], datetime],
    metavar: str,
    help_text: str,
) -> None:
    """``--phone P SECOND_FLAG T``, both repeatable; read them back with paired()."""
    p.add_argument(
        "--phone", action="append", required=True, metavar="P", help="a number (repeatable)"
    )
    p.add_argument(
        second_flag, action="append", required=True, type=parse, metavar=metavar, help=help_text
    )


# -- parser --------------------------------------------------------------------------------
def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``carrier`` and its actions on the top-level parser's subparsers."""
    carrier = sub.add_parser(
        "carrier", help="report number lifecycles; query and revoke for subscribers"
    )
    actions = carrier.add_subparsers(dest="carrier_command", metavar="ACTION", required=True)

    report = actions.add_parser(
        "report",
        help="report lifecycle events from a file",
        description="Check every row of FILE, then tokenise and report the events in "
        "batches. A bad row stops the command before anything is sent.",
    )
    _bundle(report)
    report.add_argument(
        "--file",
        type=Path,
        required=True,
        help="CSV (header phone,event,effective_at) or JSON Lines with those keys",
    )
    report.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        help="file format (default: from the extension .csv/.jsonl/.ndjson, else content)",
    )
    report.add_argument(
        "--batch-size",
        type=int,
        default=MAX_REPORT,
        help=f"events a request (1..{MAX_REPORT}); each batch is all-or-nothing",
    )
    report.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _common(report)
    report.set_defaults(handler=_report, usage=report.error)

    query = actions.add_parser(
        "query",
        help="every platform bound to a subscriber's numbers (一证通查)",
        description="For each --phone/--tenure-start pair (in order), list the platforms "
        "holding bindings to the number: the previous holder's (bound before the tenure) "
        "and the subscriber's own.",
    )
    _bundle(query)
    query.add_argument("--subject", required=True, help="the subscriber (e.g. ID number ref)")
    add_pair_options(
        query,
        "--tenure-start",
        parse_instant,
        "T",
        "when the subscriber got the number (RFC 3339), one per --phone",
    )
    _common(query)
    query.set_defaults(handler=_query, usage=query.error)

    revoke = actions.add_parser(
        "revoke",
        help="revoke bindings to a subscriber's number (一键解绑)",
        description="Revoke bindings in scope: pre-tenure (every binding made before "
        "the tenure), all (the subscriber's own too), or the listed platform ids.",
    )
    _bundle(revoke)
    revoke.add_argument(
        "--subject",
        default=DEFAULT_SUBJECT,
        help=f"the subscriber written into the attestation (default {DEFAULT_SUBJECT!r})",
    )
    revoke.add_argument("--phone", required=True, metavar="P")
    revoke.add_argument(
        "--tenure-start",
        type=parse_instant,
        required=True,
        metavar="T",
        help="when the subscriber got the number (RFC 3339)",
    )
    revoke.add_argument(
        "--scope",
        nargs="+",
        required=True,
        metavar="SCOPE",
        help="pre-tenure | all | PLATFORM [PLATFORM ...]",
    )
    _common(revoke)
    revoke.set_defaults(handler=_revoke, usage=revoke.error)

    revocation = actions.add_parser(
        "revocation",
        help="per-platform progress of a revocation",
        description="Each platform's state: PENDING, DELIVERED, DONE, REJECTED (with the "
        "platform's reason) or OVERDUE. With --wait, poll every second until every platform "
        "is DONE or REJECTED (exit 0) or the time is up (exit 1).",
    )
    _bundle(revocation)
    revocation.add_argument("revocation_id", metavar="ID")
    revocation.add_argument(
        "--wait", type=_non_negative, metavar="SECONDS", help="wait for every platform"
    )
    revocation.add_argument("--json", action="store_true", help="print one JSON object")
    revocation.set_defaults(handler=_revocation, usage=revocation.error)


def _bundle(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, required=True, help="carrier bundle directory")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", default=DEFAULT_REGION, help="region for numbers without +CC")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("want a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("want a number of seconds >= 0")
    return value


def _carrier_bundle(path: Path) -> Bundle:
    bundle = Bundle.load(path)
    if bundle.role != "carrier":
        raise ValueError(f"bundle {path} is a {bundle.role} bundle; carrier commands need one")
    return bundle


# -- report file ---------------------------------------------------------------------------
def read_reports(
    path: Path, fmt: Format | None = None, *, region: str = DEFAULT_REGION
) -> Iterator[LifecycleReport | RowError]:
    """Each row of a lifecycle file in order: a LifecycleReport (phone in E.164) or a
    RowError naming its line and field, never a value. FileFormatError for the whole file."""
    for line, record in read_records(path, REPORT_FIELDS, fmt):
        if isinstance(record, RowError):
            yield record
            continue
        try:
            yield _report_row(record, region)
        except InvalidField as bad:
            yield RowError(line, bad.field, bad.reason)


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
    try:
        effective_at = datetime.fromisoformat(text_field(record, "effective_at"))
    except ValueError:
        raise InvalidField("effective_at", "not an RFC 3339 time") from None
    problem = bound_at_problem(effective_at)  # the registry's rule for every instant
    if problem is not None:
        raise InvalidField("effective_at", problem)
    return LifecycleReport(e164, event, effective_at)


@dataclass
class _Checked:
    rows: int = 0
    rejected: int = 0
    shown: list[RowError] = field(default_factory=list)


def _check(path: Path, fmt: Format, region: str, progress: ProgressCallback) -> _Checked:
    """Validate every row (in a worker thread)."""
    checked = _Checked()
    for item in read_reports(path, fmt, region=region):
        if isinstance(item, RowError):
            checked.rejected += 1
            if len(checked.shown) < SHOWN_ERRORS:
                checked.shown.append(item)
        else:
            checked.rows += 1
            if checked.rows % _CHECK_REPORT_EVERY == 0:
                progress(Progress("check", checked.rows, None, 0.0))
    return checked


def _valid_reports(path: Path, fmt: Format, region: str) -> Iterator[LifecycleReport]:
    for item in read_reports(path, fmt, region=region):
        if isinstance(item, RowError):
            raise ValueError(f"{path}: {item} (the file changed since it was checked)")
        yield item


async def _report(args: argparse.Namespace) -> int:
    if not 1 <= args.batch_size <= MAX_REPORT:
        args.usage(f"--batch-size: want 1..{MAX_REPORT}")
    path: Path = args.file
    bundle = _carrier_bundle(args.bundle)
    fmt = detect_format(path, args.format)
    started = time.monotonic()
    with TqdmProgress(enabled=False if args.no_progress else None) as bar:
        checked = await asyncio.to_thread(_check, path, fmt, args.region, bar)
        bar.close()
        if checked.rejected:
            _report_invalid(args, path, checked)
            return 1
        meter = Meter("report", checked.rows, bar)
        async with CarrierClient(bundle, region=args.region) as client:
            summary: ReportSummary = await client.report(
                _valid_reports(path, fmt, args.region),
                batch_size=args.batch_size,
                progress=meter.add,
            )
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
        f"reported {summary.events:,} events from {path}: {summary.applied:,} applied, "
        f"{summary.superseded:,} superseded (older than what was already known); "
        f"{summary.orders_created:,} revocation orders, "
        f"{summary.notices_created:,} deactivation notices ({result['seconds']:.1f} s)"
    )
    for rid in summary.revocation_ids:
        print(f"revocation {rid}")
    return 0


def _report_invalid(args: argparse.Namespace, path: Path, checked: _Checked) -> None:
    for error in checked.shown:
        print(f"{path}: {error}", file=sys.stderr)
    if checked.rejected > len(checked.shown):
        print(f"{path}: ... and {checked.rejected - len(checked.shown)} more", file=sys.stderr)
    print(
        f"numbind carrier report: {checked.rejected} invalid row(s) in {path}; nothing sent",
        file=sys.stderr,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "ok": False,
                    "command": "report",
                    "file": str(path),
                    "error": "invalid rows",
                    "invalid_rows": checked.rejected,
                    "errors": [
                        {"line": e.line, "field": e.field, "reason": e.reason}
                        for e in checked.shown
                    ],
                }
            )
        )


# -- query ---------------------------------------------------------------------------------
def _view_json(view: NumberView) -> dict[str, Any]:
    return {
        "phone": view.e164,
        "tenure_start": iso_utc(view.tenure_start),
        "platforms": [
            {
                "platform_id": p.platform_id,
                "display_name": p.display_name,
                "category": p.category,
                "tenure_class": "PRE_TENURE" if p.pre_tenure else "IN_TENURE",
                "active_count": p.active_count,
                "earliest_bound_at": iso_utc(p.earliest),
                "latest_bound_at": iso_utc(p.latest),
                "open_revocation": (
                    {"revocation_id": p.open_revocation, "state": p.open_state}
                    if p.open_revocation
                    else None
                ),
            }
            for p in view.platforms
        ],
    }


def _view_lines(view: NumberView) -> list[str]:
    lines = [f"{view.e164}  tenure since {iso_utc(view.tenure_start) or 'unknown'}"]
    if not view.platforms:
        lines.append("  no bindings")
    for p in view.platforms:
        whose = "previous holder's" if p.pre_tenure else "yours"
        n = f"{p.active_count} binding{'' if p.active_count == 1 else 's'}"
        when = iso_utc(p.earliest) or "?"
        if p.latest is not None and p.latest != p.earliest:
            when += f" .. {iso_utc(p.latest)}"
        text = f"  {whose:<17}  {p.display_name} ({p.platform_id}, {p.category}): {n}, {when}"
        if p.open_revocation:
            text += f"; revocation {p.open_revocation} {p.open_state}"
        lines.append(text)
    return lines


async def _query(args: argparse.Namespace) -> int:
    pairs = paired(args, "phone", "tenure_start", "--tenure-start")
    bundle = _carrier_bundle(args.bundle)
    async with CarrierClient(bundle, region=args.region) as client:
        views = await client.query(args.subject, pairs)
    if args.json:
        print(
            json.dumps(
                {"subject": args.subject, "numbers": [_view_json(v) for v in views]},
                ensure_ascii=False,
            )
        )
    else:
        for view in views:
            print("\n".join(_view_lines(view)))
    return 0


# -- revoke --------------------------------------------------------------------------------
def _scope(args: argparse.Namespace) -> tuple[Scope, list[str]]:
    values: list[str] = args.scope
    if len(values) == 1 and values[0] in _SCOPE_KEYWORDS:
        return _SCOPE_KEYWORDS[values[0]], []
    if any(v in _SCOPE_KEYWORDS for v in values):
        args.usage("--scope: pre-tenure or all alone, or platform ids")
    if len(set(values)) != len(values):
        args.usage("--scope: a platform id is given twice")
    return Scope.PLATFORMS, list(values)


async def _revoke(args: argparse.Namespace) -> int:
    scope, platform_ids = _scope(args)
    bundle = _carrier_bundle(args.bundle)
    async with CarrierClient(bundle, region=args.region) as client:
        revocation_id, orders = await client.revoke(
            args.subject, args.phone, args.tenure_start, scope, platform_ids
        )
    if args.json:
        print(
            json.dumps(
                {
                    "revocation_id": revocation_id,
                    "orders": orders,
                    "scope": scope.name,
                    "platform_ids": platform_ids,
                }
            )
        )
    else:
        print(f"revocation {revocation_id}: {orders} order{'' if orders == 1 else 's'}")
        if not orders:
            print("nothing in scope to revoke", file=sys.stderr)
    return 0


# -- revocation ----------------------------------------------------------------------------
def _settled(progress: Sequence[PlatformProgress]) -> bool:
    return all(p.state in FINAL_STATES for p in progress)


async def _revocation(args: argparse.Namespace) -> int:
    bundle = _carrier_bundle(args.bundle)
    deadline = time.monotonic() + (args.wait or 0.0)
    async with CarrierClient(bundle) as client:
        while True:
            progress = await client.revocation(args.revocation_id)
            remaining = deadline - time.monotonic()
            if args.wait is None or _settled(progress) or remaining <= 0:
                break
            await asyncio.sleep(min(POLL_SECONDS, remaining))
    settled = _settled(progress)
    if args.json:
        print(
            json.dumps(
                {
                    "revocation_id": args.revocation_id,
                    "settled": settled,
                    "platforms": [
                        {
                            "platform_id": p.platform_id,
                            "display_name": p.display_name,
                            "category": p.category,
                            "state": p.state,
                            "orders": p.orders,
                            "done": p.done,
                            "rejected": p.rejected,
                            "reason": p.reason or None,
                        }
                        for p in progress
                    ],
                },
                ensure_ascii=False,
            )
        )
    else:
        print(f"revocation {args.revocation_id}")
        if not progress:
            print("  no platforms")
        for p in progress:
            text = (
                f"  {p.state:<9}  {p.display_name} ({p.platform_id}, {p.category}): "
                f"{p.done}/{p.orders} done"
            )
            if p.rejected:
                text += f", {p.rejected} rejected"
            if p.reason:
                text += f": {p.reason}"
            print(text)
    if args.wait is not None and not settled:
        print(
            f"numbind carrier revocation: not every platform is DONE or REJECTED after "
            f"{args.wait:g} s",
            file=sys.stderr,
        )
        return 1
    return 0
