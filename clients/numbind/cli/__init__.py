"""`numbind`: the one command line, for operators, platforms and carriers.

    numbind serve      run the registry
    numbind admin      operate a registry (init, principals, keys, stats)
    numbind tokenize   numbers -> tokens through the registry's VOPRF
    numbind platform   publish, sync and follow a platform's bindings and events
    numbind carrier    report lifecycle events; query and revoke for a holder
    numbind federation join registries into one federation (manifest, members)
    numbind log        check the registry's verifiable log (checkpoints, proofs, audits)

`main(argv) -> int` is the only place where errors become exit codes: 0 ok, 1 failed,
2 usage (argparse's own checks and a handler's UsageError), 130 interrupted. Handlers
return 0 or 1 or raise; none calls sys.exit. Set NUMBIND_DEBUG=1 to see tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from numbind.cli import admin, carrier, federation, log, platform, serve, tokenize
from numbind.cli.common import DATES_NOTE, CliError, UsageError, connection_problem
from numbind.protocol.bundle import BUNDLE_JSON, Bundle, BundleError
from numbind.sdk.errors import NumbindClientError, Unavailable

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
        epilog=f"Run `numbind COMMAND --help` for a command's options. {DATES_NOTE}",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, help="the command to run:"
    )
    serve.add_commands(sub)
    admin.add_commands(sub)
    tokenize.add_commands(sub)
    platform.add_commands(sub)
    carrier.add_commands(sub)
    federation.add_commands(sub)
    log.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse has printed the help (0) or the usage error (2); return, don't exit.
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        result = args.handler(args)
        if inspect.isawaitable(result):
            result = asyncio.run(result)  # type: ignore[arg-type]
        return int(result)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`numbind admin stats | head`): stop quietly, as Unix tools
        # do, and keep Python from complaining again when it flushes stdout at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
    except UsageError as exc:
        command: argparse.ArgumentParser = args.parser
        command.print_usage(sys.stderr)
        print(f"{command.prog}: error: {exc}", file=sys.stderr)
        return 2
    except _REPORTED + _registry_errors() as exc:
        if os.environ.get("NUMBIND_DEBUG"):
            raise
        print(f"numbind: error: {_message(exc, args)}", file=sys.stderr)
        return 1


def _message(exc: BaseException, args: argparse.Namespace) -> str:
    store_errors = sys.modules.get("sqlalchemy.exc")  # loaded if a store was opened
    if store_errors is not None and isinstance(exc, store_errors.DBAPIError):
        return _store_message(exc, store_errors)
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"  # not "[Errno 2] ... 'y'"
    if isinstance(exc, Unavailable) and connection_problem(exc.message) is not None:
        # gRPC's connection text is not for users: say where we went and why it failed.
        bundle_dir: Path | None = getattr(args, "bundle", None)
        try:
            address = Bundle.load(bundle_dir).registry if bundle_dir else None
        except BundleError:
            address = None
        why = connection_problem(exc.message, address)
        if bundle_dir is not None and address is not None:
            return (
                f"cannot reach the registry at {address} (the address in "
                f"{bundle_dir / BUNDLE_JSON}): {why}"
            )
        return f"cannot reach the registry: {why}"
    return str(exc)


# SQLSTATE classes and codes of a connection the server refused or never answered: bad
# credentials (28), connection exceptions (08), a database that does not exist, a server
# starting up or shutting down. Anything else it said is about what was asked of it.
_CONNECT_CLASSES = ("08", "28")
_CONNECT_CODES = ("3D000", "57P01", "57P02", "57P03")


def _store_message(exc: Any, store_errors: Any) -> str:
    """A driver's error as one line: what the database said, with PostgreSQL's DETAIL and
    HINT when it gave them (the HINT is often the fix: max_locks_per_transaction), never
    SQLAlchemy's wrapper with its statement and link."""
    orig = exc.orig
    diag = getattr(orig, "diag", None)  # psycopg's fields of a server error
    primary = getattr(diag, "message_primary", None)
    lines = str(orig).strip().splitlines()
    said = primary or (lines[0] if lines else type(orig).__name__)
    for label in ("detail", "hint"):
        extra = getattr(diag, f"message_{label}", None)
        if extra:
            said += f"; {label}: {' '.join(extra.split())}"
    code = getattr(orig, "sqlstate", None)
    if code is None:
        # No SQLSTATE: libpq never reached the server, or a driver without codes
        # (SQLite) whose OperationalError is a file it cannot open or use.
        connecting = isinstance(exc, store_errors.OperationalError | store_errors.InterfaceError)
    else:
        connecting = code[:2] in _CONNECT_CLASSES or code in _CONNECT_CODES
    if connecting:
        return f"the store cannot be reached: {said} (check --database-url / NUMBIND_DATABASE_URL)"
    return f"the store refused: {said}"


def _registry_errors() -> tuple[type[BaseException], ...]:
    # Offline admin commands raise the registry's own errors (a principal already
    # registered, a key not found); imported here, not at the top, so client-only
    # commands never load the server.
    from numbind.registry.errors import NumbindError
    from sqlalchemy.exc import DBAPIError

    # Any error of the database (unreachable, or refusing what a migration or action
    # asked: out of shared memory, a name already taken) is the operator's to act on.
    return (NumbindError, DBAPIError)
