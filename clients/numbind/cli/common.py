"""What every `numbind` command shares: its errors, its common options, typed times and
the words it prints."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import phonenumbers
from numbind.protocol.bundle import Bundle
from numbind.sdk.dates import TimeInputError, format_offset, parse_time_or_date, start_of_day
from numbind.sdk.errors import HOSTNAME_MISMATCH
from numbind.sdk.phone import DEFAULT_REGION, InvalidNumber, to_e164

__all__ = [
    "DATES_NOTE",
    "DATE_HELP",
    "CliError",
    "UsageError",
    "add_bundle",
    "add_json",
    "add_region",
    "add_time_pairs",
    "check_reachable",
    "command",
    "connection_problem",
    "iso_utc",
    "load_bundle",
    "numbers",
    "paired",
    "plural",
    "region",
    "resolve_time",
    "time_value",
]


def _default_offset() -> str:
    # The default region's offset ("+08:00" for CN) is computed, not typed; without
    # time-zone data on the machine --help still works and the error comes when a date is
    # used.
    try:
        offset = start_of_day(date(2024, 1, 1)).utcoffset()
    except TimeInputError:
        return ""
    return format_offset(offset) if offset is not None else ""


_OFFSET = _default_offset()
DATE_HELP = (
    f"YYYY-MM-DD (00:00 that day in the time zone of --region"
    f"{f'; {DEFAULT_REGION}: {_OFFSET}' if _OFFSET else ''}) or an RFC 3339 time with an offset"
)
DATES_NOTE = (
    "A date without a time means 00:00 in the time zone of --region "
    f"(default {DEFAULT_REGION}{f', {_OFFSET}' if _OFFSET else ''}) in every command."
)


class CliError(Exception):
    """A command could not do what was asked; the message says why and what to do (exit 1)."""


class UsageError(CliError):
    """The options contradict each other or a value is unusable (exit 2, as argparse's own
    usage errors); raised by handlers for what argparse alone cannot check."""


def connection_problem(detail: str, address: str | None = None) -> str | None:
    """What went wrong, in a few words, when gRPC's text says the connection failed; None
    when it is the registry's own UNAVAILABLE answer (which is meant to be read).
    ``address`` is the one dialled, to name the host a certificate does not."""
    lowered = detail.lower()
    # The chain verified but the certificate names another host (one from another CA
    # fails earlier, as "Tls handshake failed"): the SDK's CertificateMismatch reads it so.
    if HOSTNAME_MISMATCH in lowered:
        from numbind.sdk.channel import checked_host

        host = checked_host(address) if address else ""
        if not host:
            return (
                "the registry's certificate does not name the host dialled; re-issue it "
                "with `numbind admin init --data-dir DIR --server-name HOST` (DIR: the "
                "registry's own data dir)"
            )
        # The data dir is the registry's, which this side does not know; without it the
        # command, run as printed elsewhere, made a new registry in ./numbind-data.
        return (
            f"the registry's certificate does not name {host}; re-issue it with "
            f"`numbind admin init --data-dir DIR --server-name {host}` (DIR: the registry's "
            "own data dir) and restart the registry"
        )
    if "handshake" in lowered or "ssl" in lowered or "certificate" in lowered:
        return "the TLS handshake failed (another registry, or a stale bundle?)"
    if "connection refused" in lowered:
        return "nothing is listening (connection refused)"
    if "dns" in lowered or "resolve" in lowered:
        return "the host name does not resolve"
    if "deadline" in lowered or "timed out" in lowered or "timeout" in lowered:
        return "no answer in time"
    if "failed to connect" in lowered or "connection reset" in lowered:
        return "could not connect"
    return None


async def check_reachable(bundle: Bundle) -> None:
    """Fail fast when the bundle's registry does not answer: one quick call (retried once)
    before a long file is read, so a wrong address costs a moment, not the check pass plus
    the SDK's patient retries (which ride out a registry restarting mid-run). Raises the
    SDK's Unavailable, which main() words with the address and where it came from."""
    from numbind.sdk.channel import secure_channel
    from numbind.sdk.retry import RetryPolicy
    from numbind.sdk.tokenizer import Tokenizer

    async with secure_channel(bundle) as channel:
        tokenizer = Tokenizer(channel, retry=RetryPolicy(attempts=2, base=0.2))
        try:
            await tokenizer.key()
        finally:
            tokenizer.close()


def command(p: argparse.ArgumentParser, handler: Callable[[argparse.Namespace], Any]) -> None:
    """Make ``p`` a runnable command: main() calls ``handler(args)`` and reports a
    UsageError with ``p``'s usage line."""
    p.set_defaults(handler=handler, parser=p)


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 row``, ``2 rows``, ``12,000 rows``; ``words`` for irregular plurals."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def load_bundle(path: Path, *roles: str) -> Bundle:
    """The bundle in ``path``, which must belong to one of ``roles`` (any when none)."""
    bundle = Bundle.load(path)
    if roles and bundle.role not in roles:
        raise CliError(
            f"bundle {path} is a {bundle.role} bundle; this command needs a "
            f"{' or '.join(roles)} bundle"
        )
    return bundle


def add_bundle(p: argparse.ArgumentParser, role: str) -> None:
    p.add_argument(
        "--bundle", type=Path, required=True, metavar="DIR", help=f"{role} bundle directory"
    )


def add_region(p: argparse.ArgumentParser, *, dates: bool = False) -> None:
    text = f"region for numbers written without +country code (default {DEFAULT_REGION})"
    if dates:
        text += "; a date alone means 00:00 in this region's time zone"
    p.add_argument("--region", default=DEFAULT_REGION, type=region, metavar="CC", help=text)


def region(text: str) -> str:
    """argparse type: a region code libphonenumber knows (CN, US, GB), upper-cased."""
    code = text.strip().upper()
    if not phonenumbers.country_code_for_region(code):
        raise argparse.ArgumentTypeError(
            f"got {text!r}, want a region code such as {DEFAULT_REGION}, US or GB"
        )
    return code


def add_json(p: argparse.ArgumentParser, text: str = "print one JSON object") -> None:
    p.add_argument("--json", action="store_true", help=text)


# -- times -------------------------------------------------------------------------------
def time_value(text: str) -> datetime | date:
    """argparse type: a date or an RFC 3339 time; the date is resolved with the region once
    every option is known (resolve_time). Messages never quote the value: a phone number
    given to the wrong option must not reach a terminal log."""
    try:
        return parse_time_or_date(text)
    except TimeInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def resolve_time(value: datetime | date, region: str, option: str) -> datetime:
    """A parsed time option as an instant: a date alone is 00:00 in ``region``."""
    if isinstance(value, datetime):
        return value
    try:
        return start_of_day(value, region)
    except TimeInputError as exc:
        raise UsageError(f"{option}: {exc}") from None


def iso_utc(moment: datetime | None) -> str | None:
    """``2024-05-01T00:00:00Z``, or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- repeated --phone P --<time> T pairs ----------------------------------------------------
def add_time_pairs(p: argparse.ArgumentParser, time_flag: str, metavar: str, what: str) -> None:
    """``--phone P TIME_FLAG T``, both repeatable; read them back with paired()."""
    p.add_argument(
        "--phone",
        action="append",
        required=True,
        metavar="P",
        help=f"a number (repeatable; the n-th {time_flag} goes with the n-th --phone)",
    )
    p.add_argument(
        time_flag,
        action="append",
        required=True,
        type=time_value,
        metavar=metavar,
        help=f"{what}: {DATE_HELP}; one per --phone",
    )


def paired(args: argparse.Namespace, time_flag: str) -> list[tuple[str, datetime]]:
    """The ``--phone P TIME_FLAG T`` pairs in order, numbers in E.164, times resolved."""
    phones: list[str] = args.phone or []
    times: list[datetime | date] = getattr(args, time_flag.lstrip("-").replace("-", "_")) or []
    if len(phones) != len(times):
        raise UsageError(
            f"give one {time_flag} per --phone, in the same order "
            f"(got {plural(len(phones), '--phone', '--phone')} and "
            f"{plural(len(times), time_flag, time_flag)})"
        )
    resolved = [
        resolve_time(t, args.region, f"{time_flag} {i}") for i, t in enumerate(times, start=1)
    ]
    return list(zip(numbers(phones, args.region), resolved, strict=True))


def numbers(
    phones: Sequence[str], region: str, where: Callable[[int], str] | None = None
) -> list[str]:
    """Every number in E.164, or a CliError naming the first bad one, never by its digits:
    by ``where(i)`` for the 0-based index i (e.g. "F: line 7"), else "number i+1"."""
    out: list[str] = []
    for i, raw in enumerate(phones):
        try:
            out.append(to_e164(raw, i, region))
        except InvalidNumber as exc:
            raise CliError(f"{where(i) if where else f'number {i + 1}'}: {exc.reason}") from None
    return out
