"""`numbind`: the one command line. Server and operator commands live here; client
commands (tokenize, platform, carrier) are handed to `clients.cli`.

Errors become exit codes only here: 0 ok, 1 failed, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from registry.config import DEFAULT_LISTEN, Settings, load_settings

CLIENT_COMMANDS = {"tokenize", "platform", "carrier"}


def _settings(args: argparse.Namespace) -> Settings:
    flags: dict[str, Any] = {
        "data_dir": getattr(args, "data_dir", None),
        "listen": getattr(args, "listen", None),
        "database_url": getattr(args, "database_url", None),
        "log_level": getattr(args, "log_level", None),
    }
    return load_settings(flags)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="registry data dir (NUMBIND_DATA_DIR)")
    p.add_argument("--database-url", help="SQLAlchemy URL (NUMBIND_DATABASE_URL); default SQLite")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="numbind", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the registry")
    _common(serve)
    serve.add_argument("--listen", help=f"HOST:PORT (NUMBIND_LISTEN, default {DEFAULT_LISTEN})")
    serve.add_argument("--log-level", help="DEBUG|INFO|WARNING|ERROR")
    serve.add_argument("--init", action="store_true", help="run `admin init` first if needed")

    admin = sub.add_parser("admin", help="operate the registry")
    asub = admin.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    init = asub.add_parser("init", help="create CA, server cert, schema, first key, admin bundle")
    _common(init)
    init.add_argument("--registry", help="address written into the admin bundle")
    mig = asub.add_parser("migrate", help="upgrade the schema to the latest revision")
    _common(mig)
    for role in ("platform", "carrier"):
        p = asub.add_parser(f"add-{role}", help=f"register a {role} and write its bundle")
        _common(p)
        p.add_argument("id", help="principal id, [a-z0-9][a-z0-9._-]{0,62}")
        p.add_argument("--display-name", required=True, help="name shown to holders")
        if role == "platform":
            p.add_argument("--category", required=True, help="e.g. cloud-drive, lender, bank")
        p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
        p.add_argument("--registry", help="HOST:PORT written into the bundle")
    for action in ("suspend", "resume"):
        p = asub.add_parser(action, help=f"{action} a platform or carrier")
        _common(p)
        p.add_argument("role", choices=["platform", "carrier"])
        p.add_argument("id")
    for action, helptext in (
        ("rotate-key", "new active token key; the old one keeps evaluating"),
        ("retire-key", "stop evaluating under an old key"),
        ("export-key", "print a key's secret scalar (hex) for escrow"),
        ("keys", "list token keys"),
        ("stats", "registry statistics"),
    ):
        p = asub.add_parser(action, help=helptext)
        _common(p)
        p.add_argument("--bundle", type=Path, help="admin bundle (default DATA_DIR/admin-bundle)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if action in ("retire-key", "export-key"):
            p.add_argument("key_id")
    return parser


def _print(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, ensure_ascii=False, indent=2))
        return
    for k, v in obj.items():
        print(f"{k}: {v}")


def _admin_remote(args: argparse.Namespace, settings: Settings) -> int:
    from clients.admin import AdminClient

    bundle = args.bundle or settings.data_dir / "admin-bundle"
    with AdminClient.from_bundle(bundle) as client:
        action = args.admin_command
        if action == "rotate-key":
            _print(client.rotate_key(), args.json)
        elif action == "retire-key":
            client.retire_key(args.key_id)
            _print({"retired": args.key_id}, args.json)
        elif action == "export-key":
            print(
                "WARNING: this is the token key itself. Anyone holding it can compute tokens "
                "for every number without asking the registry. Store it in escrow only.",
                file=sys.stderr,
            )
            _print(
                {"key_id": args.key_id, "secret_scalar": client.export_key(args.key_id)}, args.json
            )
        elif action == "keys":
            for key in client.list_keys():
                _print(key, args.json)
        else:
            _print(client.stats(), args.json)
    return 0


def _admin(args: argparse.Namespace) -> int:
    from registry import operator

    settings = _settings(args)
    action = args.admin_command
    if action == "init":
        result = operator.init(settings, registry_address=args.registry)
        print(f"data dir:       {settings.data_dir}")
        print(f"CA:             {'created' if result.created_ca else 'kept'} ({settings.pki_dir})")
        print(f"schema:         {result.schema}")
        print(f"active key:     {result.active_key_id}")
        print(f"admin bundle:   {result.admin_bundle}")
        return 0
    if action == "migrate":
        from registry.storage import migrate
        from registry.storage.db import Database

        db = Database(settings.effective_database_url)
        try:
            before, after = migrate.upgrade(db.write_engine)
        finally:
            db.close()
        print(f"schema already at {after}" if before == after else f"schema {before} -> {after}")
        return 0
    if action in ("add-platform", "add-carrier"):
        role = action.removeprefix("add-")
        bundle = operator.add_principal(
            settings,
            role,
            args.id,
            args.out,
            display_name=args.display_name,
            category=getattr(args, "category", ""),
            registry_address=args.registry,
        )
        print(f"registered {bundle.principal_uri}; bundle written to {args.out}")
        return 0
    if action in ("suspend", "resume"):
        operator.set_suspended(settings, args.role, args.id, action == "suspend")
        print(f"{args.role} {args.id} {'suspended' if action == 'suspend' else 'resumed'}")
        return 0
    return _admin_remote(args, settings)


def _serve(args: argparse.Namespace) -> int:
    from registry import logs, operator
    from registry.api.server import serve
    from registry.app import Registry

    settings = _settings(args)
    logs.configure(settings.log_level)
    if args.init or not (settings.pki_dir / "server.pem").exists():
        if not args.init:
            print(
                f"no registry in {settings.data_dir}; run `numbind admin init` or pass --init",
                file=sys.stderr,
            )
            return 1
        operator.init(settings)
    registry = Registry.open(settings)
    asyncio.run(serve(registry))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in CLIENT_COMMANDS:
        from clients.cli import main as client_main

        return client_main(argv)
    parser = build_parser()
    args = parser.parse_args(argv or ["serve"])
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "admin":
            return _admin(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("NUMBIND_DEBUG"):
            raise
        print(f"numbind: error: {exc}", file=sys.stderr)
        return 1
    parser.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
