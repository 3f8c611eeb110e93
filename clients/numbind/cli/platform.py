"""`numbind platform publish|sync --bundle DIR --file F`: bindings from a CSV or JSONL file.

The file is read twice, streaming both times: a check pass validates every row (and counts
them, so the progress bar has a total), then the real pass tokenises and sends. A bad row
therefore stops the command before anything is published, unless ``--skip-invalid`` is
given: then bad rows go to the reject file (``line,field,reason``; never the row itself, so
no number lands there) and the rest is sent.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from numbind.cli import files
from numbind.cli.common import (
    CliError,
    UsageError,
    add_bundle,
    add_json,
    add_region,
    check_reachable,
    command,
    plural,
)
from numbind.cli.feed import add_platform_feed_commands
from numbind.cli.rows import (
    RowError,
    csv_delimiter,
    delimiter_name,
    detect_format,
    numbered_rows,
)
from numbind.protocol.bundle import Bundle
from numbind.protocol.digest import MAX_BUCKET_BITS
from numbind.sdk import Kind, PlatformClient, PublishSummary, Row, SyncSummary
from numbind.sdk.errors import NumbindClientError, SyncAborted
from numbind.sdk.platform import MAX_BATCH
from numbind.sdk.progress import ProgressCallback, TqdmProgress
from numbind.sdk.sync_options import (
    WITHDRAW_FLOOR,
    WITHDRAW_HALF_FLOOR,
    WITHDRAW_SHARE_PERCENT,
    refusal_text,
)

__all__ = ["add_commands"]

_Summary = PublishSummary | SyncSummary
# Bindings a request from the command line. Tokenising runs at a few thousand numbers a
# second, so 10,000-row batches would move the publish bar in jumps seconds apart; at
# 2,000 it follows the tokenise bar closely, for a few percent of registry throughput.
CLI_BATCH = 2_000


def add_commands(sub: Any) -> None:
    """Register platform subcommands on the top-level parser's subparsers."""
    platform = sub.add_parser(
        "platform",
        help="publish, sync and follow a platform's bindings and events",
        description="A platform's side: publish or sync its bindings from a file, follow "
        "and ack its event feed, ask whether numbers were reassigned.",
    )
    actions = platform.add_subparsers(
        dest="platform_command", metavar="ACTION", required=True, help="what to do"
    )

    publish = actions.add_parser(
        "publish",
        help="publish (upsert) the bindings in a file",
        description="Tokenise and publish every binding in FILE. Idempotent: re-running "
        "changes nothing already published.",
    )
    _file_options(publish)
    command(publish, _publish)

    sync = actions.add_parser(
        "sync",
        help="make the registry hold exactly the bindings in a file",
        description="Reconcile: FILE is every current binding of this platform. Only "
        "buckets whose digests differ are listed; missing or changed bindings are "
        "published and the registry's extra ones withdrawn. With --skip-invalid, a "
        "rejected row counts as absent, so a binding it held is withdrawn.",
    )
    _file_options(sync)
    sync.add_argument(
        "--bucket-bits",
        type=int,
        choices=range(MAX_BUCKET_BITS + 1),
        metavar=f"0..{MAX_BUCKET_BITS}",
        help="digest granularity (default: from the row count, ~256 bindings a bucket)",
    )
    sync.add_argument(
        "--dry-run",
        action="store_true",
        help="compare and plan; change nothing (says whether the real sync would refuse)",
    )
    limit = sync.add_mutually_exclusive_group()
    limit.add_argument(
        "--max-withdraw",
        type=_count,
        metavar="N",
        help="refuse, changing nothing, if the sync would withdraw more than N bindings "
        f"(default: the larger of {WITHDRAW_SHARE_PERCENT} %% of the registry's bindings and "
        f"{WITHDRAW_FLOOR:,}, but never more than half of them unless that is "
        f"{WITHDRAW_HALF_FLOOR} or fewer)",
    )
    limit.add_argument(
        "--force",
        action="store_true",
        help="no withdrawal limit: FILE is complete even if most bindings are gone from it",
    )
    sync.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept a file with no valid rows (it withdraws every binding)",
    )
    sync.add_argument(
        "--work-dir",
        type=Path,
        metavar="DIR",
        help="where the temporary snapshot file goes (~200 bytes a row; default $TMPDIR)",
    )
    command(sync, _sync)
    add_platform_feed_commands(actions)


def _count(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        n = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"got {text!r}, want a whole number >= 0")
    return n


def _file_options(p: argparse.ArgumentParser) -> None:
    add_bundle(p, "platform")
    p.add_argument(
        "--file",
        type=Path,
        required=True,
        help="CSV (header phone,account_id,bound_at,kind; commas, or semicolons or tabs "
        "throughout) or JSON Lines with those keys; bound_at is RFC 3339 with an offset; "
        f"kind is one of {', '.join(k.name for k in Kind)}",
    )
    p.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        help="file format (default: from the extension .csv/.jsonl/.ndjson, else content)",
    )
    add_region(p)
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="send the valid rows and write the bad ones to the reject file",
    )
    p.add_argument(
        "--reject-file",
        type=Path,
        metavar="FILE",
        help="where --skip-invalid writes line,field,reason of each bad row "
        "(default FILE.rejects next to FILE)",
    )
    add_json(p, "print one JSON object as the summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--batch-size",
        type=int,
        default=CLI_BATCH,
        metavar="N",
        help=f"bindings a request (1..{MAX_BATCH}, default {CLI_BATCH:,}: small enough that "
        "the publish bar moves several times a second behind tokenisation)",
    )
    p.add_argument(
        "--in-flight",
        type=int,
        default=4,
        metavar="N",
        help="requests sent concurrently (default 4)",
    )


async def _run(
    args: argparse.Namespace,
    verb: str,
    send: Callable[[PlatformClient, Iterator[Row], int, ProgressCallback], Awaitable[_Summary]],
) -> int:
    if not 1 <= args.batch_size <= MAX_BATCH:
        raise UsageError(f"--batch-size: got {args.batch_size}, want 1..{MAX_BATCH}")
    if args.in_flight < 1:
        raise UsageError(f"--in-flight: got {args.in_flight}, want at least 1")
    path: Path = args.file
    fmt = detect_format(path, args.format)
    bundle = Bundle.load(args.bundle)
    delimiter = await asyncio.to_thread(csv_delimiter, path) if fmt == "csv" else ","
    await check_reachable(bundle)
    reject_file: Path | None = None
    if args.skip_invalid:
        reject_file = args.reject_file or path.with_name(path.name + ".rejects")

    def read() -> Iterator[tuple[int, Row | RowError]]:
        return numbered_rows(path, fmt, region=args.region)

    bar = TqdmProgress(enabled=False if args.no_progress else None)
    # Built before the check pass so bad options fail at once; it connects only when used.
    client = PlatformClient(
        bundle,
        region=args.region,
        batch_size=args.batch_size,
        in_flight=args.in_flight,
        progress=bar,
    )
    async with client:
        with bar:
            checked = await asyncio.to_thread(
                files.check, read, progress=bar, reject_file=reject_file
            )
            bar.close()
            if checked.rejected and not args.skip_invalid:
                files.report_invalid(
                    f"platform {verb}",
                    path,
                    checked,
                    as_json=args.json,
                    hint="--skip-invalid sends the rest and writes the bad ones to a reject file",
                )
                return 1
            if verb == "sync" and checked.rows == 0 and not args.allow_empty:
                # A truncated or all-rejected export must not wipe the registry's copy.
                raise CliError(
                    f"{path}: no valid rows; syncing it would withdraw every binding "
                    "(pass --allow-empty if that is intended)"
                )
            rows = files.valid(read, path, skip_invalid=args.skip_invalid)
            try:
                summary = await send(client, rows, checked.rows, bar)
            except SyncAborted as exc:
                asked = getattr(args, "max_withdraw", None) is not None
                why = _refused_sync(exc.withdraw, exc.server_bindings, exc.limit, asked)
                raise CliError(f"{path}: {why}") from None
            except NumbindClientError as exc:
                located = await asyncio.to_thread(files.refused, exc, read, path)
                if located is None:
                    raise
                raise located from None

    refusal = getattr(summary, "refusal", "")
    result: dict[str, Any] = {
        "ok": not refusal,
        "command": verb,
        "file": str(path),
        "rejected": checked.rejected,
        "reject_file": str(reject_file) if reject_file is not None else None,
        "delimiter": delimiter_name(delimiter) if fmt == "csv" else None,
        **dataclasses.asdict(summary),
    }
    revoked_lines: list[int] = []
    if isinstance(summary, SyncSummary) and summary.revoked_positions:
        shown = summary.revoked_positions[: files.SHOWN_ERRORS]
        revoked_lines = await asyncio.to_thread(files.lines_of, read, shown)
        result["revoked_lines"] = revoked_lines
    if args.json:
        print(json.dumps(result))
    else:
        print(_describe(verb, path, result))
        _warn_revoked(path, result, revoked_lines)
        if refusal:
            why = _refused_sync(
                result["withdrawn"],
                result["server_bindings"],
                result["withdraw_limit"],
                args.max_withdraw is not None,
            )
            print(f"numbind platform sync: {path}: would refuse: {why}", file=sys.stderr)
    return 1 if refusal else 0


def _refused_sync(withdraw: int, server: int, limit: int, asked: bool) -> str:
    """Why a sync refuses, in the command line's words: the numbers and the flags."""
    why = refusal_text(withdraw, server, limit, "--max-withdraw" if asked else "")
    return (
        f"{why}; nothing changed. If the file is complete, pass --max-withdraw {withdraw} "
        "(or --force)"
    )


def _warn_revoked(path: Path, r: dict[str, Any], lines: list[int]) -> None:
    """Rows of the file that are bindings the registry revoked: say which, and what to do."""
    n = int(r.get("revoked_skipped") or r.get("revoked") or 0)
    if not n:
        return
    where = ""
    if lines:
        more = ", ..." if n > len(lines) else ""
        where = f" (line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines))}{more})"
    done = "skipped, not republished" if "revoked_skipped" in r else "left revoked"
    print(
        f"numbind platform {r['command']}: {path}: {plural(n, 'row')}{where} "
        f"{'is a binding' if n == 1 else 'are bindings'} the registry revoked after the "
        f"holder's request or a reissue, which this platform acked: {done}. Remove "
        f"{'that number' if n == 1 else 'those numbers'} from your export; a bound_at after "
        "the revocation binds the number anew.",
        file=sys.stderr,
    )


def _arrival(n: int) -> str:
    return (
        f", {n:,} revoked on arrival (bound before the number was reissued: the previous "
        "holder's; see your event feed)"
    )


def _describe(verb: str, path: Path, r: dict[str, Any]) -> str:
    if r["delimiter"] not in (None, "comma"):
        path = Path(f"{path} ({r['delimiter']}-separated)")
    if verb == "publish":
        text = (
            f"published {plural(r['rows'], 'row')} from {path}: {r['inserted']:,} new, "
            f"{r['updated']:,} updated, {r['unchanged']:,} unchanged"
        )
        if r["revoked"]:
            text += f", {r['revoked']:,} left revoked"
        if r["revoked_on_arrival"]:
            text += _arrival(r["revoked_on_arrival"])
    else:
        dry = r["dry_run"]
        text = (
            f"{'dry run: ' if dry else ''}{'compared' if dry else 'synced'} "
            f"{plural(r['rows'], 'row')} from {path} with the registry's "
            f"{plural(r['server_bindings'], 'binding')}: {r['buckets_differing']:,} of "
            f"{plural(r['buckets_total'], 'bucket')} differed; "
            f"{'would publish' if dry else 'published'} {r['added']:,} new and "
            f"{r['changed']:,} changed, {'would withdraw' if dry else 'withdrew'} "
            f"{r['withdrawn']:,}"
        )
        if r["revoked_skipped"]:
            text += f", skipped {r['revoked_skipped']:,} revoked"
        if r.get("revoked_on_arrival"):
            text += _arrival(r["revoked_on_arrival"])
        if r["converged"] is False:
            text += " (the registry changed meanwhile: not yet equal, run again)"
    if r["rejected"]:
        text += f"; {r['rejected']:,} rejected -> {r['reject_file']}"
    return f"{text} ({r['seconds']:.1f} s)"


async def _publish(args: argparse.Namespace) -> int:
    async def send(
        client: PlatformClient, rows: Iterator[Row], total: int, bar: ProgressCallback
    ) -> _Summary:
        return await client.publish(rows, total=total, progress=bar)

    return await _run(args, "publish", send)


async def _sync(args: argparse.Namespace) -> int:
    async def send(
        client: PlatformClient, rows: Iterator[Row], total: int, bar: ProgressCallback
    ) -> _Summary:
        return await client.sync(
            rows,
            total=total,
            bucket_bits=args.bucket_bits,
            dry_run=args.dry_run,
            max_withdraw=args.max_withdraw,
            force=args.force,
            work_dir=args.work_dir,
            progress=bar,
        )

    return await _run(args, "sync", send)
