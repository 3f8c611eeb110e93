"""Client commands of `numbind`: tokenize, platform ... (publish, sync, events,
check-reassigned), carrier ... (report, query, revoke, revocation).

Reached through `numbind` (registry.cli hands these commands over). Errors become exit codes
only here: 0 ok, 1 failed, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from clients.bundle import Bundle, BundleError, secure_channel
from clients.errors import NumbindClientError
from clients.phone import InvalidNumber
from clients.tokenizer import Tokenizer


def _read_numbers(args: argparse.Namespace) -> list[str]:
    numbers = list(args.phones)
    if args.file:
        with open(args.file, encoding="utf-8") as fh:
            numbers += [line.strip() for line in fh if line.strip()]
    if not numbers:
        raise SystemExit("numbind tokenize: give numbers as arguments or with --file")
    return numbers


async def _tokenize(args: argparse.Namespace) -> int:
    bundle = Bundle.load(args.bundle)
    numbers = _read_numbers(args)
    async with secure_channel(bundle) as channel:
        tokenizer = Tokenizer(channel, region=args.region)
        try:
            results = await tokenizer.tokenize(numbers)
        finally:
            tokenizer.close()
    rows = [{"e164": r.e164, "token": r.token.hex(), "key_id": r.key_id} for r in results]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['e164']}\t{row['token']}\t{row['key_id']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="numbind")
    sub = parser.add_subparsers(dest="command", required=True)
    tok = sub.add_parser("tokenize", help="numbers -> tokens through the registry's VOPRF")
    tok.add_argument("--bundle", type=Path, required=True, help="platform or carrier bundle dir")
    tok.add_argument("--file", type=Path, help="one number a line")
    tok.add_argument("--region", default="CN", help="region for numbers without +CC")
    tok.add_argument("--json", action="store_true")
    tok.add_argument("phones", nargs="*", metavar="PHONE")
    from clients import cli_carrier, cli_feed, cli_platform

    cli_platform.add_commands(sub)
    cli_feed.add_platform_feed_commands(_subparsers_of(sub.choices["platform"]))
    cli_carrier.add_commands(sub)
    return parser


def _subparsers_of(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The subcommand registry of a parser another module built (to add actions to it)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError(f"{parser.prog} has no subcommands")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "tokenize":
            return asyncio.run(_tokenize(args))
        return int(asyncio.run(args.handler(args)))
    except KeyboardInterrupt:
        return 130
    except (NumbindClientError, BundleError, InvalidNumber, OSError, ValueError) as exc:
        if os.environ.get("NUMBIND_DEBUG"):
            raise
        print(f"numbind: error: {exc}", file=sys.stderr)
        return 1
