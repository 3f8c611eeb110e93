"""The subscriber store's tables (store.py says what each keeps, and what never), created
when missing, and brought up to date when made by an older version."""

from __future__ import annotations

import sqlite3

__all__ = ["create"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscribers (
    id          TEXT PRIMARY KEY,
    subject     TEXT NOT NULL UNIQUE,
    id_key      BLOB NOT NULL UNIQUE,
    tail_salt   BLOB NOT NULL,
    tail_hash   BLOB NOT NULL,
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS numbers (
    id            INTEGER PRIMARY KEY,
    subscriber_id TEXT NOT NULL REFERENCES subscribers(id),
    e164          TEXT NOT NULL UNIQUE,
    tenure_start  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS challenges (
    id          TEXT PRIMARY KEY,
    e164        TEXT NOT NULL,
    code_mac    BLOB NOT NULL,
    expires_at  REAL NOT NULL,
    used        INTEGER NOT NULL DEFAULT 0,
    tries       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS challenges_by_number ON challenges(e164);
CREATE TABLE IF NOT EXISTS attempts (
    -- HMAC of the number (see Store._attempt_key): numbers that are not ours get
    -- counted too, and must not be kept in clear. locked_until: no first-step try is
    -- heard before it (the back-off; the name is older than the back-off).
    e164          TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL DEFAULT 0,
    locked_until  REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS revocations (
    id            TEXT PRIMARY KEY,
    subscriber_id TEXT NOT NULL REFERENCES subscribers(id),
    number_id     INTEGER NOT NULL REFERENCES numbers(id),
    scope         TEXT NOT NULL,
    platforms     TEXT NOT NULL,
    created_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS revocations_by_subscriber ON revocations(subscriber_id, created_at);
"""


def create(db: sqlite3.Connection) -> None:
    """Create the tables that are missing and add columns older stores lack."""
    db.executescript(_SCHEMA)  # its own transaction
    columns = {r[1] for r in db.execute("PRAGMA table_info(challenges)")}
    if "tries" not in columns:  # a store made before per-challenge tries
        db.execute("ALTER TABLE challenges ADD COLUMN tries INTEGER NOT NULL DEFAULT 0")
