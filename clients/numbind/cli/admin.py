"""`numbind admin`: operate a registry.

Actions on the data dir itself (init, migrate, add-platform, add-carrier, reissue-bundle,
suspend, resume) work offline, beside or before `numbind serve`. Actions that need the
running registry (rotate-key, retire-key, export-key, keys, stats) call it with the admin
bundle, at the address `serve` wrote to DATA_DIR/serving.json (else the one in the admin
bundle) unless --registry names another; when nothing answers there, the error names that
address and the file it came from.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from numbind.cli import table
from numbind.cli.common import (
    CliError,
    UsageError,
    add_json,
    command,
    connection_problem,
    plural,
)
from numbind.cli.serve import add_store_options, settings_from
from numbind.protocol.categories import CATEGORIES
from numbind.protocol.limits import MAX_DISPLAY_NAME

__all__ = ["add_commands"]

_REMOTE = (
    ("rotate-key", "make a new active token key and re-key the store to it"),
    ("retire-key", "stop evaluating under an old token key and forget its re-key delta"),
    ("export-key", "print a token key's secret scalar (hex) for escrow"),
    ("keys", "list the token keys"),
    ("stats", "registry statistics: principals, bindings, numbers, orders, usage, re-key"),
)
_REMOTE_NOTE = (
    "Needs the running registry: its address comes from DATA_DIR/serving.json (written by "
    "`numbind serve`), else from the admin bundle, unless --registry names it."
)


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
        "--registry", metavar="HOST:PORT", help="address written into the admin bundle"
    )
    command(init, _init)
    mig = asub.add_parser(
        "migrate",
        help="upgrade the store's schema to the latest revision",
        description="Upgrade the store's schema to the latest revision (serve also does this "
        "on start). Works offline.",
    )
    add_store_options(mig)
    mig.add_argument(
        "--partitions",
        type=int,
        metavar="N",
        help="PostgreSQL: hash partitions per growing table, used only when they are built "
        "(default: NUMBIND_PARTITIONS, else 16)",
    )
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
            help="address written into the bundle (default: where `serve` listens)",
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
        help="address written into the bundle (default: where `serve` listens)",
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
    for action, helptext in _REMOTE:
        p = asub.add_parser(
            action,
            help=helptext,
            description=f"{helptext[0].upper()}{helptext[1:]}. {_REMOTE_NOTE}",
        )
        add_store_options(p, database=False)
        p.add_argument(
            "--bundle",
            type=Path,
            metavar="DIR",
            help="admin bundle (default DATA_DIR/admin-bundle)",
        )
        p.add_argument(
            "--registry",
            metavar="HOST:PORT",
            help="the running registry (default: the address in DATA_DIR/serving.json, "
            "where `numbind serve` records where it listens)",
        )
        add_json(p)
        if action in ("retire-key", "export-key"):
            p.add_argument("key_id", help="the key's id (from `numbind admin keys`)")
        command(p, _remote)


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
        before, after = migrate.upgrade(db.write_engine, partitions=args.partitions)
    finally:
        db.close()
    print(f"schema already at {after}" if before == after else f"schema {before} -> {after}")
    return 0


def _add_principal(args: argparse.Namespace) -> int:
    from numbind.registry import operator
    from numbind.registry.errors import AlreadyExists

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


# -- actions on the running registry ---------------------------------------------------------
def _remote(args: argparse.Namespace) -> int:
    from numbind.protocol.bundle import BUNDLE_JSON, Bundle
    from numbind.registry.config import SERVING_FILE, served_address
    from numbind.sdk.admin import AdminClient
    from numbind.sdk.errors import Unavailable

    settings = settings_from(args)
    bundle_dir: Path = args.bundle or settings.data_dir / "admin-bundle"
    bundle = Bundle.load(bundle_dir)
    if args.registry:
        address, source = args.registry, "--registry"
    elif (served := served_address(settings.data_dir)) is not None:
        address, source = served, f"the address in {settings.data_dir / SERVING_FILE}"
    else:
        address, source = bundle.registry, f"the address in {bundle_dir / BUNDLE_JSON}"
    try:
        with AdminClient(bundle, address=address) as client:
            _remote_action(args, client)
    except Unavailable as exc:
        raise CliError(
            f"cannot reach the registry at {address} ({source}): "
            f"{connection_problem(exc.message) or exc.message}; is `numbind serve` running "
            "there? --registry HOST:PORT names another address"
        ) from None
    return 0


def _remote_action(args: argparse.Namespace, client: Any) -> None:
    action = args.admin_command
    if action == "rotate-key":
        rotation = client.rotate_key()
        if args.json:
            print(json.dumps(rotation.as_json(), indent=2))
        else:
            print(f"key_id: {rotation.key.key_id}\nstate: {rotation.key.state}")
            if rotation.rekey is not None:
                print(f"\n{rekey_table(rotation.rekey)}")
    elif action == "retire-key":
        client.retire_key(args.key_id)
        _print({"retired": args.key_id}, args.json)
    elif action == "export-key":
        secret = client.export_key(args.key_id).hex()
        print(
            "WARNING: this is the token key itself. Anyone holding it can compute tokens "
            "for every number without asking the registry. Store it in escrow only.",
            file=sys.stderr,
        )
        _print({"key_id": args.key_id, "secret_scalar": secret}, args.json)
    elif action == "keys":
        keys = client.list_keys()
        if args.json:
            print(json.dumps({"keys": [k.as_json() for k in keys]}, indent=2))
        else:
            rows = [
                (k.key_id, k.state, k.as_json()["created_at"], k.public_key.hex()) for k in keys
            ]
            print(table.render(("key", "state", "created", "public key"), rows))
    else:
        stats = client.stats()
        if args.json:
            print(json.dumps(stats.as_json(), ensure_ascii=False, indent=2))
        else:
            print(stats_table(stats))


def stats_table(stats: Any) -> str:
    """`numbind admin stats` as aligned tables: counts, the latest store re-key (if any
    rotation happened), then usage per principal."""
    o = stats.orders
    counts = table.render(
        ("", "count"),
        [
            ("principals", stats.platforms + stats.carriers),
            ("  platforms", stats.platforms),
            ("  carriers", stats.carriers),
            ("bindings (active)", stats.active_bindings),
            ("numbers", stats.numbers),
            ("revocation orders", o.total),
            ("  pending", o.pending),
            ("  delivered", o.delivered),
            ("  overdue (open, past deadline)", o.overdue),
            ("  done", o.done),
            ("  rejected", o.rejected),
        ],
    )
    if stats.rekey is not None:
        counts = f"{counts}\n\n{rekey_table(stats.rekey)}"
    if not stats.usage:
        return f"{counts}\n\nusage: none yet"
    usage = table.render(
        ("role", "principal", "tokens evaluated", "reassigned checks"),
        [(u.role, u.principal_id, u.tokens_evaluated, u.reassigned_checks) for u in stats.usage],
    )
    return f"{counts}\n\n{usage}\n({plural(len(stats.usage), 'principal')} with usage)"


def rekey_table(rekey: Any) -> str:
    """A store re-key's progress: rows done of total, rate and time left."""
    done, total = rekey.rows_done, rekey.rows_total
    running = rekey.state == "RUNNING"
    # On the wire a total not counted yet is 0; a finished re-key's total is its count.
    rows = f"{done:,} of {total:,}" if total or not running else f"{done:,} of (counting)"
    if total:
        rows += f" ({100 * min(done, total) // total}%)"
    rate = f"{rekey.rows_per_second:,.0f} rows/s" if rekey.rows_per_second > 0 else "-"
    if not running:
        eta = "done"
    elif rekey.eta_seconds > 0:
        eta = f"{_duration(rekey.eta_seconds)} left"
    else:
        eta = "not known yet"
    return table.render(
        ("store re-key", ""),
        [
            ("keys", f"{rekey.from_key_id} -> {rekey.to_key_id}"),
            ("state", rekey.state),
            ("rows", rows),
            ("rate", rate),
            ("ETA", eta),
            ("started", _iso(rekey.started_at)),
            ("finished", _iso(rekey.finished_at)),
        ],
    )


def _duration(seconds: float) -> str:
    s = max(1, round(seconds))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _print(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, ensure_ascii=False, indent=2))
        return
    for k, v in obj.items():
        print(f"{k}: {v}")
