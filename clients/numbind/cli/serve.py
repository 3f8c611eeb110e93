"""`numbind serve`: run the registry until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from numbind.cli.common import CliError, command

__all__ = ["add_commands", "add_partitions_option", "add_store_options", "settings_from"]

SCALE_OUT = """\
several processes:
  SQLite (the default store) serves one process; a second `serve` on the same data
  dir is refused. To run N processes, give each the same --database-url of one
  PostgreSQL, the same --data-dir (a shared directory: token key secrets are files in
  keys/, and a rotation through one process must reach the others), and its own
  --listen (and --metrics-listen). Feed wake-ups, suspensions, key changes and
  token quotas then cross processes through PostgreSQL (LISTEN/NOTIFY, polled at worst
  every NUMBIND_CHANGE_POLL_SECONDS, default 1).
  Put a TCP load balancer in front (HAProxy `mode tcp`: mTLS passes through to the
  registries), or list every address in the bundles' "registry" (a,b,c: the SDK
  balances round-robin). SIGTERM drains a process: open streams end and clients
  resume on another. DATA_DIR/serving.json names one process (the last started), so
  record the load balancer's address once with `numbind admin init --registry
  LB_ADDRESS` (new bundles and the admin actions then use it), or pass --registry
  LB_ADDRESS to them. The server certificate must name every host clients dial:
  add `--server-name IP` to that `admin init` for each process bundles list.
  README, "Operations", has a sample haproxy.cfg and what to watch.
"""


def add_store_options(p: argparse.ArgumentParser, *, database: bool = True) -> None:
    """--data-dir and (unless ``database`` is False) --database-url, shared by serve and
    every admin action."""
    p.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="registry data dir: CA, server certificate, token keys, embedded store "
        "(NUMBIND_DATA_DIR, default numbind-data)",
    )
    if not database:
        return
    p.add_argument(
        "--database-url",
        metavar="URL",
        help="SQLAlchemy URL of the store (NUMBIND_DATABASE_URL); default: SQLite in the data dir",
    )


def _partitions(raw: str) -> int:
    from numbind.registry.storage.partitions import check

    try:
        return check(raw, "--partitions")
    except ValueError as exc:  # argparse names the flag itself
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--partitions: ")) from None


def add_partitions_option(p: argparse.ArgumentParser) -> None:
    """--partitions, checked as the arguments are parsed (storage.partitions)."""
    p.add_argument(
        "--partitions",
        type=_partitions,
        metavar="N",
        help="PostgreSQL: hash partitions per growing table (1..1024), fixed when the "
        "tables are built; a store built with another count is refused "
        "(default: NUMBIND_PARTITIONS, else 16)",
    )


def settings_from(args: argparse.Namespace) -> Any:
    from numbind.registry.config import load_settings

    return load_settings(
        {
            "data_dir": getattr(args, "data_dir", None),
            "listen": getattr(args, "listen", None),
            "database_url": getattr(args, "database_url", None),
            "log_level": getattr(args, "log_level", None),
            "metrics_listen": getattr(args, "metrics_listen", None),
            # Only a given --otel overrides NUMBIND_OTEL.
            "otel": True if getattr(args, "otel", False) else None,
            # Only a given --no-change-notify overrides NUMBIND_CHANGE_NOTIFY.
            "change_notify": False if getattr(args, "no_change_notify", False) else None,
            "max_streams_per_principal": getattr(args, "max_streams_per_principal", None),
            "fanout_deadline_seconds": getattr(args, "fanout_deadline", None),
        }
    )


def add_commands(sub: Any) -> None:
    from numbind.registry.config import DEFAULT_LISTEN

    serve = sub.add_parser(
        "serve",
        help="run the registry",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the registry's gRPC API (mTLS) until SIGTERM or Ctrl-C. The "
        "address it listens on is written to DATA_DIR/serving.json, where `numbind admin` "
        "finds it (unless `admin init --registry` recorded another), and removed on a clean "
        "stop.",
        epilog=SCALE_OUT,
    )
    add_store_options(serve)
    serve.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help=f"address to listen on (NUMBIND_LISTEN, default {DEFAULT_LISTEN}; port 0 "
        "picks a free one)",
    )
    serve.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level (NUMBIND_LOG_LEVEL, default INFO)",
    )
    serve.add_argument(
        "--max-streams-per-principal",
        type=int,
        metavar="N",
        help="open StreamEvents calls one principal may hold in this process; one more is "
        "refused RESOURCE_EXHAUSTED (NUMBIND_MAX_STREAMS_PER_PRINCIPAL, default 8)",
    )
    serve.add_argument(
        "--fanout-deadline",
        type=float,
        metavar="SECONDS",
        help="federation hub: how long a holder call waits for each member before listing "
        "it as unavailable (NUMBIND_FANOUT_DEADLINE_SECONDS, default 2)",
    )
    serve.add_argument(
        "--init", action="store_true", help="run `numbind admin init` first when needed"
    )
    add_partitions_option(serve)
    serve.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (NUMBIND_METRICS_LISTEN; "
        "default: off)",
    )
    serve.add_argument(
        "--no-change-notify",
        action="store_true",
        help="PostgreSQL-compatible engines without LISTEN/NOTIFY (CockroachDB, YugabyteDB): "
        "other processes' changes arrive by polling alone, within NUMBIND_CHANGE_POLL_SECONDS "
        "(NUMBIND_CHANGE_NOTIFY=0; default: notify)",
    )
    serve.add_argument(
        "--otel",
        action="store_true",
        help="OpenTelemetry spans for every RPC, to the tracer the OTel SDK's environment "
        "configures (NUMBIND_OTEL=1; needs pip install 'numbind[otel]'; default: off)",
    )
    command(serve, _serve)


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from numbind.registry import heap, logs, operator
    from numbind.registry.api.server import serve
    from numbind.registry.app import Registry
    from numbind.registry.errors import FailedPrecondition
    from numbind.registry.storage.db import shown_url
    from numbind.registry.storage.lock import StoreLock

    # Everything this process creates is private: the data dir holds tokens, account_refs
    # and keys (numbind.registry.datadir; the registry refuses to serve from a data dir
    # that others can read, naming the file and the chmod that fixes it).
    os.umask(0o077)
    settings = settings_from(args)
    logs.configure(settings.log_level)
    # SQLite serves one process: take its lock before anything migrates the schema, so a
    # second `serve` (a newer release started beside the running one, say) changes nothing.
    lock = StoreLock.for_url(settings.effective_database_url)
    try:
        if lock is not None and lock.path.parent.exists():
            lock.acquire()
        if not operator.init_finished(settings):
            # A new data dir, or one an earlier init left half made (it failed on a store
            # that was away or mistyped): init is idempotent and finishes it.
            if not args.init:
                raise CliError(
                    f"no registry in {settings.data_dir}: name your registry's data dir "
                    f"(--data-dir or NUMBIND_DATA_DIR), or make one there with `numbind admin "
                    f"init --data-dir {settings.data_dir}` or `serve --init`"
                )
            operator.init(settings, partitions=args.partitions)
        elif not operator.holds_registry(settings):
            # Serving it would migrate an empty store and answer every caller "unknown
            # principal": the URL is mistyped, or the data dir belongs to another store.
            raise CliError(
                f"the store {shown_url(settings.effective_database_url)} holds no registry, "
                f"but {settings.data_dir} belongs to one: check --database-url / "
                "NUMBIND_DATABASE_URL (a new registry starts from a new --data-dir with --init)"
            )
        _warn_unnamed_listen_host(settings)
        if lock is not None:
            lock.acquire()  # held already, unless --init has just made its directory
        registry = Registry.open(settings, partitions=args.partitions)
        heap.freeze_startup_objects()
        asyncio.run(serve(registry, store_lock=lock))
    except FailedPrecondition as exc:  # the SQLite store is served by another process
        raise CliError(exc.message) from None
    finally:
        if lock is not None:
            lock.release()
    return 0


def _warn_unnamed_listen_host(settings: Any) -> None:
    """Log when the server certificate does not name the --listen host: serving.json and
    new bundles send clients there, and their handshake would fail. Only a warning, and
    serve re-issues nothing: processes sharing the data dir would race to rewrite one
    certificate; `admin init --server-name` is the one place that does."""
    import logging

    from numbind.registry.server_cert import address_hosts, missing_names

    try:
        missing = missing_names(settings.pki_dir, address_hosts(settings.listen))
    except (OSError, ValueError):
        return  # an unreadable pair is refused, with its fix, when serving starts
    if missing:
        names = " ".join(f"--server-name {h}" for h in missing)
        logging.getLogger("numbind.serve").warning(
            "the server certificate does not name %s (the --listen host): clients dialling "
            "it fail the TLS handshake; run `numbind admin init --data-dir %s %s` and restart",
            ", ".join(missing),
            settings.data_dir,
            names,
        )
