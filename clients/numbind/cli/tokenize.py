"""`numbind tokenize`: numbers -> tokens through the registry's VOPRF (proofs checked)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from numbind.cli.common import CliError, add_bundle, add_json, add_region, command, numbers
from numbind.protocol.bundle import Bundle
from numbind.sdk.channel import secure_channel
from numbind.sdk.tokenizer import Tokenizer

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    tok = sub.add_parser(
        "tokenize",
        help="numbers -> tokens through the registry's VOPRF",
        description="Tokenise numbers: each is normalised to E.164, blinded, evaluated by "
        "the registry (its proof checked against the published key) and unblinded. The "
        "registry never sees a number.",
    )
    add_bundle(tok, "platform or carrier")
    tok.add_argument(
        "--file",
        type=Path,
        help="a file with one number a line (blank lines skipped), after the PHONE arguments",
    )
    add_region(tok)
    add_json(tok, "print a JSON array of {e164, token, key_id}")
    tok.add_argument("phones", nargs="*", metavar="PHONE", help="numbers to tokenise")
    command(tok, _tokenize)


def _read_numbers(args: argparse.Namespace) -> list[str]:
    """Every number in E.164, the arguments first, then the file's lines. A bad one is
    named by its place ("number 2") or its line ("F: line 7"), never by its digits."""
    given: list[str] = list(args.phones)
    lines: list[int] = []
    if args.file:
        with open(args.file, encoding="utf-8", errors="surrogateescape") as fh:
            for line, text in enumerate(fh, start=1):
                if text.strip():
                    given.append(text.strip())
                    lines.append(line)
    if not given:
        raise CliError("tokenize: give numbers as arguments or with --file")
    argc = len(args.phones)

    def where(i: int) -> str:
        return f"number {i + 1}" if i < argc else f"{args.file}: line {lines[i - argc]}"

    return numbers(given, args.region, where)


async def _tokenize(args: argparse.Namespace) -> int:
    bundle = Bundle.load(args.bundle)
    e164s = _read_numbers(args)
    async with secure_channel(bundle) as channel:
        tokenizer = Tokenizer(channel, region=args.region)
        try:
            results = await tokenizer.tokenize(e164s)
        finally:
            tokenizer.close()
    rows = [{"e164": r.e164, "token": r.token.hex(), "key_id": r.key_id} for r in results]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['e164']}\t{row['token']}\t{row['key_id']}")
    return 0
