"""`numbind admin`'s actions on the running registry (rotate-key, retire-key, export-key,
keys, stats): their parsers, the call through the admin bundle, and the tables they print.

The registry's address is the one `admin init --registry` recorded (DATA_DIR/advertised.json),
else the one `serve` wrote to DATA_DIR/serving.json, else the one in the admin bundle, unless
--registry names another; when nothing answers there, the error
names that address and the file it came from. The offline actions are ``numbind.cli.admin``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from numbind.cli import table
from numbind.cli.common import CliError, add_json, command, connection_problem, plural
from numbind.cli.serve import add_store_options, settings_from

__all__ = ["REMOTE_ACTIONS", "add_remote_commands", "rekey_table", "remote", "stats_table"]

REMOTE_ACTIONS = (
    ("rotate-key", "make a new active token key and re-key the store to it"),
    ("retire-key", "stop evaluating under an old token key and forget its re-key delta"),
    ("export-key", "print a token key's secret scalar (hex) for escrow"),
    ("keys", "list the token keys"),
    ("stats", "registry statistics: principals, bindings, numbers, orders, usage, re-key"),
)
REMOTE_NOTE = (
    "Needs the running registry: its address comes from DATA_DIR/advertised.json (written "
    "by `admin init --registry`), else DATA_DIR/serving.json (written by `numbind serve`, "
    "removed when it stops), else the admin bundle, unless --registry names it."
)


def add_remote_commands(asub: Any) -> None:
    """Add the actions that call the running registry to `numbind admin`'s subparsers."""
    for action, helptext in REMOTE_ACTIONS:
        p = asub.add_parser(
            action,
            help=helptext,
            description=f"{helptext[0].upper()}{helptext[1:]}. {REMOTE_NOTE}",
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
            help="the running registry (default: the address `admin init --registry` "
            "recorded in DATA_DIR/advertised.json, else the one in DATA_DIR/serving.json, "
            "where `numbind serve` records where it listens)",
        )
        add_json(p)
        if action in ("retire-key", "export-key"):
            p.add_argument("key_id", help="the key's id (from `numbind admin keys`)")
        command(p, remote)


def remote(args: argparse.Namespace) -> int:
    from numbind.protocol.bundle import BUNDLE_JSON, Bundle
    from numbind.registry.config import client_address
    from numbind.sdk.admin import AdminClient
    from numbind.sdk.errors import CertificateMismatch, Unavailable

    settings = settings_from(args)
    bundle_dir: Path = args.bundle or settings.data_dir / "admin-bundle"
    bundle = Bundle.load(bundle_dir)
    if args.registry:
        address, source = args.registry, "--registry"
    elif (known := client_address(settings.data_dir)) is not None:
        address, source = known[0], f"the address in {known[1]}"
    else:
        address, source = bundle.registry, f"the address in {bundle_dir / BUNDLE_JSON}"
    try:
        with AdminClient(bundle, address=address) as client:
            _remote_action(args, client)
    except CertificateMismatch as exc:  # it is running there: its certificate is the matter
        raise CliError(
            f"cannot reach the registry at {address} ({source}): "
            f"{connection_problem(exc.message, address) or exc.message}"
        ) from None
    except Unavailable as exc:
        raise CliError(
            f"cannot reach the registry at {address} ({source}): "
            f"{connection_problem(exc.message, address) or exc.message}; is `numbind serve` "
            "running there? --registry HOST:PORT names another address"
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
