"""`numbind federation`: join registries into one federation by exchanging files.

On the hub:    init, add-member REQ --out GRANT, remove-member ID, refresh
On a member:   request --id ID --address HOST:PORT --out REQ, accept GRANT
Anywhere:      show [--json]

Operators exchange the request and grant files (neither holds a secret), never data dirs.
Re-running add-member with the same request writes a grant with the current manifest;
accepting it on the member installs that newer manifest. With no federation installed,
`numbind serve` is a federation of one, exactly as before.
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


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="registry data dir; federation files live in DIR/federation "
        "(NUMBIND_DATA_DIR, default numbind-data)",
    )


def add_commands(sub: Any) -> None:
    fed = sub.add_parser(
        "federation",
        help="join registries into a federation: init, request, add-member, accept, show",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fsub = fed.add_subparsers(
        dest="federation_command", metavar="ACTION", required=True, help="what to do"
    )

    init = fsub.add_parser(
        "init",
        help="on the hub: make the federation key and manifest v1",
        description="Start a federation: a new Ed25519 federation key (DIR/federation/"
        "federation.key, 0600, never in the database) and manifest v1 naming this registry "
        "as lifecycle authority and token service, with its CA (DIR/pki) and token keys.",
    )
    add_store_options(init)
    init.add_argument("--id", required=True, help="federation id, [a-z0-9][a-z0-9._-]{0,62}")
    init.add_argument(
        "--member-id",
        default="hub",
        help="this registry's member id in the federation (default hub)",
    )
    init.add_argument("--name", help="this registry's display name (default: its member id)")
    init.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="where peers reach this registry (default: the address `admin init --registry` "
        "recorded, else the one in DIR/serving.json)",
    )
    init.add_argument(
        "--token-service",
        metavar="HOST:PORT",
        help="address of the token service, when it runs apart (default: --address)",
    )
    init.add_argument(
        "--binding-registry",
        action="store_true",
        help="this registry also holds platforms' bindings (default: the hub holds none)",
    )
    init.set_defaults(handler=_init)

    req = fsub.add_parser(
        "request",
        help="on a member: write a join request for the hub",
        description="Write a join request (this registry's id, address and CA certificate) "
        "for the hub's operator; it holds no secret. Tell them the CA fingerprint it prints.",
    )
    _data_dir(req)
    req.add_argument(
        "--id", required=True, help="this registry's member id, [a-z0-9][a-z0-9._-]{0,62}"
    )
    req.add_argument(
        "--address", required=True, metavar="HOST:PORT", help="where peers reach this registry"
    )
    req.add_argument("--name", help="display name shown for this registry (default: its id)")
    req.add_argument(
        "--out", type=Path, required=True, metavar="REQ", help="join request file to write"
    )
    req.set_defaults(handler=_request)

    add = fsub.add_parser(
        "add-member",
        help="on the hub: add a member from its join request, write its grant",
        description="Add the requesting registry to the manifest, sign the next version and "
        "write the grant. The same request again signs nothing new and writes a grant with "
        "the current manifest.",
    )
    _data_dir(add)
    add.add_argument("request", type=Path, metavar="REQ", help="the member's join request file")
    add.add_argument("--out", type=Path, required=True, metavar="GRANT", help="grant file to write")
    add.set_defaults(handler=_add_member)

    rm = fsub.add_parser(
        "remove-member",
        help="on the hub: remove a member and sign the next version",
        description="Remove a member from the manifest; once peers hold the new version its "
        "registry identity is refused.",
    )
    _data_dir(rm)
    rm.add_argument("member_id", metavar="ID", help="the member's id")
    rm.set_defaults(handler=_remove_member)

    refresh = fsub.add_parser(
        "refresh",
        help="on the hub: publish new token keys or a new hub address",
        description="Re-read the token service's keys (after `numbind admin rotate-key`) and "
        "sign the next manifest version if they, or --address, changed.",
    )
    add_store_options(refresh)
    refresh.add_argument(
        "--address", metavar="HOST:PORT", help="the hub's new address (default: unchanged)"
    )
    refresh.set_defaults(handler=_refresh)

    acc = fsub.add_parser(
        "accept",
        help="on a member: install a grant from the hub",
        description="Install a grant: the first accept pins its federation key; every later "
        "manifest must verify under that key and be newer than the one held. Issues this "
        "registry's peer certificate (spiffe://numbind/registry/ID) under its own CA.",
    )
    _data_dir(acc)
    acc.add_argument("grant", type=Path, metavar="GRANT", help="the grant file from the hub")
    acc.add_argument(
        "--expect-key",
        metavar="VKEY",
        help="the federation key the hub's operator gave you out of band; refuse any other",
    )
    acc.set_defaults(handler=_accept)

    show = fsub.add_parser(
        "show",
        help="the installed federation: version, members, roles, replication",
        description="Show the installed manifest: federation id, version, members with roles "
        "and addresses, and each member's replication position and lag.",
    )
    _data_dir(show)
    show.add_argument(
        "--database-url",
        metavar="URL",
        help="the registry's store, for replication positions (NUMBIND_DATABASE_URL; "
        "default: SQLite in the data dir)",
    )
    show.add_argument("--json", action="store_true", help="print machine-readable JSON")
    show.set_defaults(handler=_show)


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from numbind.protocol.manifest import FederationError

    try:
        return fn(*args, **kwargs)
    except FederationError as exc:
        raise CliError(exc.message) from None


def _warn(warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        print(f"numbind: warning: {warning}", file=sys.stderr)


def _init(args: argparse.Namespace) -> int:
    from numbind.registry.federation import hub as hub_actions

    settings = settings_from(args)
    result = _run(
        hub_actions.init,
        settings,
        args.id,
        member_id=args.member_id,
        name=args.name,
        address=args.address,
        token_service_address=args.token_service,
        binding_registry=args.binding_registry,
    )
    manifest = result.installed.manifest
    if not result.created:
        print(f"federation {manifest.federation} already initialised here (v{manifest.version})")
        return 0
    hub = manifest.authority
    print(f"federation:      {manifest.federation} (manifest v{manifest.version})")
    print(f"hub:             {hub.id} at {hub.address} ({', '.join(hub.roles)})")
    print(f"federation key:  {result.installed.key.vkey()}")
    print(f"key file:        {settings.data_dir / 'federation' / 'federation.key'} (secret)")
    _warn(result.warnings)
    _restart_hint(settings.data_dir, "the hub")
    return 0


def _restart_hint(data_dir: Path, role: str) -> None:
    # A running registry follows newer versions of its manifest, but it takes up a
    # federation (its roles, peer TLS roots, replication) only at start: until then it
    # serves as a federation of one and refuses its peers' handshakes.
    print(
        f"next: (re)start `numbind serve --data-dir {data_dir}` to serve as {role}; one "
        "already running serves as a federation of one until it restarts"
    )


def _request(args: argparse.Namespace) -> int:
    from numbind.registry.federation import member as member_actions

    settings = settings_from(args)
    result = _run(member_actions.request, settings, args.id, args.address, args.out, name=args.name)
    print(f"join request:    {args.out}")
    print(f"member:          {result.request.id} at {result.request.address}")
    print(f"CA SHA-256:      {result.ca_sha256}")
    print("give the file to the hub's operator and confirm the CA fingerprint with them")
    _warn(result.warnings)
    return 0


def _add_member(args: argparse.Namespace) -> int:
    from numbind.registry.federation import hub as hub_actions

    settings = settings_from(args)
    result = _run(hub_actions.add_member, settings, args.request, args.out)
    manifest = result.signed.manifest
    if result.added:
        print(f"added member {result.member.id} at {result.member.address}")
    else:
        print(f"member {result.member.id} is already in the federation; nothing signed")
    print(f"manifest:        v{manifest.version} ({len(manifest.members)} members)")
    print(f"grant:           {args.out}")
    return 0


def _remove_member(args: argparse.Namespace) -> int:
    from numbind.registry.federation import hub as hub_actions

    settings = settings_from(args)
    result = _run(hub_actions.remove_member, settings, args.member_id)
    version = result.signed.manifest.version
    if result.changed:
        print(f"removed member {args.member_id}; manifest v{version}")
    else:
        print(f"{args.member_id} is not a member; manifest stays v{version}")
    return 0


def _refresh(args: argparse.Namespace) -> int:
    from numbind.registry.federation import hub as hub_actions

    settings = settings_from(args)
    result = _run(hub_actions.refresh, settings, address=args.address)
    manifest = result.signed.manifest
    verb = "signed" if result.changed else "unchanged:"
    active = manifest.token_service.active_key_id
    print(f"{verb} manifest v{manifest.version} (active token key {active})")
    return 0


def _accept(args: argparse.Namespace) -> int:
    from numbind.registry.federation import member as member_actions

    settings = settings_from(args)
    result = _run(member_actions.accept, settings, args.grant, expect_key=args.expect_key)
    installed = result.installed
    manifest = installed.manifest
    if not result.changed:
        print(f"manifest v{manifest.version} of {manifest.federation} is already installed")
        return 0
    was = "" if result.previous_version is None else f" (was v{result.previous_version})"
    print(f"installed:       federation {manifest.federation} manifest v{manifest.version}{was}")
    print(f"this registry:   {installed.member_id} ({installed.me.uri if installed.me else '-'})")
    print(f"hub:             {manifest.authority.id} at {manifest.authority.address}")
    if result.pinned:
        print(f"pinned key:      {installed.key.vkey()}")
    if result.previous_version is None:
        _restart_hint(settings.data_dir, f"member {installed.member_id}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from numbind.registry.federation import (
        FederationDir,
        NoReplication,
        ReplicationStatus,
        StoreReplication,
        describe,
    )
    from numbind.registry.federation.witness import alarms_in

    settings = settings_from(args)
    installed = _run(FederationDir(settings.data_dir).load)
    # A witness's refusals of a log it witnesses (numbind log: rollback, fork, rewrite...).
    alarms = alarms_in(settings.effective_database_url)
    if installed is None:
        if args.json:
            print(
                json.dumps(
                    {"federation": None, "data_dir": str(settings.data_dir), "log_alarms": alarms}
                )
            )
        else:
            print(f"no federation installed in {settings.data_dir}: a federation of one")
            _print_alarms(alarms)
        return 0
    replication: ReplicationStatus
    try:
        replication = StoreReplication(installed, settings.effective_database_url)
    except Exception:  # a store not made yet or not reachable: positions unknown
        replication = NoReplication()
    report = describe(installed, replication)
    report["log_alarms"] = alarms
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    _print_report(report)
    _print_alarms(alarms)
    return 0


def _print_alarms(alarms: list[dict[str, Any]]) -> None:
    for a in alarms:
        print(f"WITNESS ALARM ({a['failure']}) for {a['origin']}: {a['message']}")


def _na(value: object) -> str:
    return "n/a" if value is None else str(value)


def _print_report(r: dict[str, Any]) -> None:
    ts = r["token_service"]
    print(f"federation:      {r['federation']}")
    print(f"manifest:        v{r['version']}, issued {r['issued_at']}")
    print(f"federation key:  {r['federation_key']}")
    mine = "" if r["member_of_this_version"] else " (not a member of this version)"
    print(f"this registry:   {r['this_registry']}{mine}")
    print(
        f"token service:   {ts['address']} (active key {ts['active_key_id']}, "
        f"{len(ts['key_ids'])} live)"
    )
    log = r.get("log")
    witnesses = sum(1 for m in r["members"] if m.get("witness_key"))
    print(
        f"log:             {log['key'] if log else 'not named (members pin it on first use)'}"
        f" ({witnesses} witness keys named)"
    )
    watched = [f"{w['member']} ({w['origin']})" for w in r.get("witnessing", [])]
    print(f"witnessing:      {', '.join(watched) or 'no other log'}")
    rows = [("", "MEMBER", "ROLES", "ADDRESS", "POSITION", "LAG", "NAME")]
    for m in r["members"]:
        rep = m["replication"]
        lag = rep["lag_seconds"]
        rows.append(
            (
                "*" if m["this_registry"] else "",
                m["id"],
                ",".join(m["roles"]),
                m["address"],
                _na(rep["position"]),
                "n/a" if lag is None else f"{lag:.1f}s",
                m["name"],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    print()
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        print("  ".join([*cells, row[-1]]).rstrip())
