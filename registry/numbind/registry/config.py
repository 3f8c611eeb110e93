"""One typed settings object, validated once at start-up and passed down explicitly.

Values come from command-line flags, then `NUMBIND_*` environment variables, then defaults.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from numbind.protocol.checkpoint import CosignatureVerifier
from numbind.protocol.files import write_atomically
from numbind.protocol.log_errors import LogError
from numbind.registry.domain.attestation import Policy as AttestationPolicy
from numbind.registry.storage import IDLE_TIMEOUT_SECONDS, MAX_WRITE_THREADS, WRITE_THREADS

DEFAULT_LISTEN = "127.0.0.1:7443"
# Written by `serve` once it listens: the address the running registry really serves, so
# operator commands (and the bundles they write) follow --listen and port 0. It names one
# process (the last started) and is removed when that process stops cleanly.
SERVING_FILE = "serving.json"
# Written by `admin init --registry`: where clients reach the registry when the operator said
# so (with N processes, the load balancer's address). It wins over SERVING_FILE, which can
# only name one of the N.
ADVERTISED_FILE = "advertised.json"


@dataclass(frozen=True)
class QuotaSettings:
    # A platform re-tokenising 10 million numbers a day needs ~116/s on average; the
    # rate and burst leave room to do it in a couple of hours, the cap bounds abuse.
    rate_per_second: float = 5_000.0
    burst: int = 50_000
    daily_cap: int = 20_000_000


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    listen: str = DEFAULT_LISTEN
    database_url: str | None = None
    log_level: str = "INFO"
    # 0 means one per core.
    evaluate_workers: int = 0
    quota: QuotaSettings = field(default_factory=QuotaSettings)
    heartbeat_seconds: float = 15.0
    # Delivered but unacked events are sent again after this long.
    visibility_timeout_seconds: float = 60.0
    order_deadline_seconds: float = 24 * 3600.0
    shutdown_grace_seconds: float = 5.0
    # Holder attestations: the longest lifetime accepted (at most the protocol's 600 s), and
    # the clock difference tolerated at both ends of it. Nonces are kept for as long as an
    # attestation could pass these checks.
    attestation_max_lifetime_seconds: float = 600.0
    clock_skew_seconds: float = 60.0
    # The store re-key after a rotation: rows per batch (one transaction each: on SQLite
    # it holds the one writer for ~0.2 s at 5,000 rows; smaller batches pause writers for
    # less but cost more per row, as each re-keyed row dirties index pages of its own), a
    # pause after each batch (0 in production; tests slow a re-key down with it), and how
    # long a runner's lease lasts without renewal (a killed runner's job is taken over).
    rekey_batch_rows: int = 5000
    rekey_pause_seconds: float = 0.0
    rekey_lease_seconds: float = 30.0
    # A carrier report's orders are created after it commits, in chunks of at most this
    # many lifecycle events (one transaction each; the first chunk is at most 10, so the
    # first orders reach the feeds soonest): services.local_apply.
    apply_chunk_events: int = 500
    # Write transactions this process runs at once (storage.WRITE_THREADS has the figures
    # behind the default).
    db_write_threads: int = WRITE_THREADS
    # PostgreSQL: a session idle inside a transaction this long is ended by the server, its
    # locks released (storage.IDLE_TIMEOUT_SECONDS has why); 0: never.
    db_idle_timeout_seconds: float = IDLE_TIMEOUT_SECONDS
    # Several processes on one PostgreSQL: the longest a change committed by another
    # process (a feed append, a suspension) may take to be seen here when its LISTEN/NOTIFY
    # notification is lost; normally it arrives within milliseconds.
    change_poll_seconds: float = 1.0
    # PostgreSQL LISTEN/NOTIFY between processes. Off for engines that speak PostgreSQL
    # without it (CockroachDB, YugabyteDB, Citus workers): then the polls alone carry
    # changes — feed heads every change_poll_seconds, principals' standing through the same
    # cache lifetime, token keys within their 5 s reload.
    change_notify: bool = True
    # host:port for the Prometheus /metrics endpoint; None: no endpoint.
    metrics_listen: str | None = None
    # OpenTelemetry spans for every RPC (needs the `otel` extra and a configured SDK).
    otel: bool = False
    # The verifiable log: a checkpoint at least this often while it grows, and the witness
    # keys (C2SP cosignature/v1 vkeys, whitespace-separated) whose cosignatures it attaches.
    log_checkpoint_seconds: float = 1.0
    log_witnesses: str = ""
    # A registry witnesses the other registries' logs this often.
    log_witness_seconds: float = 1.0
    # Open StreamEvents calls one principal may hold in this process; one more is
    # RESOURCE_EXHAUSTED. With several registry processes, each allows this many.
    max_streams_per_principal: int = 8
    # Per-RPC request size limits (numbind.protocol.limits.REQUEST_BYTES). Off only to
    # measure what they cost or save (bench/oversize.py): then every request up to 64 MB
    # is parsed, as before issue 10.
    request_limits: bool = True
    # SQLite's PRAGMA synchronous for the embedded store: FULL (a commit reported is on
    # disk) or NORMAL (faster; a power loss may drop the last commits). Not PostgreSQL.
    sqlite_synchronous: str = "FULL"
    # Federation hub: how long a holder call waits for the members it fans out to (a
    # member still silent then is listed as unavailable), and the longest pause between
    # retries of a revocation a member missed.
    fanout_deadline_seconds: float = 2.0
    fanout_retry_max_seconds: float = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name}: got {value}, want a finite number")
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"listen: got {self.listen!r}, want HOST:PORT")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError(f"log_level: got {self.log_level!r}, want DEBUG|INFO|WARNING|ERROR")
        if self.evaluate_workers < 0:
            raise ValueError(f"evaluate_workers: got {self.evaluate_workers}, want >= 0")
        for name in ("heartbeat_seconds", "visibility_timeout_seconds", "order_deadline_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: got {getattr(self, name)}, want > 0")
        if not 1 <= self.rekey_batch_rows <= 100_000:
            raise ValueError(f"rekey_batch_rows: got {self.rekey_batch_rows}, want 1..100000")
        if not 1 <= self.db_write_threads <= MAX_WRITE_THREADS:
            raise ValueError(
                f"db_write_threads: got {self.db_write_threads}, want 1..{MAX_WRITE_THREADS}"
            )
        if not 0 <= self.db_idle_timeout_seconds <= 86_400:
            raise ValueError(
                f"db_idle_timeout_seconds: got {self.db_idle_timeout_seconds}, want 0..86400"
            )
        if not 1 <= self.apply_chunk_events <= 10_000:
            raise ValueError(f"apply_chunk_events: got {self.apply_chunk_events}, want 1..10000")
        if self.rekey_pause_seconds < 0:
            raise ValueError(f"rekey_pause_seconds: got {self.rekey_pause_seconds}, want >= 0")
        if not 0.05 <= self.change_poll_seconds <= 60:
            raise ValueError(f"change_poll_seconds: got {self.change_poll_seconds}, want 0.05..60")
        if self.metrics_listen is not None:
            m_host, m_sep, m_port = self.metrics_listen.rpartition(":")
            if not m_sep or not m_host or not m_port.isdigit() or not 0 <= int(m_port) <= 65535:
                raise ValueError(f"metrics_listen: got {self.metrics_listen!r}, want HOST:PORT")
        if not 0 < self.log_checkpoint_seconds <= 60:
            raise ValueError(
                f"log_checkpoint_seconds: got {self.log_checkpoint_seconds}, want 0 < s <= 60"
            )
        if not 0 < self.log_witness_seconds <= 3600:
            raise ValueError(
                f"log_witness_seconds: got {self.log_witness_seconds}, want 0 < s <= 3600"
            )
        _ = self.witness_keys  # refuses a malformed witness key, naming it
        if self.sqlite_synchronous not in ("FULL", "NORMAL"):
            raise ValueError(
                f"sqlite_synchronous: got {self.sqlite_synchronous!r}, want FULL or NORMAL"
            )
        if not 1 <= self.max_streams_per_principal <= 10_000:
            raise ValueError(
                f"max_streams_per_principal: got {self.max_streams_per_principal}, want 1..10000"
            )
        if self.rekey_lease_seconds <= 0:
            raise ValueError(f"rekey_lease_seconds: got {self.rekey_lease_seconds}, want > 0")
        for name in ("fanout_deadline_seconds", "fanout_retry_max_seconds"):
            if not 0 < getattr(self, name) <= 3600:
                raise ValueError(f"{name}: got {getattr(self, name)}, want 0 < seconds <= 3600")
        if not (
            self.quota.rate_per_second > 0 and self.quota.burst >= 1 and self.quota.daily_cap >= 1
        ):
            raise ValueError(f"quota: got {self.quota}, want positive rate, burst and cap")
        if self.shutdown_grace_seconds < 0:
            raise ValueError(
                f"shutdown_grace_seconds: got {self.shutdown_grace_seconds}, want >= 0"
            )
        # Refuses a lifetime beyond the protocol's or a skew out of range, naming the setting.
        AttestationPolicy(self.attestation_max_lifetime_seconds, self.clock_skew_seconds)

    @property
    def attestation_policy(self) -> AttestationPolicy:
        return AttestationPolicy(self.attestation_max_lifetime_seconds, self.clock_skew_seconds)

    @cached_property
    def witness_keys(self) -> tuple[CosignatureVerifier, ...]:
        # Parsed once (in __post_init__, which refuses a malformed key); the log service
        # and every later reader get the same tuple.
        out = []
        for vkey in self.log_witnesses.split():
            try:
                out.append(CosignatureVerifier.parse(vkey))
            except LogError as exc:
                raise ValueError(f"log_witnesses: {exc.message}") from None
        return tuple(out)

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def workers(self) -> int:
        return self.evaluate_workers or (os.cpu_count() or 1)


_ENV = {
    "data_dir": "NUMBIND_DATA_DIR",
    "listen": "NUMBIND_LISTEN",
    "database_url": "NUMBIND_DATABASE_URL",
    "log_level": "NUMBIND_LOG_LEVEL",
    "evaluate_workers": "NUMBIND_EVALUATE_WORKERS",
    "heartbeat_seconds": "NUMBIND_HEARTBEAT_SECONDS",
    "visibility_timeout_seconds": "NUMBIND_VISIBILITY_TIMEOUT_SECONDS",
    "order_deadline_seconds": "NUMBIND_ORDER_DEADLINE_SECONDS",
    "shutdown_grace_seconds": "NUMBIND_SHUTDOWN_GRACE_SECONDS",
    "attestation_max_lifetime_seconds": "NUMBIND_ATTESTATION_MAX_LIFETIME_SECONDS",
    "clock_skew_seconds": "NUMBIND_CLOCK_SKEW_SECONDS",
    "rekey_batch_rows": "NUMBIND_REKEY_BATCH_ROWS",
    "rekey_pause_seconds": "NUMBIND_REKEY_PAUSE_SECONDS",
    "rekey_lease_seconds": "NUMBIND_REKEY_LEASE_SECONDS",
    "apply_chunk_events": "NUMBIND_APPLY_CHUNK_EVENTS",
    "db_write_threads": "NUMBIND_DB_WRITE_THREADS",
    "db_idle_timeout_seconds": "NUMBIND_DB_IDLE_TIMEOUT_SECONDS",
    "change_poll_seconds": "NUMBIND_CHANGE_POLL_SECONDS",
    "change_notify": "NUMBIND_CHANGE_NOTIFY",
    "metrics_listen": "NUMBIND_METRICS_LISTEN",
    "otel": "NUMBIND_OTEL",
    "log_checkpoint_seconds": "NUMBIND_LOG_CHECKPOINT_SECONDS",
    "log_witnesses": "NUMBIND_LOG_WITNESSES",
    "log_witness_seconds": "NUMBIND_LOG_WITNESS_SECONDS",
    "max_streams_per_principal": "NUMBIND_MAX_STREAMS_PER_PRINCIPAL",
    "request_limits": "NUMBIND_REQUEST_LIMITS",
    "sqlite_synchronous": "NUMBIND_SQLITE_SYNCHRONOUS",
    "fanout_deadline_seconds": "NUMBIND_FANOUT_DEADLINE_SECONDS",
    "fanout_retry_max_seconds": "NUMBIND_FANOUT_RETRY_MAX_SECONDS",
}
_QUOTA_ENV = {
    "rate_per_second": "NUMBIND_QUOTA_RATE",
    "burst": "NUMBIND_QUOTA_BURST",
    "daily_cap": "NUMBIND_QUOTA_DAILY_CAP",
}


def _coerce(kind: Any, name: str, raw: str) -> Any:
    if kind in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{name}: got {raw!r}, want a whole number") from None
    if kind in (float, "float"):
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{name}: got {raw!r}, want a number") from None
        # float() reads "nan" and "inf": a NaN deadline passed every range check (NaN
        # compares false) and then failed each report's orders as they were made.
        if not math.isfinite(value):
            raise ValueError(f"{name}: got {raw!r}, want a finite number")
        return value
    if kind in (Path, "Path"):
        return Path(raw)
    if kind in (bool, "bool"):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name}: got {raw!r}, want 1 or 0")
    return raw


def load_settings(
    flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Flags (non-None values) win over NUMBIND_* variables, which win over defaults."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = os.environ if environ is None else environ
    kinds = {f.name: f.type for f in fields(Settings)}
    values: dict[str, Any] = {}
    for name, var in _ENV.items():
        if name in flags:
            values[name] = flags[name]
        elif var in environ and environ[var] != "":
            values[name] = _coerce(kinds[name], var, environ[var])
    quota_kinds = {f.name: f.type for f in fields(QuotaSettings)}
    quota: dict[str, Any] = {}
    for name, var in _QUOTA_ENV.items():
        if f"quota_{name}" in flags:
            quota[name] = flags[f"quota_{name}"]
        elif var in environ and environ[var] != "":
            quota[name] = _coerce(quota_kinds[name], var, environ[var])
    if quota:
        values["quota"] = QuotaSettings(**quota)
    values.setdefault("data_dir", Path("numbind-data"))
    values["data_dir"] = Path(values["data_dir"])
    try:
        return Settings(**values)
    except ValueError as exc:
        # Settings' checks name the field; a value from the environment is named by its
        # variable, which is what the operator has to change.
        field_name = str(exc).split(":", 1)[0]
        named = _ENV.get(field_name)
        if named is not None and field_name not in flags and named in environ:
            raise ValueError(f"{named} ({exc})") from None
        raise


# Listen hosts that mean every interface: no host a client could dial, and none a server
# certificate names (server_cert leaves them out of its names too).
WILDCARD_HOSTS = frozenset({"", "*", "0.0.0.0", "::"})


def _dialable(address: str) -> str:
    """Where a local client reaches a process serving ``address``: listening on every
    interface is no address to dial, and a bundle that named it failed the server
    certificate, which never names a wildcard; loopback is one it names."""
    host, _, port = address.rpartition(":")
    if host.strip("[]") not in WILDCARD_HOSTS:
        return address
    return f"[::1]:{port}" if ":" in host else f"127.0.0.1:{port}"


def record_served_address(data_dir: Path, address: str) -> None:
    """Note where this process serves (see SERVING_FILE), as a local client dials it."""
    write_atomically(
        data_dir / SERVING_FILE,
        (json.dumps({"address": _dialable(address), "pid": os.getpid()}) + "\n").encode(),
        0o600,
    )


def forget_served_address(data_dir: Path, address: str) -> None:
    """Remove SERVING_FILE if it still names this process at ``address``; a file another
    process wrote since (it started later) is its own and stays."""
    path = data_dir / SERVING_FILE
    if _read_json(path) == {"address": _dialable(address), "pid": os.getpid()}:
        path.unlink(missing_ok=True)


def record_advertised_address(data_dir: Path, address: str) -> None:
    """Note where clients reach the registry, as the operator said (see ADVERTISED_FILE)."""
    write_atomically(
        data_dir / ADVERTISED_FILE, (json.dumps({"address": address}) + "\n").encode(), 0o600
    )


def client_address(data_dir: Path) -> tuple[str, Path] | None:
    """Where clients reach the registry of this data dir, and the file that says so: the
    address the operator advertised (ADVERTISED_FILE), else the one `serve` last listened on
    (SERVING_FILE); None when neither is known."""
    for name in (ADVERTISED_FILE, SERVING_FILE):
        if (address := _address(_read_json(data_dir / name))) is not None:
            return address, data_dir / name
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _address(value: Any) -> str | None:
    address = value.get("address") if isinstance(value, dict) else None
    return address if isinstance(address, str) and address else None
