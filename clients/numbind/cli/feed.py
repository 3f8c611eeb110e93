"""`numbind platform events|check-reassigned`: a platform's event feed and the
reassigned-since question from the command line.

    numbind platform events --bundle DIR [--follow] [--ack OUTCOME] [--cursor FILE] [--json]
        Prints the events after the cursor (default DIR/feed-cursor.json), one a line
        under a header line: seq, kind, cause, reference (the short order reference a
        holder quotes), bound_at, account_ref (hex), order_id, revocation_id (and the ack
        outcome with --ack), tab-separated. Without --follow it exits once caught up; with
        --follow it keeps printing new events until Ctrl-C (exit 130). With --ack each event
        is acked after it is printed: notices (NUMBER_DEACTIVATED) as NOTED, revocation
        orders with OUTCOME (``--ack noted`` acks the notices only). The cursor only moves
        past acked events, so without --ack every run prints the same pending events; an
        event printed but not yet acked when the command stops is printed again next time
        (at-least-once).
    numbind platform check-reassigned --bundle DIR --phone P --since DATE [--phone ...]
        REASSIGNED / NOT_REASSIGNED / NO_DATA per pair, in order. DATE is YYYY-MM-DD (00:00
        that day in the time zone of ``--region``, default CN: +08:00) or RFC 3339 with an
        offset. Works with platform and carrier bundles.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from numbind.cli.common import (
    DATE_HELP,
    CliError,
    add_bundle,
    add_json,
    add_region,
    add_time_pairs,
    command,
    iso_utc,
    load_bundle,
    paired,
    plural,
)
from numbind.protocol.bundle import Bundle
from numbind.protocol.limits import MAX_REASSIGNED_QUERIES
from numbind.sdk import AckOutcome, EventKind, FeedEvent, reassigned
from numbind.sdk.channel import secure_channel
from numbind.sdk.feed import CURSOR_FILE, EventFeed
from numbind.sdk.phone import DEFAULT_REGION
from numbind.sdk.retry import RetryPolicy
from numbind.sdk.tokenizer import Tokenizer

__all__ = [
    "CURSOR_FILE",
    "MAX_REASSIGNED_QUERIES",
    "ReassignedAnswer",
    "add_platform_feed_commands",
    "check_reassigned",
]

CAUSES = {1: "REISSUED", 2: "HOLDER_REQUEST", 3: "DEACTIVATED"}
_ACK_CHOICES = {
    "unbound": AckOutcome.UNBOUND,
    "already-gone": AckOutcome.ALREADY_GONE,
    "noted": AckOutcome.NOTED,
}


def add_platform_feed_commands(
    platform_sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register ``events`` and ``check-reassigned`` on the ``platform`` group's subparsers."""
    events = platform_sub.add_parser(
        "events",
        help="print (and optionally ack) this platform's pending events",
        description="Print the events after the cursor; with --follow keep printing new "
        "ones until Ctrl-C. With --ack, ack each event once printed: notices as NOTED, "
        "revocation orders with the given outcome (noted: notices only).",
    )
    add_bundle(events, "platform")
    events.add_argument("--follow", action="store_true", help="keep printing new events")
    events.add_argument(
        "--ack", choices=tuple(_ACK_CHOICES), help="ack every printed event with this outcome"
    )
    events.add_argument(
        "--cursor",
        type=Path,
        metavar="FILE",
        help=f"resume point file (default BUNDLE/{CURSOR_FILE})",
    )
    add_json(events, "one JSON object per event a line")
    command(events, _events)

    check = platform_sub.add_parser(
        "check-reassigned",
        help="has a number been reassigned since a date?",
        description="For each --phone/--since pair (in order): REASSIGNED, NOT_REASSIGNED or "
        f"NO_DATA. The reissue date itself is never revealed. --since is {DATE_HELP}.",
    )
    add_bundle(check, "platform (or carrier)")
    add_time_pairs(check, "--since", "DATE", "the cut-off")
    add_region(check, dates=True)
    add_json(check)
    command(check, _check_reassigned)


# -- check-reassigned ----------------------------------------------------------------------
@dataclass(frozen=True)
class ReassignedAnswer:
    e164: str
    since: datetime
    answer: str  # REASSIGNED, NOT_REASSIGNED or NO_DATA


async def check_reassigned(
    bundle: Bundle,
    queries: Sequence[tuple[str, datetime]],
    *,
    region: str = DEFAULT_REGION,
    retry: RetryPolicy | None = None,
) -> list[ReassignedAnswer]:
    """Platforms.CheckReassigned for (phone, since) pairs, in order, with any bundle whose role
    may ask (platform or carrier)."""
    async with secure_channel(bundle) as channel:
        tokenizer = Tokenizer(channel, region=region)
        try:
            answers = await reassigned.check_reassigned(channel, tokenizer, queries, retry)
        finally:
            tokenizer.close()
    return [ReassignedAnswer(e164, since, answer) for e164, since, answer in answers]


async def _check_reassigned(args: argparse.Namespace) -> int:
    pairs = paired(args, "--since")
    bundle = load_bundle(args.bundle, "platform", "carrier")
    answers = await check_reassigned(bundle, pairs, region=args.region)
    if args.json:
        print(
            json.dumps(
                {
                    "answers": [
                        {"phone": a.e164, "since": iso_utc(a.since), "answer": a.answer}
                        for a in answers
                    ]
                }
            )
        )
    else:
        for a in answers:
            print(f"{a.e164}\t{iso_utc(a.since)}\t{a.answer}")
    return 0


# -- events --------------------------------------------------------------------------------
def _outcome(event: FeedEvent, chosen: AckOutcome) -> AckOutcome | None:
    """The ack for an event under ``--ack chosen``; None: leave it pending."""
    if event.kind == EventKind.NUMBER_DEACTIVATED:
        return AckOutcome.NOTED
    if chosen == AckOutcome.NOTED:  # a revocation order cannot be merely noted
        return None
    return chosen


def _event_json(event: FeedEvent, ack: AckOutcome | None) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "kind": event.kind.name,
        "cause": CAUSES.get(event.cause, str(event.cause)),
        "reference": event.reference,
        "order_id": event.order_id,
        "account_ref": event.account_ref.hex(),
        "bound_at": iso_utc(event.bound_at),
        "tenure_start": iso_utc(event.tenure_start),
        "deadline": iso_utc(event.deadline),
        "revocation_id": event.revocation_id or None,
        "ack": ack.name if ack is not None else None,
    }


# Text output: one tab-separated line per event under a header line naming the columns.
# `reference` is the short form of order_id that holders quote to customer service.
_COLUMNS = ("seq", "kind", "cause", "reference", "bound_at", "account_ref", "order_id")


def _columns(with_ack: bool) -> list[str]:
    return [*_COLUMNS, "revocation_id", *(("ack",) if with_ack else ())]


def _event_line(item: dict[str, Any], with_ack: bool) -> str:
    return "\t".join("-" if item[n] in (None, "") else str(item[n]) for n in _columns(with_ack))


async def _events(args: argparse.Namespace) -> int:
    bundle = Bundle.load(args.bundle)
    if bundle.role != "platform":
        raise CliError(f"bundle {args.bundle} is a {bundle.role} bundle; events need a platform's")
    cursor: Path = args.cursor or bundle.directory / CURSOR_FILE
    chosen = _ACK_CHOICES[args.ack] if args.ack else None
    shown = acked = 0
    async with secure_channel(bundle) as channel:
        # Following retries for ever; a one-off run gives up as any other call does (the
        # feed's defaults either way).
        feed = EventFeed(channel, cursor)
        async for event in feed.events(follow=args.follow):
            outcome = _outcome(event, chosen) if chosen is not None else None
            item = _event_json(event, outcome)
            if not args.json and shown == 0:
                print("\t".join(_columns(chosen is not None)))
            # Printed before it is acked: a failure in between shows it again next run.
            print(json.dumps(item) if args.json else _event_line(item, chosen is not None))
            sys.stdout.flush()
            shown += 1
            if outcome is not None:
                await event.ack(outcome)
                acked += 1
    if not args.json:
        print(f"{plural(shown, 'event')}, {acked:,} acked", file=sys.stderr)
    return 0
