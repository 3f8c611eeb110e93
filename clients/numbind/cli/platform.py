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
import contextlib
import csv
import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from numbind.cli.feed import add_platform_feed_commands
from numbind.cli.rows import Format, RowError, detect_format, read_rows
from numbind.protocol.bundle import Bundle
from numbind.protocol.digest import MAX_BUCKET_BITS
from numbind.sdk import PlatformClient, PublishSummary, Row, SyncSummary
from numbind.sdk.phone import DEFAULT_REGION
from numbind.sdk.platform import MAX_BATCH
from numbind.sdk.progress import Progress, ProgressCallback, TqdmProgress

__all__ = ["add_commands"]

SHOWN_ERRORS = 20
_Summary = PublishSummary | SyncSummary
_CHECK_REPORT_EVERY = 10_000


def add_commands(sub: Any) -> None:
    """Register platform subcommands on the top-level parser's subparsers."""
    platform = sub.add_parser(
        "platform", help="publish, sync and follow a platform's bindings and events"
    )
    actions = platform.add_subparsers(dest="platform_command", metavar="ACTION", required=True)

    publish = actions.add_parser(
        "publish",
        help="publish (upsert) the bindings in a file",
        description="Tokenise and publish every binding in FILE. Idempotent: re-running "
        "changes nothing already published.",
    )
    _file_options(publish)
    publish.set_defaults(handler=_publish)

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
    sync.add_argument("--dry-run", action="store_true", help="compare and plan; change nothing")
    sync.add_argument(
        "--max-withdraw",
        type=int,
        metavar="N",
        help="abort, changing nothing, if the sync would withdraw more than N bindings",
    )
    sync.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept a file with no valid rows (it withdraws every binding)",
    )
    sync.add_argument(
        "--work-dir",
        type=Path,
        help="where the temporary snapshot file goes (~200 bytes a row; default $TMPDIR)",
    )
    sync.set_defaults(handler=_sync)
    add_platform_feed_commands(actions)


def _file_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, required=True, help="platform bundle directory")
    p.add_argument(
        "--file",
        type=Path,
        required=True,
        help="CSV (header phone,account_id,bound_at,kind) or JSON Lines with those keys",
    )
    p.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        help="file format (default: from the extension .csv/.jsonl/.ndjson, else content)",
    )
    p.add_argument("--region", default=DEFAULT_REGION, help="region for numbers without +CC")
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="send the valid rows and write the bad ones to the reject file",
    )
    p.add_argument("--reject-file", type=Path, help="default: FILE.rejects next to FILE")
    p.add_argument("--json", action="store_true", help="print one JSON object as the summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--batch-size",
        type=int,
        default=MAX_BATCH,
        help=f"bindings a request (1..{MAX_BATCH})",
    )
    p.add_argument("--in-flight", type=int, default=4, help="requests sent concurrently")


@dataclass
class _Checked:
    rows: int = 0
    rejected: int = 0
    shown: list[RowError] = field(default_factory=list)


def _check(
    path: Path,
    fmt: Format,
    region: str,
    reject_file: Path | None,
    progress: ProgressCallback,
) -> _Checked:
    """Validate every row; write rejects if asked. Runs in a worker thread."""
    checked = _Checked()
    with contextlib.ExitStack() as stack:
        writer = None
        if reject_file is not None:
            out = stack.enter_context(open(reject_file, "w", encoding="utf-8", newline=""))
            writer = csv.writer(out)
            writer.writerow(["line", "field", "reason"])
        for item in read_rows(path, fmt, region=region):
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
    return checked


def _valid_rows(path: Path, fmt: Format, region: str, skip_invalid: bool) -> Iterator[Row]:
    for item in read_rows(path, fmt, region=region):
        if isinstance(item, Row):
            yield item
        elif not skip_invalid:
            # The check pass found none: the file changed underneath us.
            raise ValueError(f"{path}: {item} (the file changed since it was checked)")


async def _run(
    args: argparse.Namespace,
    command: str,
    send: Callable[[PlatformClient, Iterator[Row], int, ProgressCallback], Awaitable[_Summary]],
) -> int:
    path: Path = args.file
    fmt = detect_format(path, args.format)
    bundle = Bundle.load(args.bundle)
    reject_file: Path | None = None
    if args.skip_invalid:
        reject_file = args.reject_file or path.with_name(path.name + ".rejects")

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
            checked = await asyncio.to_thread(_check, path, fmt, args.region, reject_file, bar)
            bar.close()
            if checked.rejected and not args.skip_invalid:
                _report_invalid(args, command, path, checked)
                return 1
            if command == "sync" and checked.rows == 0 and not args.allow_empty:
                # A truncated or all-rejected export must not wipe the registry's copy.
                raise ValueError(
                    f"{path}: no valid rows; syncing it would withdraw every binding "
                    "(pass --allow-empty if that is intended)"
                )
            rows = _valid_rows(path, fmt, args.region, args.skip_invalid)
            summary = await send(client, rows, checked.rows, bar)

    result: dict[str, Any] = {
        "ok": True,
        "command": command,
        "file": str(path),
        "rejected": checked.rejected,
        "reject_file": str(reject_file) if reject_file is not None else None,
        **dataclasses.asdict(summary),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(_describe(command, path, result))
    return 0


def _report_invalid(args: argparse.Namespace, command: str, path: Path, checked: _Checked) -> None:
    for error in checked.shown:
        print(f"{path}: {error}", file=sys.stderr)
    if checked.rejected > len(checked.shown):
        print(f"{path}: ... and {checked.rejected - len(checked.shown)} more", file=sys.stderr)
    print(
        f"numbind platform {command}: {checked.rejected} invalid row(s) in {path}; nothing "
        "sent (--skip-invalid sends the rest and writes the bad ones to a reject file)",
        file=sys.stderr,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "ok": False,
                    "command": command,
                    "file": str(path),
                    "error": "invalid rows",
                    "invalid_rows": checked.rejected,
                    "errors": [dataclasses.asdict(e) for e in checked.shown],
                }
            )
        )


def _describe(command: str, path: Path, r: dict[str, Any]) -> str:
    if command == "publish":
        text = (
            f"published {r['rows']:,} rows from {path}: {r['inserted']:,} new, "
            f"{r['updated']:,} updated, {r['unchanged']:,} unchanged"
        )
    else:
        verb = "would publish" if r["dry_run"] else "published"
        text = (
            f"synced {r['rows']:,} rows from {path}: {r['buckets_differing']:,} of "
            f"{r['buckets_total']:,} buckets differed; {verb} {r['added']:,} new and "
            f"{r['changed']:,} changed, {'would withdraw' if r['dry_run'] else 'withdrew'} "
            f"{r['withdrawn']:,}"
        )
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
            work_dir=args.work_dir,
            progress=bar,
        )

    return await _run(args, "sync", send)
