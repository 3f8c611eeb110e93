"""Settings: every field is settable by a NUMBIND_* variable and validated once, naming the
setting; the attestation settings reach the policy the registry verifies with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from numbind.protocol.attestation import MAX_LIFETIME_SECONDS
from numbind.registry.config import Settings, load_settings


def test_attestation_settings_come_from_the_environment(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "NUMBIND_DATA_DIR": str(tmp_path),
            "NUMBIND_ATTESTATION_MAX_LIFETIME_SECONDS": "120",
            "NUMBIND_CLOCK_SKEW_SECONDS": "5",
            "NUMBIND_SHUTDOWN_GRACE_SECONDS": "1.5",
        }
    )
    assert settings.attestation_max_lifetime_seconds == 120
    assert settings.clock_skew_seconds == 5
    assert settings.shutdown_grace_seconds == 1.5
    policy = settings.attestation_policy
    assert (policy.max_lifetime_seconds, policy.clock_skew_seconds) == (120, 5)


def test_defaults_are_the_protocols(tmp_path: Path) -> None:
    policy = Settings(data_dir=tmp_path).attestation_policy
    assert policy.max_lifetime_seconds == MAX_LIFETIME_SECONDS
    assert policy.clock_skew_seconds == 60


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "NUMBIND_ATTESTATION_MAX_LIFETIME_SECONDS",
            "601",
            "attestation_max_lifetime_seconds: got 601, want more than 0 and at most 600",
        ),
        (
            "NUMBIND_ATTESTATION_MAX_LIFETIME_SECONDS",
            "0",
            "attestation_max_lifetime_seconds: got 0, want more than 0",
        ),
        ("NUMBIND_CLOCK_SKEW_SECONDS", "-1", "clock_skew_seconds: got -1, want 0..600"),
        ("NUMBIND_CLOCK_SKEW_SECONDS", "3600", "clock_skew_seconds: got 3600, want 0..600"),
        ("NUMBIND_CLOCK_SKEW_SECONDS", "soon", "NUMBIND_CLOCK_SKEW_SECONDS: got 'soon'"),
        ("NUMBIND_SHUTDOWN_GRACE_SECONDS", "-2", "shutdown_grace_seconds: got -2.0, want >= 0"),
        ("NUMBIND_DB_WRITE_THREADS", "0", "db_write_threads: got 0, want 1..64"),
        ("NUMBIND_DB_WRITE_THREADS", "two", "NUMBIND_DB_WRITE_THREADS: got 'two'"),
        # NaN passed every range check (it compares false) and then failed each report.
        ("NUMBIND_ORDER_DEADLINE_SECONDS", "nan", "NUMBIND_ORDER_DEADLINE_SECONDS: got 'nan'"),
        ("NUMBIND_HEARTBEAT_SECONDS", "inf", "want a finite number"),
        ("NUMBIND_QUOTA_RATE", "NaN", "NUMBIND_QUOTA_RATE: got 'NaN', want a finite number"),
        ("NUMBIND_QUOTA_BURST", "1.5", "NUMBIND_QUOTA_BURST: got '1.5', want a whole number"),
        # A range error names the variable to change as well as the setting.
        ("NUMBIND_ORDER_DEADLINE_SECONDS", "-1", "NUMBIND_ORDER_DEADLINE_SECONDS (order_dead"),
        ("NUMBIND_DB_IDLE_TIMEOUT_SECONDS", "-5", "db_idle_timeout_seconds: got -5.0, want 0.."),
    ],
)
def test_out_of_range_settings_are_refused_by_name(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    with pytest.raises(ValueError) as err:
        load_settings(environ={"NUMBIND_DATA_DIR": str(tmp_path), variable: value})
    assert message in str(err.value)


def test_a_not_a_number_from_a_flag_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="heartbeat_seconds: got nan, want a finite number"):
        load_settings({"data_dir": tmp_path, "heartbeat_seconds": float("nan")}, environ={})


def test_a_zero_skew_is_allowed(tmp_path: Path) -> None:
    assert (
        Settings(data_dir=tmp_path, clock_skew_seconds=0).attestation_policy.clock_skew_seconds == 0
    )


def test_change_notify_is_on_unless_the_flag_or_the_environment_turns_it_off(
    tmp_path: Path,
) -> None:
    import argparse

    from numbind.cli.serve import settings_from

    env = {"NUMBIND_DATA_DIR": str(tmp_path)}
    assert load_settings({}, env).change_notify is True
    assert load_settings({}, {**env, "NUMBIND_CHANGE_NOTIFY": "0"}).change_notify is False
    with pytest.raises(ValueError, match="NUMBIND_CHANGE_NOTIFY"):
        load_settings({}, {**env, "NUMBIND_CHANGE_NOTIFY": "maybe"})
    args = argparse.Namespace(data_dir=tmp_path, no_change_notify=True)
    assert settings_from(args).change_notify is False
    # The flag's absence leaves the environment's word standing.
    args = argparse.Namespace(data_dir=tmp_path, no_change_notify=False)
    assert settings_from(args).change_notify is True


def test_a_store_opened_without_notify_announces_nothing(tmp_path: Path) -> None:
    from numbind.registry.storage.db import Database

    assert Database(f"sqlite:///{tmp_path / 'x.db'}").notify is False  # never on SQLite
    db = Database("postgresql+psycopg://u@127.0.0.1:1/x", notify=False)
    assert db.notify is False
    with db._write() as session:
        assert session.info["notify"] is False


def test_witness_keys_are_parsed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from numbind.protocol.checkpoint import CosignatureSigner, CosignatureVerifier

    vkey = CosignatureSigner.generate("w.example/witness").verifier.vkey()
    parse = CosignatureVerifier.parse
    calls: list[str] = []

    def counting(text: str) -> CosignatureVerifier:
        calls.append(text)
        return parse(text)

    monkeypatch.setattr(CosignatureVerifier, "parse", staticmethod(counting))
    settings = Settings(data_dir=tmp_path, log_witnesses=vkey)
    assert settings.witness_keys is settings.witness_keys
    assert [k.vkey() for k in settings.witness_keys] == [vkey]
    assert calls == [vkey]  # at validation; every later read is the same tuple


def test_every_store_opened_from_settings_takes_their_sqlite_and_notify_choices(
    tmp_path: Path,
) -> None:
    from numbind.registry.app import open_database

    db = open_database(Settings(data_dir=tmp_path, sqlite_synchronous="NORMAL"))
    try:
        with db.write_engine.connect() as conn:
            # PRAGMA synchronous: 1 is NORMAL, 2 is FULL.
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    finally:
        db.close()


@pytest.mark.parametrize(
    "code",
    [
        "import numbind.registry.config",
        # `numbind --help`: the whole command line built, every subcommand's options read.
        "import contextlib, io, numbind.cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    numbind.cli.main(['--help'])",
    ],
    ids=["config", "numbind --help"],
)
def test_settings_and_the_command_line_load_no_database_driver(code: str) -> None:
    # Every `numbind` command reads settings; SQLAlchemy and psycopg cost ~0.2 s of its
    # start-up (`numbind --help` 0.49-0.54 s with them, 0.26 s without), so only the
    # commands that open a store load them (the defaults config names live in
    # numbind.registry.storage, not storage.db).
    probe = (
        f"{code}\nimport sys\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'psycopg')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
