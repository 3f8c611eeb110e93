"""`numbind admin`: operate a registry.

Actions on the data dir itself (init, migrate, add-platform, add-carrier, suspend, resume)
work offline, beside or before `numbind serve`. Actions that need the running registry
(rotate-key, retire-key, export-key, keys, stats) call it with the admin bundle, at the
address `serve` wrote to DATA_DIR/serving.json unless --registry names another.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from numbind.cli.common import CliError
from numbind.cli.serve import add_store_options, settings_from

__all__ = ["add_commands"]

_REMOTE = (
    ("rotate-key", "make a new active token key and re-key the store to it"),
    ("retire-key", "stop evaluating under an old token key and forget its re-key delta"),
    ("export-key", "print a token key's secret scalar (hex) for escrow"),
    ("keys", "list the token keys"),
    ("stats", "registry statistics"),
)


def add_commands(sub: Any) -> None:
    admin = sub.add_parser(
        "admin",
        help="operate a registry: init, principals, keys, stats",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    asub = admin.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    init = asub.add_parser(
        "init", help="create the CA, server certificate, schema, first key and admin bundle"
    )
    add_store_options(init)
    init.add_argument(
        "--registry", metavar="HOST:PORT", help="address written into the admin bundle"
    )
    init.set_defaults(handler=_init)
    mig = asub.add_parser("migrate", help="upgrade the store's schema to the latest revision")
    add_store_options(mig)
    mig.set_defaults(handler=_migrate)
    for role in ("platform", "carrier"):
        p = asub.add_parser(f"add-{role}", help=f"register a {role} and write its bundle")
        add_store_options(p)
        p.add_argument("id", help=f"the {role}'s id, [a-z0-9][a-z0-9._-]{{0,62}}")
        p.add_argument(
            "--display-name", required=True, help="the name holders see (at most 64 characters)"
        )
        if role == "platform":
            p.add_argument(
                "--category", required=True, help="what the platform is, e.g. cloud-drive, bank"
            )
        p.add_argument("--out", type=Path, required=True, metavar="DIR", help="bundle to write")
        p.add_argument(
            "--registry",
            metavar="HOST:PORT",
            help="address written into the bundle (default: where `serve` listens)",
        )
        p.set_defaults(handler=_add_principal)
    for action in ("suspend", "resume"):
        p = asub.add_parser(action, help=f"{action} a platform or carrier")
        add_store_options(p)
        p.add_argument("role", choices=["platform", "carrier"], help="the principal's role")
        p.add_argument("id", help="the principal's id")
        p.set_defaults(handler=_suspend)
    for action, helptext in _REMOTE:
        p = asub.add_parser(action, help=helptext)
        add_store_options(p)
        p.add_argument(
            "--bundle",
            type=Path,
            metavar="DIR",
            help="admin bundle (default DATA_DIR/admin-bundle)",
        )
        p.add_argument(
            "--registry",
            metavar="HOST:PORT",
            help="the running registry (default: the address in DATA_DIR/serving.json)",
        )
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
        if action in ("retire-key", "export-key"):
            p.add_argument("key_id", help="the key's id (from `numbind admin keys`)")
        p.set_defaults(handler=_remote)


def _print(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, ensure_ascii=False, indent=2))
        return
    for k, v in obj.items():
        if isinstance(v, dict):  # e.g. stats' re-key progress
            print(f"{k}:")
            for k2, v2 in v.items():
                print(f"  {k2}: {v2}")
        else:
            print(f"{k}: {v}")


def _init(args: argparse.Namespace) -> int:
    from numbind.registry import operator

    settings = settings_from(args)
    result = operator.init(settings, registry_address=args.registry)
    print(f"data dir:       {settings.data_dir}")
    print(f"CA:             {'created' if result.created_ca else 'kept'} ({settings.pki_dir})")
    print(f"schema:         {result.schema}")
    print(f"active key:     {result.active_key_id}")
    print(f"admin bundle:   {result.admin_bundle}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from numbind.registry.storage import migrate
    from numbind.registry.storage.db import Database

    settings = settings_from(args)
    db = Database(settings.effective_database_url)
    try:
        before, after = migrate.upgrade(db.write_engine)
    finally:
        db.close()
    print(f"schema already at {after}" if before == after else f"schema {before} -> {after}")
    return 0


def _add_principal(args: argparse.Namespace) -> int:
    from numbind.registry import operator

    settings = settings_from(args)
    role = args.admin_command.removeprefix("add-")
    bundle = operator.add_principal(
        settings,
        role,
        args.id,
        args.out,
        display_name=args.display_name,
        category=getattr(args, "category", ""),
        registry_address=args.registry,
    )
    print(f"registered {bundle.principal_uri} for {bundle.registry}; bundle written to {args.out}")
    return 0


def _suspend(args: argparse.Namespace) -> int:
    from numbind.registry import operator

    settings = settings_from(args)
    suspend = args.admin_command == "suspend"
    operator.set_suspended(settings, args.role, args.id, suspend)
    print(f"{args.role} {args.id} {'suspended' if suspend else 'resumed'}")
    return 0


def _remote(args: argparse.Namespace) -> int:
    from numbind.protocol.bundle import Bundle
    from numbind.registry.config import served_address
    from numbind.sdk.admin import AdminClient
    from numbind.sdk.errors import Unavailable

    settings = settings_from(args)
    bundle_dir = args.bundle or settings.data_dir / "admin-bundle"
    bundle = Bundle.load(bundle_dir)
    if args.registry:
        address, source = args.registry, "--registry"
    elif (served := served_address(settings.data_dir)) is not None:
        address, source = served, str(settings.data_dir / "serving.json")
    else:
        address, source = bundle.registry, str(bundle_dir / "bundle.json")
    try:
        with AdminClient(bundle, address=address) as client:
            _remote_action(args, client)
    except Unavailable as exc:
        raise CliError(
            f"cannot reach the registry at {address} (address from {source}): {exc.message}; "
            "is `numbind serve` running? --registry HOST:PORT names another address"
        ) from None
    return 0


def _remote_action(args: argparse.Namespace, client: Any) -> None:
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
        _print({"key_id": args.key_id, "secret_scalar": client.export_key(args.key_id)}, args.json)
    elif action == "keys":
        for key in client.list_keys():
            _print(key, args.json)
    else:
        _print(client.stats(), args.json)
