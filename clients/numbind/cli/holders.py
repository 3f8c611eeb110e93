"""`numbind carrier query|revoke|revocation`: a subscriber's 一证通查 (query) and 一键解绑
(revoke), and the per-platform progress of a revocation, from the command line. The
parser and the report file are in numbind.cli.carrier."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from numbind.cli.common import (
    DATE_HELP,
    UsageError,
    add_bundle,
    add_json,
    add_region,
    add_time_pairs,
    command,
    iso_utc,
    load_bundle,
    numbers,
    paired,
    plural,
    resolve_time,
    time_value,
)
from numbind.sdk import CarrierClient, NumberView, RevocationStatus, Scope

__all__ = ["DEFAULT_SUBJECT", "add_holder_commands"]

DEFAULT_SUBJECT = "cli"
FINAL_STATES = frozenset({"DONE", "REJECTED"})
POLL_SECONDS = 1.0
_SCOPE_KEYWORDS = {"pre-tenure": Scope.ALL_PRE_TENURE, "all": Scope.ALL}


def add_holder_commands(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register query, revoke and revocation on the ``carrier`` group's subparsers."""
    query = actions.add_parser(
        "query",
        help="every platform bound to a subscriber's numbers (一证通查)",
        description="For each --phone/--tenure-start pair (in order), list the platforms "
        "holding bindings to the number: the previous holder's (bound before the tenure) "
        f"and the subscriber's own. --tenure-start is {DATE_HELP}.",
    )
    add_bundle(query, "carrier")
    query.add_argument(
        "--subject", required=True, help="the subscriber (e.g. a reference to their ID)"
    )
    add_time_pairs(query, "--tenure-start", "T", "when the subscriber got the number")
    add_region(query, dates=True)
    add_json(query)
    command(query, _query)

    revoke = actions.add_parser(
        "revoke",
        help="revoke bindings to a subscriber's number (一键解绑)",
        description="Revoke bindings in scope: pre-tenure (every binding made before "
        "the tenure), all (the subscriber's own too), or the listed platform ids. "
        f"--tenure-start is {DATE_HELP}.",
    )
    add_bundle(revoke, "carrier")
    revoke.add_argument(
        "--subject",
        default=DEFAULT_SUBJECT,
        help=f"the subscriber written into the attestation (default {DEFAULT_SUBJECT!r})",
    )
    revoke.add_argument("--phone", required=True, metavar="P", help="the subscriber's number")
    revoke.add_argument(
        "--tenure-start",
        type=time_value,
        required=True,
        metavar="T",
        help=f"when the subscriber got the number: {DATE_HELP}",
    )
    revoke.add_argument(
        "--scope",
        nargs="+",
        required=True,
        metavar="SCOPE",
        help="pre-tenure | all | PLATFORM [PLATFORM ...]",
    )
    add_region(revoke, dates=True)
    add_json(revoke)
    command(revoke, _revoke)

    revocation = actions.add_parser(
        "revocation",
        help="per-platform progress of a revocation",
        description="Each platform's state: PENDING, DELIVERED, DONE, REJECTED (with the "
        "platform's reason) or OVERDUE. With --wait, poll every second until every platform "
        "is DONE or REJECTED (exit 0) or the time is up (exit 1).",
    )
    add_bundle(revocation, "carrier")
    revocation.add_argument(
        "revocation_id", metavar="ID", help="the revocation's id (printed by revoke or report)"
    )
    revocation.add_argument(
        "--wait",
        type=_non_negative,
        metavar="SECONDS",
        help="poll until every platform is DONE or REJECTED, for at most SECONDS",
    )
    add_json(revocation)
    command(revocation, _revocation)


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("want a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("want a number of seconds >= 0")
    return value


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
                "refused_revocation": (
                    {
                        "revocation_id": p.refused.revocation_id,
                        "reason": p.refused.reason,
                        "reference": p.refused.reference,
                        "order_id": p.refused.order_id,
                        "refused_at": iso_utc(p.refused.refused_at),
                    }
                    if p.refused
                    else None
                ),
                "registry_id": p.registry_id,
                "registry_name": p.registry_name,
            }
            for p in view.platforms
        ],
        "unavailable": [
            {"registry_id": u.registry_id, "registry_name": u.registry_name, "reason": u.reason}
            for u in view.unavailable
        ],
    }


def _view_lines(view: NumberView) -> list[str]:
    lines = [f"{view.e164}  tenure since {iso_utc(view.tenure_start) or 'unknown'}"]
    if not view.platforms:
        lines.append("  no bindings")
    for p in view.platforms:
        whose = "previous holder's" if p.pre_tenure else "yours"
        n = plural(p.active_count, "binding")
        when = iso_utc(p.earliest) or "?"
        if p.latest is not None and p.latest != p.earliest:
            when += f" .. {iso_utc(p.latest)}"
        text = f"  {whose:<17}  {p.display_name} ({p.platform_id}, {p.category}): {n}, {when}"
        if p.open_revocation:
            text += f"; revocation {p.open_revocation} {p.open_state}"
        elif p.refused:
            # Still bound because the platform refused: its reason, and what to quote.
            r = p.refused
            text += f"; REJECTED revocation {r.revocation_id}"
            text += f": {r.reason}" if r.reason else ""
            text += f" [reference {r.reference}]"
        if p.registry_id:
            text += f"; at {p.registry_name or p.registry_id}"
        lines.append(text)
    for u in view.unavailable:
        lines.append(
            f"  NOT ASKED: registry {u.label} ({u.registry_id}) could not be reached: {u.reason}"
            "; its platforms are missing above"
        )
    return lines


async def _query(args: argparse.Namespace) -> int:
    pairs = paired(args, "--tenure-start")
    bundle = load_bundle(args.bundle, "carrier")
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
        raise UsageError("--scope: pre-tenure or all alone, or platform ids")
    if len(set(values)) != len(values):
        raise UsageError("--scope: a platform id is given twice")
    return Scope.PLATFORMS, list(values)


async def _revoke(args: argparse.Namespace) -> int:
    scope, platform_ids = _scope(args)
    tenure_start = resolve_time(args.tenure_start, args.region, "--tenure-start")
    (e164,) = numbers([args.phone], args.region, lambda _: "--phone")
    bundle = load_bundle(args.bundle, "carrier")
    async with CarrierClient(bundle, region=args.region) as client:
        revocation_id, orders = await client.revoke(
            args.subject, e164, tenure_start, scope, platform_ids
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
        print(f"revocation {revocation_id}: {plural(orders, 'order')}")
        if not orders:
            print("nothing in scope to revoke", file=sys.stderr)
    return 0


# -- revocation ----------------------------------------------------------------------------
def _settled(status: RevocationStatus) -> bool:
    """Every platform DONE or REJECTED, and no more orders to come (a large report's are
    created in chunks after it commits: those made so far may all be done already)."""
    return not status.orders_pending and all(p.state in FINAL_STATES for p in status.platforms)


async def _revocation(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle, "carrier")
    deadline = time.monotonic() + (args.wait or 0.0)
    async with CarrierClient(bundle) as client:
        while True:
            status = await client.revocation_status(args.revocation_id)
            remaining = deadline - time.monotonic()
            if args.wait is None or _settled(status) or remaining <= 0:
                break
            await asyncio.sleep(min(POLL_SECONDS, remaining))
    settled, progress = _settled(status), status.platforms
    if args.json:
        print(
            json.dumps(
                {
                    "revocation_id": args.revocation_id,
                    "settled": settled,
                    "orders_pending": status.orders_pending,
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
                            "reference": p.reference or None,
                            "order_ids": list(p.order_ids),
                            "deadline": iso_utc(p.deadline),
                        }
                        for p in progress
                    ],
                },
                ensure_ascii=False,
            )
        )
    else:
        print(f"revocation {args.revocation_id}")
        if status.orders_pending:
            print("  orders still being created: the counts below are those made so far")
        if not progress and not status.orders_pending:
            print("  no platforms")
        for p in progress:
            text = (
                f"  {p.state:<9}  {p.display_name} ({p.platform_id}, {p.category}): "
                f"{p.done}/{p.orders} done"
            )
            if p.rejected:
                text += f", {p.rejected:,} rejected"
            if p.reason:
                text += f": {p.reason}"
            if p.reference:
                text += f" [reference {p.reference}]"
            print(text)
    if args.wait is not None and not settled:
        print(
            f"numbind carrier revocation: not every platform is DONE or REJECTED (or orders "
            f"are still being created) after "
            f"{args.wait:g} s",
            file=sys.stderr,
        )
        return 1
    return 0
