"""Run the carrier app: ``python -m numbind.carrier_app --carrier-bundle DIR --db FILE --demo``.

The reference app ships no SMS gateway, so it runs in demo mode (codes on the page and in the
log); a carrier wires its own ``send_code`` into ``create_app`` for production.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from numbind.carrier_app.app import AppSettings, create_app, load_secret
from numbind.carrier_app.enroll import enroll_file
from numbind.carrier_app.store import Store


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m numbind.carrier_app", description=__doc__)
    p.add_argument("--carrier-bundle", type=Path, required=True, help="the carrier's bundle dir")
    p.add_argument("--db", type=Path, required=True, help="subscriber store (SQLite file)")
    p.add_argument("--demo", action="store_true", help="show sign-in codes on the page and log")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="port to listen on")
    p.add_argument(
        "--region",
        default="CN",
        help="region for numbers without +country code; a date without a time means 00:00 "
        "in its time zone (default CN, +08:00)",
    )
    p.add_argument(
        "--secret-file",
        type=Path,
        help="app secret (hex), created if missing; default: DB path + .secret; "
        "NUMBIND_APP_SECRET (hex) wins",
    )
    p.add_argument("--carrier-name", default="示例移动", help="carrier name shown on pages")
    p.add_argument(
        "--carrier-name-en", default="", help="carrier name on English pages (default: the same)"
    )
    p.add_argument(
        "--support-phone",
        default="",
        help="the carrier's complaint line, shown when an app refuses or does not answer",
    )
    p.add_argument(
        "--plain-http",
        action="store_true",
        help="demo on loopback only: serve plain HTTP, cookies without Secure (by default "
        "cookies are Secure: serve it behind HTTPS)",
    )
    p.add_argument("--no-access-log", action="store_true", help="quiet: no line per request")
    p.add_argument(
        "--enroll",
        type=Path,
        metavar="FILE",
        help="put subscribers in the store first: a CSV with the header "
        "id_number,phone,tenure_start (only numbers in the store can sign in; a carrier's "
        "own systems call Store.enroll)",
    )
    return p


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="carrier-app %(levelname)s %(message)s", stream=sys.stderr
    )
    if not args.demo:
        print(
            "carrier app: no SMS gateway is configured in the reference app; run with --demo, "
            "or call create_app(settings, send_code=...) from your own entry point",
            file=sys.stderr,
        )
        return 2
    if args.plain_http and not _is_loopback(args.host):
        print(
            f"carrier app: --plain-http serves loopback only; got --host {args.host}",
            file=sys.stderr,
        )
        return 2
    env_secret = os.environ.get("NUMBIND_APP_SECRET", "")
    try:
        secret = (
            bytes.fromhex(env_secret)
            if env_secret
            else load_secret(args.secret_file or args.db.with_name(args.db.name + ".secret"))
        )
        settings = AppSettings(
            carrier_bundle=args.carrier_bundle,
            db=args.db,
            secret=secret,
            demo=args.demo,
            carrier_name=args.carrier_name,
            carrier_name_en=args.carrier_name_en,
            support_phone=args.support_phone,
            plain_http_demo=args.plain_http,
            region=args.region,
        )
        app = create_app(settings)
        if args.enroll is not None:
            count = enroll_file(Store(args.db, secret), args.enroll, args.region)
            numbers = "number" if count == 1 else "numbers"
            print(f"enrolled {count} {numbers} from {args.enroll}", file=sys.stderr)
    except (OSError, ValueError) as exc:
        print(f"carrier app: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        access_log=not args.no_access_log,
        log_level="warning" if args.no_access_log else "info",
        timeout_graceful_shutdown=2,
        server_header=False,
    )
    print(f"carrier app on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
