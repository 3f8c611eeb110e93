"""`numbind admin`: operate a registry.

Actions on the data dir itself (init, migrate, add-platform, add-carrier, reissue-bundle,
suspend, resume) work offline, beside or before `numbind serve`. Actions that need the
running registry (rotate-key, retire-key, export-key, keys, stats) call it with the admin
bundle, at the address `admin init --registry` recorded (DATA_DIR/advertised.json), else the
one `serve` wrote to DATA_DIR/serving.json, else the one in the admin bundle, unless
--registry names another; when nothing answers there, the error names that
address and the file it came from.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from numbind.cli.admin_remote import add_remote_commands
from numbind.cli.common import CliError, UsageError, command
from numbind.cli.serve import add_partitions_option, add_store_options, settings_from
from numbind.protocol.addresses import check_registry_address
from numbind.protocol.categories import CATEGORIES
from numbind.protocol.limits import MAX_DISPLAY_NAME

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    admin = sub.add_parser(
        "admin",
        help="operate a registry: init, principals, keys, stats",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    asub = admin.add_subparsers(
        dest="admin_command", metavar="ACTION", required=True, help="what to do"
    )
    init = asub.add_parser(
        "init",
        help="create the CA, server certificate, schema, first key and admin bundle",
        description="Create whatever is missing in the data dir: the registry CA, a server "
        "certificate, the store's schema, the first token key and the admin bundle "
        "(DATA_DIR/admin-bundle). Idempotent: a second run keeps what exists. Works offline.",
    )
    add_store_options(init)
    init.add_argument(
        "--registry",
        metavar="HOST:PORT",
        help="where clients reach the registry (with several processes, the load "
        "balancer): written into the admin bundle and recorded in DATA_DIR/advertised.json, "
        "which new bundles and the admin actions then use rather than DATA_DIR/serving.json "
        "(which names one process)",
    )
    init.add_argument(
        "--server-name",
        action="append",
        default=[],
        type=_server_name,
        metavar="NAME",
        help="a DNS name or IP address clients dial, for the server certificate to name "
        "(repeatable): the load balancer's name, each process's IP when bundles list them. "
        "It always names 127.0.0.1, localhost, ::1 and the host of --registry; a "
        "certificate that misses a name is re-issued naming it too (restart `numbind serve`)",
    )
    add_partitions_option(init)
    command(init, _init)
    mig = asub.add_parser(
        "migrate",
        help="upgrade the store's schema to the latest revision",
        description="Upgrade the store's schema to the latest revision (serve also does this "
        "on start). Works offline.",
    )
    add_store_options(mig)
    add_partitions_option(mig)
    command(mig, _migrate)
    for role in ("platform", "carrier"):
        p = asub.add_parser(
            f"add-{role}",
            help=f"register a {role} and write its bundle",
            description=f"Register a {role} in the store and write its bundle (client key, "
            "certificate signed by the registry CA, CA certificate, registry address"
            + (", Ed25519 attestation key" if role == "carrier" else "")
            + ") to --out. Works offline, beside or before `numbind serve`.",
        )
        add_store_options(p)
        p.add_argument("id", help=f"the {role}'s id, [a-z0-9][a-z0-9._-]{{0,62}}")
        p.add_argument(
            "--display-name",
            required=True,
            help=f"the name holders see (at most {MAX_DISPLAY_NAME} characters of printable text)",
        )
        if role == "platform":
            p.add_argument(
                "--category",
                required=True,
                metavar="CATEGORY",
                # Checked with the registry's own rule (and message), not by argparse.
                help=f"what the platform is: one of {', '.join(CATEGORIES)}",
            )
        p.add_argument(
            "--out", type=Path, required=True, metavar="DIR", help="bundle directory to write"
        )
        p.add_argument(
            "--registry",
            metavar="HOST:PORT",
            help="address written into the bundle (default: the one `admin init --registry` "
            "recorded, else where `serve` listens)",
        )
        command(p, _add_principal)
    reissue = asub.add_parser(
        "reissue-bundle",
        help="issue a fresh bundle for an existing platform or carrier (old one revoked)",
        description="Issue a registered platform or carrier a new client key and "
        "certificate (a carrier also a new attestation key) and write them as a bundle to "
        "--out. The registry refuses the old certificate from then on (a running registry "
        "within a second). Use it when a bundle is lost or leaked, or was written with the "
        "wrong address. Writing over the old bundle directory keeps what is not a "
        "credential: a platform's account-ref.key and feed cursor. Works offline.",
    )
    add_store_options(reissue)
    reissue.add_argument("id", help="the platform's or carrier's id")
    reissue.add_argument(
        "--role",
        choices=("platform", "carrier"),
        help="needed only when a platform and a carrier share the id",
    )
    reissue.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="bundle directory to write"
    )
    reissue.add_argument(
        "--registry",
        metavar="HOST:PORT",
        help="address written into the bundle (default: the one `admin init --registry` "
        "recorded, else where `serve` listens)",
    )
    command(reissue, _reissue)
    for action in ("suspend", "resume"):
        p = asub.add_parser(
            action,
            help=f"{action} a platform or carrier",
            description="Suspend a principal: its calls get UNAUTHENTICATED within a second, "
            "open streams included."
            if action == "suspend"
            else "Reinstate a suspended principal.",
        )
        add_store_options(p)
        p.add_argument("role", choices=["platform", "carrier"], help="the principal's role")
        p.add_argument("id", help="the principal's id")
        command(p, _suspend)
    add_remote_commands(asub)


def _server_name(text: str) -> str:
    from numbind.registry.server_cert import server_name

    try:
        return server_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _check_registry(registry: str | None) -> None:
    # Before anything is registered: a bundle refused only when it is written would leave
    # a principal in the store without one.
    if registry:
        try:
            check_registry_address(registry)
        except ValueError as exc:
            raise CliError(f"--registry: {exc}") from None


def _init(args: argparse.Namespace) -> int:
    from numbind.registry import operator
    from numbind.registry.config import record_advertised_address

    settings = settings_from(args)
    _check_registry(args.registry)
    result = operator.init(
        settings,
        registry_address=args.registry,
        server_names=args.server_name,
        partitions=args.partitions,
    )
    if args.registry:
        record_advertised_address(settings.data_dir, args.registry)
    print(f"data dir:       {settings.data_dir}")
    print(f"CA:             {'created' if result.created_ca else 'kept'} ({settings.pki_dir})")
    cert = result.server_cert
    print(f"server cert:    {cert.action}, naming {', '.join(cert.names)}")
    if cert.added:
        print(
            f"                re-issued to name {', '.join(cert.added)} too; "
            "running `numbind serve` processes present it once restarted"
        )
    print(f"schema:         {result.schema}")
    if result.partitions is not None:
        print(f"partitions:     {result.partitions} per growing table")
    elif args.partitions is not None:
        print(f"partitions:     {args.partitions} asked, not used: this store is not partitioned")
    print(f"active key:     {result.active_key_id}")
    print(f"admin bundle:   {result.admin_bundle}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from numbind.registry.storage import migrate
    from numbind.registry.storage.db import Database

    settings = settings_from(args)
    db = Database(settings.effective_database_url)
    try:
        before, after = migrate.upgrade(db.write_engine, partitions=args.partitions)
        built = migrate.store_partitions(db.write_engine)
    finally:
        db.close()
    print(f"schema already at {after}" if before == after else f"schema {before} -> {after}")
    if built is not None:
        print(f"partitions: {built} per growing table (fixed when the tables were built)")
    elif args.partitions is not None:
        print(f"partitions: {args.partitions} asked, not used: this store is not partitioned")
    return 0


def _add_principal(args: argparse.Namespace) -> int:
    from numbind.registry import operator
    from numbind.registry.errors import AlreadyExists

    _check_registry(args.registry)
    settings = settings_from(args)
    role = args.admin_command.removeprefix("add-")
    try:
        bundle = operator.add_principal(
            settings,
            role,
            args.id,
            args.out,
            display_name=args.display_name,
            category=getattr(args, "category", ""),
            registry_address=args.registry,
        )
    except AlreadyExists as exc:
        raise CliError(
            f"{exc.message}; for a fresh bundle (new key, the old one revoked): numbind "
            f"admin reissue-bundle {args.id} --data-dir {settings.data_dir} --out DIR"
        ) from None
    print(f"registered {bundle.principal_uri} for {bundle.registry}; bundle written to {args.out}")
    return 0


def _reissue(args: argparse.Namespace) -> int:
    from numbind.registry import operator
    from numbind.sdk.account_refs import ACCOUNT_REF_KEY_FILE
    from numbind.sdk.feed import CURSOR_FILE

    _check_registry(args.registry)
    settings = settings_from(args)
    roles = [args.role] if args.role else operator.principal_roles(settings, args.id)
    if not roles:
        raise CliError(f"no platform or carrier named {args.id!r} in {settings.data_dir}")
    if len(roles) > 1:
        raise UsageError(f"both a platform and a carrier are named {args.id!r}: pass --role")
    out: Path = args.out
    kept = [f for f in (ACCOUNT_REF_KEY_FILE, CURSOR_FILE) if (out / f).exists()]
    bundle = operator.reissue_bundle(
        settings, roles[0], args.id, out, registry_address=args.registry
    )
    print(
        f"reissued {bundle.principal_uri} for {bundle.registry}; bundle written to {out}; "
        "the old certificate"
        + (" and attestation key are" if bundle.role == "carrier" else " is")
        + " refused from now on"
    )
    if bundle.role == "platform" and ACCOUNT_REF_KEY_FILE not in kept:
        print(
            f"note: {out} has no {ACCOUNT_REF_KEY_FILE}: copy it (and {CURSOR_FILE}) from the old "
            "bundle, or every account_ref changes and the platform must publish everything "
            "again"
        )
    return 0


def _suspend(args: argparse.Namespace) -> int:
    from numbind.registry import operator

    settings = settings_from(args)
    suspend = args.admin_command == "suspend"
    operator.set_suspended(settings, args.role, args.id, suspend)
    print(f"{args.role} {args.id} {'suspended' if suspend else 'resumed'}")
    return 0
