"""How many hash partitions each growing table gets on PostgreSQL (migration
0008_partitions), and where that number comes from: `--partitions`, else NUMBIND_PARTITIONS,
else 16. Checked here and nowhere else, naming the source a bad value came from.

No SQLAlchemy here: the command line checks `--partitions` while it parses its arguments.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DEFAULT_PARTITIONS", "ENV", "MAX_PARTITIONS", "check", "count", "requested"]

DEFAULT_PARTITIONS = 16
# Each partition is a table with its own indexes per growing table, and the migration
# that builds them locks every one in a single transaction: about 110 lock-table entries
# per partition, so a count above ~200 needs a larger max_locks_per_transaction than
# PostgreSQL's default 64 (README, "Partitioned tables").
MAX_PARTITIONS = 1024
ENV = "NUMBIND_PARTITIONS"


def check(value: str | int, source: str) -> int:
    """`value` as a partition count; ValueError naming `source` (a flag or a variable)
    unless it is a whole number 1..MAX_PARTITIONS."""
    # int() also reads "1_6" and full-width digits ("１６"): ASCII digits only, as an
    # address's port.
    text = str(value).strip()
    n = int(text) if text.isascii() and text.isdigit() else 0
    if isinstance(value, bool) or not 1 <= n <= MAX_PARTITIONS:
        raise ValueError(f"{source}: got {value!r}, want a whole number 1..{MAX_PARTITIONS}")
    return n


def requested(flag: int | None, environ: Mapping[str, str]) -> int | None:
    """The count asked for: the flag's, else the variable's (checked either way), else
    None. Explicit None checks: a flag of 0 is refused, never passed over for the next
    source."""
    if flag is not None:
        return check(flag, "--partitions")
    raw = environ.get(ENV)
    if raw is not None and raw.strip() != "":
        return check(raw.strip(), ENV)
    return None


def count(flag: int | None, environ: Mapping[str, str]) -> int:
    """The count the tables are built with: as asked, else DEFAULT_PARTITIONS."""
    asked = requested(flag, environ)
    return DEFAULT_PARTITIONS if asked is None else asked
