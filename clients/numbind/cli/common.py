"""What every `numbind` command shares: its error type and its common options."""

from __future__ import annotations

import argparse
from pathlib import Path

from numbind.sdk.phone import DEFAULT_REGION

__all__ = ["CliError", "add_bundle", "add_json", "add_region"]


class CliError(Exception):
    """A command could not do what was asked; the message says why and what to do."""


def add_bundle(p: argparse.ArgumentParser, role: str) -> None:
    p.add_argument(
        "--bundle", type=Path, required=True, metavar="DIR", help=f"{role} bundle directory"
    )


def add_region(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--region",
        default=DEFAULT_REGION,
        help=f"region for numbers written without +country code (default {DEFAULT_REGION})",
    )


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
