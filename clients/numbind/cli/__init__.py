"""`numbind`: the one command line, for operators, platforms and carriers.

    numbind serve      run the registry
    numbind admin      operate a registry (init, principals, keys, stats)
    numbind tokenize   numbers -> tokens through the registry's VOPRF
    numbind platform   publish, sync and follow a platform's bindings and events
    numbind carrier    report lifecycle events; query and revoke for a holder

`main(argv) -> int` is the only place where errors become exit codes: 0 ok, 1 failed,
2 usage (argparse), 130 interrupted. Set NUMBIND_DEBUG=1 to see tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import sys
from collections.abc import Sequence

from numbind.cli import admin, carrier, federation, platform, serve, tokenize
from numbind.cli.common import CliError
from numbind.protocol.bundle import BundleError
from numbind.sdk.errors import NumbindClientError

__all__ = ["build_parser", "main"]

# Failures a user can act on: reported as one line, exit 1. Anything else is a bug and
# keeps its traceback.
_REPORTED: tuple[type[BaseException], ...] = (
    CliError,
    NumbindClientError,
    BundleError,
    OSError,
    ValueError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="numbind",
        description="numbind: a registry of phone-number token bindings that ends the "
        "recycled-number mess (二次放号).",
        epilog="Run `numbind COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve.add_commands(sub)
    admin.add_commands(sub)
    tokenize.add_commands(sub)
    platform.add_commands(sub)
    carrier.add_commands(sub)
    federation.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
        if inspect.isawaitable(result):
            result = asyncio.run(result)  # type: ignore[arg-type]
        return int(result)
    except KeyboardInterrupt:
        return 130
    except _REPORTED + _registry_errors() as exc:
        if os.environ.get("NUMBIND_DEBUG"):
            raise
        print(f"numbind: error: {exc}", file=sys.stderr)
        return 1


def _registry_errors() -> tuple[type[BaseException], ...]:
    # Offline admin commands raise the registry's own errors (a principal already
    # registered, a key not found); imported here, not at the top, so client-only
    # commands never load the server.
    from numbind.registry.errors import NumbindError

    return (NumbindError,)
