"""The carrier app's own subscriber store (SQLite, stdlib sqlite3).

What it keeps, and what it never keeps:

- subscribers: an opaque random id (what a server-side session points at), a pseudonymous
  ``subject`` for attestations (random, stable), ``id_key`` = HMAC-SHA256(app secret, ID
  number) so numbers enrolled under one ID group together (一证), and a scrypt hash of the
  ID's last six characters (salted per subscriber, peppered with the app secret) for sign-in.
  The ID number itself, or any part of it, is never stored.
- numbers: each number's E.164 form and the start of the subscriber's tenure. The carrier
  knows its subscribers' numbers; they stay here and never go to the registry.
- sign-in challenges: one-time codes, stored as HMACs, valid for five minutes.
- attempts: failed sign-in tries per number and the back-off they set (throttle.py): a
  delay of at most a minute, never a lockout.
- revocations: the registry revocation ids this app started, so progress survives a reload.

Every method opens its own connection and, when it writes, one ``BEGIN IMMEDIATE``
transaction (sqlite_db.py), so the store is safe to call from any thread.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

from numbind.carrier_app import store_schema
from numbind.carrier_app.records import (
    BadCredentials,
    Challenge,
    ChallengeInvalid,
    CodeExpired,
    CodeSpent,
    Delayed,
    Number,
    RevocationRecord,
    SignInError,
    Subscriber,
    WrongCode,
    id_tail,
    mask,
    normalise_id,
)
from numbind.carrier_app.sqlite_db import reading, transaction
from numbind.carrier_app.throttle import FORGET_SECONDS, number_delay

__all__ = [
    "CODE_TRIES",
    "CODE_TTL_SECONDS",
    "BadCredentials",
    "Challenge",
    "ChallengeInvalid",
    "CodeExpired",
    "CodeSpent",
    "Delayed",
    "Number",
    "RevocationRecord",
    "SignInError",
    "Store",
    "Subscriber",
    "WrongCode",
    "id_tail",
    "mask",
    "normalise_id",
]

CODE_TTL_SECONDS = 5 * 60
# Wrong codes one challenge hears before it ends.
CODE_TRIES = 5
CODE_DIGITS = 6
# scrypt cost: ~20 ms per check; sign-in is also throttled (throttle.py).
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class Store:
    def __init__(
        self, path: Path, secret: bytes, *, clock: Callable[[], float] = time.time
    ) -> None:
        if len(secret) < 16:
            raise ValueError("secret: want at least 16 bytes")
        self.path = path
        self._secret = secret
        self._now = clock
        with self._read() as db:
            store_schema.create(db)

    # -- plumbing ----------------------------------------------------------------------------
    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path)

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        return reading(self.path)

    def _id_key(self, id_number: str) -> bytes:
        return hmac.new(self._secret, b"id\x00" + id_number.encode(), hashlib.sha256).digest()

    def _attempt_key(self, e164: str) -> str:
        return hmac.new(self._secret, b"attempts\x00" + e164.encode(), hashlib.sha256).hexdigest()

    def _tail_hash(self, tail: str, salt: bytes) -> bytes:
        return hashlib.scrypt(self._secret + b"\x00" + tail.encode(), salt=salt, **_SCRYPT)

    def _code_mac(self, challenge_id: str, code: str) -> bytes:
        msg = f"otp\x00{challenge_id}\x00{code}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).digest()

    # -- enrolment (the carrier's back office) -------------------------------------------
    def enroll(self, id_number: str, e164: str, tenure_start: datetime) -> Subscriber:
        """Put a number under the subscriber with this ID (created if new).

        A number enrolled again moves to the new subscriber with the new tenure start: that
        is what a reissue looks like from the carrier's side.
        """
        canonical = normalise_id(id_number)
        if tenure_start.tzinfo is None:
            raise ValueError("tenure_start: want a time with a UTC offset")
        key = self._id_key(canonical)
        with self._tx() as db:
            row = db.execute("SELECT id, subject FROM subscribers WHERE id_key = ?", (key,))
            found = row.fetchone()
            if found is None:
                salt = secrets.token_bytes(16)
                sub = Subscriber(secrets.token_hex(16), secrets.token_hex(16))
                db.execute(
                    "INSERT INTO subscribers (id, subject, id_key, tail_salt, tail_hash,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        sub.id,
                        sub.subject,
                        key,
                        salt,
                        self._tail_hash(canonical[-6:], salt),
                        self._now(),
                    ),
                )
            else:
                sub = Subscriber(found[0], found[1])
            db.execute(
                "INSERT INTO numbers (subscriber_id, e164, tenure_start) VALUES (?, ?, ?)"
                " ON CONFLICT(e164) DO UPDATE SET subscriber_id = excluded.subscriber_id,"
                " tenure_start = excluded.tenure_start",
                (sub.id, e164, tenure_start.timestamp()),
            )
        return sub

    # -- sign-in -----------------------------------------------------------------------------
    # The number's back-off (throttle.py): ``failures`` and ``locked_until`` (the time before
    # which the first step hears no try) in ``attempts``, keyed by an HMAC of the number.
    def _wait_until(self, db: sqlite3.Connection, e164: str) -> float:
        key = self._attempt_key(e164)
        row = db.execute("SELECT locked_until FROM attempts WHERE e164 = ?", (key,)).fetchone()
        return 0.0 if row is None else float(row[0])

    def _fail(self, db: sqlite3.Connection, e164: str, now: float) -> float:
        """Count one failure on the number; returns when its next try will be heard."""
        key = self._attempt_key(e164)
        row = db.execute(
            "SELECT failures, locked_until FROM attempts WHERE e164 = ?", (key,)
        ).fetchone()
        failures = 0 if row is None or now - row[1] > FORGET_SECONDS else int(row[0])
        failures += 1
        until = now + number_delay(failures)
        db.execute(
            "INSERT INTO attempts (e164, failures, locked_until) VALUES (?, ?, ?)"
            " ON CONFLICT(e164) DO UPDATE SET failures = excluded.failures,"
            " locked_until = excluded.locked_until",
            (key, failures, until),
        )
        return until if until > now else 0.0

    def start_sign_in(self, e164: str, tail: str) -> Challenge:
        """Check number + ID last six; issue a fresh code (earlier codes stop working).

        Wrong last six count as failed tries on the number, like wrong codes, so the ID
        cannot be guessed through this step either. While the number backs off, a try is
        refused (Delayed) before it is checked, and not counted.
        """
        canonical_tail = id_tail(tail)
        now = self._now()
        fail: SignInError | None = None
        challenge = Challenge(
            secrets.token_urlsafe(18),
            f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}",
            now + CODE_TTL_SECONDS,
            e164,
        )
        with self._tx() as db:
            until = self._wait_until(db, e164)
            if until > now:
                raise Delayed(until)
            row = db.execute(
                "SELECT s.tail_salt, s.tail_hash FROM numbers n"
                " JOIN subscribers s ON s.id = n.subscriber_id WHERE n.e164 = ?",
                (e164,),
            ).fetchone()
            # A number that is not ours fails exactly like a wrong ID: same work (timing),
            # same count and back-off (so the answers do not tell who is a subscriber).
            salt, want = (bytes(16), b"") if row is None else (row[0], row[1])
            if not hmac.compare_digest(self._tail_hash(canonical_tail, salt), want):
                fail = BadCredentials(self._fail(db, e164, now))
            else:
                db.execute("UPDATE challenges SET used = 1 WHERE e164 = ?", (e164,))
                db.execute("DELETE FROM challenges WHERE expires_at < ?", (now - 86400,))
                db.execute(
                    "INSERT INTO challenges (id, e164, code_mac, expires_at) VALUES (?, ?, ?, ?)",
                    (
                        challenge.id,
                        e164,
                        self._code_mac(challenge.id, challenge.code),
                        challenge.expires_at,
                    ),
                )
        # Raised after the commit, so the failure count sticks.
        if fail is not None:
            raise fail
        return challenge

    def challenge_number(self, challenge_id: str) -> str | None:
        """The number a live challenge is for (to show it masked), or None."""
        with self._read() as db:
            row = db.execute(
                "SELECT e164 FROM challenges WHERE id = ? AND used = 0", (challenge_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def verify_code(self, challenge_id: str, code: str) -> str:
        """The subscriber id when the code is right; otherwise a SignInError.

        Never delayed by the number's failures (others' wrong ID tails cannot keep the
        holder out): a challenge id goes only to whoever passed the first step, and each
        challenge hears CODE_TRIES wrong codes, then ends (CodeSpent). Wrong codes also
        count on the number, so asking for new codes backs off like wrong ID tails.
        """
        now = self._now()
        fail: SignInError | None = None
        subscriber_id = ""
        with self._tx() as db:
            row = db.execute(
                "SELECT e164, code_mac, expires_at, used, tries FROM challenges WHERE id = ?",
                (challenge_id,),
            ).fetchone()
            if row is None or row[3]:
                raise ChallengeInvalid("start again")
            e164, mac, expires_at, _, tries = row
            if now >= expires_at:
                db.execute("UPDATE challenges SET used = 1 WHERE id = ?", (challenge_id,))
                fail = CodeExpired("code expired")
            elif not hmac.compare_digest(self._code_mac(challenge_id, code.strip()), mac):
                self._fail(db, e164, now)
                left = CODE_TRIES - tries - 1
                db.execute(
                    "UPDATE challenges SET tries = tries + 1, used = ? WHERE id = ?",
                    (int(left <= 0), challenge_id),
                )
                fail = WrongCode(left) if left > 0 else CodeSpent("start again")
            else:
                db.execute("UPDATE challenges SET used = 1 WHERE id = ?", (challenge_id,))
                db.execute("DELETE FROM attempts WHERE e164 = ?", (self._attempt_key(e164),))
                found = db.execute(
                    "SELECT subscriber_id FROM numbers WHERE e164 = ?", (e164,)
                ).fetchone()
                if found is None:  # the number moved to someone else meanwhile
                    fail = ChallengeInvalid("start again")
                else:
                    subscriber_id = str(found[0])
        if fail is not None:
            raise fail
        return subscriber_id

    def backoff_state(self, e164: str) -> tuple[int, float]:
        """(failures counted, next try heard at) for a number; (0, 0) when clean."""
        with self._read() as db:
            row = db.execute(
                "SELECT failures, locked_until FROM attempts WHERE e164 = ?",
                (self._attempt_key(e164),),
            ).fetchone()
        return (0, 0.0) if row is None else (int(row[0]), float(row[1]))

    # -- the signed-in subscriber --------------------------------------------------------
    def subscriber(self, subscriber_id: str) -> Subscriber | None:
        with self._read() as db:
            row = db.execute(
                "SELECT id, subject FROM subscribers WHERE id = ?", (subscriber_id,)
            ).fetchone()
        return None if row is None else Subscriber(row[0], row[1])

    def numbers(self, subscriber_id: str) -> list[Number]:
        with self._read() as db:
            rows = db.execute(
                "SELECT id, subscriber_id, e164, tenure_start FROM numbers"
                " WHERE subscriber_id = ? ORDER BY tenure_start DESC, id",
                (subscriber_id,),
            ).fetchall()
        return [Number(r[0], r[1], r[2], datetime.fromtimestamp(r[3], UTC)) for r in rows]

    def number(self, subscriber_id: str, number_id: int) -> Number | None:
        for n in self.numbers(subscriber_id):
            if n.id == number_id:
                return n
        return None

    # -- revocations this app started ----------------------------------------------------
    def add_revocation(
        self,
        revocation_id: str,
        subscriber_id: str,
        number_id: int,
        scope: str,
        platforms: list[str],
    ) -> RevocationRecord:
        record = RevocationRecord(
            revocation_id, subscriber_id, number_id, scope, list(platforms), self._now()
        )
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO revocations"
                " (id, subscriber_id, number_id, scope, platforms, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    subscriber_id,
                    number_id,
                    scope,
                    json.dumps(record.platforms),
                    record.created_at,
                ),
            )
        return record

    def revocations(self, subscriber_id: str, limit: int = 20) -> list[RevocationRecord]:
        """This subscriber's revocations, newest first."""
        with self._read() as db:
            rows = db.execute(
                "SELECT id, subscriber_id, number_id, scope, platforms, created_at"
                " FROM revocations WHERE subscriber_id = ? ORDER BY created_at DESC LIMIT ?",
                (subscriber_id, limit),
            ).fetchall()
        return [RevocationRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    def revocation(self, subscriber_id: str, revocation_id: str) -> RevocationRecord | None:
        with self._read() as db:
            r = db.execute(
                "SELECT id, subscriber_id, number_id, scope, platforms, created_at"
                " FROM revocations WHERE id = ? AND subscriber_id = ?",
                (revocation_id, subscriber_id),
            ).fetchone()
        return (
            None if r is None else RevocationRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5])
        )
