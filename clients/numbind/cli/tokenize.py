"""`numbind tokenize`: numbers -> tokens through the registry's VOPRF (proofs checked)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from numbind.cli.common import CliError, add_bundle, add_json, add_region
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
    tok.add_argument("--file", type=Path, help="a file with one number a line")
    add_region(tok)
    add_json(tok)
    tok.add_argument("phones", nargs="*", metavar="PHONE", help="numbers to tokenise")
    tok.set_defaults(handler=_tokenize)


def _read_numbers(args: argparse.Namespace) -> list[str]:
    numbers = list(args.phones)
    if args.file:
        with open(args.file, encoding="utf-8") as fh:
            numbers += [line.strip() for line in fh if line.strip()]
    if not numbers:
        raise CliError("tokenize: give numbers as arguments or with --file")
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
