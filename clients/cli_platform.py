"""`numbind platform ...` commands (filled in with the Platforms milestone)."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    """Register platform subcommands on the top-level parser's subparsers."""
    _ = argparse
    _ = sub
