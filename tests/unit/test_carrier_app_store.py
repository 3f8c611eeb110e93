"""The carrier app's subscriber store: codes expire, five wrong codes end one, failed tries
back a number off (never a lockout), IDs never stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from numbind.carrier_app import store as st
from numbind.carrier_app.i18n import TEXT, Translator
from numbind.carrier_app.throttle import BACKOFF_CAP_SECONDS, FORGET_SECONDS, number_delay

ID = "11010519880808123X"
OTHER_ID = "310104199202025678"
PHONE = "+8613800138000"
SECOND = "+8613912345678"
SECRET = b"s" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> st.Store:
    s = st.Store(tmp_path / "app.db", SECRET, clock=clock)
    s.enroll(ID, PHONE, datetime.now(UTC) - timedelta(days=40))
    return s


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_right_code_signs_in_once(store: st.Store) -> None:
    challenge = store.start_sign_in(PHONE, "08123x")
    assert len(challenge.code) == 6 and challenge.code.isdigit()
    sid = store.verify_code(challenge.id, challenge.code)
    sub = store.subscriber(sid)
    assert sub is not None and [n.e164 for n in store.numbers(sid)] == [PHONE]
    with pytest.raises(st.ChallengeInvalid):
        store.verify_code(challenge.id, challenge.code)  # single use


def test_code_expires_after_five_minutes(store: st.Store, clock: Clock) -> None:
    fresh = store.start_sign_in(PHONE, "08123X")
    clock.advance(st.CODE_TTL_SECONDS - 1)
    assert store.verify_code(fresh.id, fresh.code)
    stale = store.start_sign_in(PHONE, "08123X")
    clock.advance(st.CODE_TTL_SECONDS)
    with pytest.raises(st.CodeExpired):
        store.verify_code(stale.id, stale.code)
    with pytest.raises(st.ChallengeInvalid):  # and it stays dead
        store.verify_code(stale.id, stale.code)


def test_five_wrong_codes_end_the_code_and_the_number_backs_off(
    store: st.Store, clock: Clock
) -> None:
    challenge = store.start_sign_in(PHONE, "08123X")
    for left in (4, 3, 2, 1):
        with pytest.raises(st.WrongCode) as err:
            store.verify_code(challenge.id, wrong(challenge.code))
        assert err.value.remaining == left
    with pytest.raises(st.CodeSpent):
        store.verify_code(challenge.id, wrong(challenge.code))
    # That code is over, even the right one; a new one after a short wait, not 15 minutes.
    with pytest.raises(st.ChallengeInvalid):
        store.verify_code(challenge.id, challenge.code)
    failures, until = store.backoff_state(PHONE)
    assert failures == 5 and until == clock.now + number_delay(5)
    with pytest.raises(st.Delayed) as delayed:
        store.start_sign_in(PHONE, "08123X")
    assert delayed.value.until == until
    clock.advance(number_delay(5))
    again = store.start_sign_in(PHONE, "08123X")
    assert store.verify_code(again.id, again.code)
    assert store.backoff_state(PHONE) == (0, 0.0)


def test_a_new_code_does_not_reset_the_count(store: st.Store, clock: Clock) -> None:
    for _ in range(2):
        clock.advance(BACKOFF_CAP_SECONDS)
        c = store.start_sign_in(PHONE, "08123X")
        for _ in range(2):
            with pytest.raises(st.WrongCode):
                store.verify_code(c.id, wrong(c.code))
    assert store.backoff_state(PHONE)[0] == 4


def test_a_new_code_retires_the_old_one(store: st.Store) -> None:
    old = store.start_sign_in(PHONE, "08123X")
    new = store.start_sign_in(PHONE, "08123X")
    with pytest.raises(st.ChallengeInvalid):
        store.verify_code(old.id, old.code)
    assert store.verify_code(new.id, new.code)


def test_wrong_id_tails_back_off_exponentially_to_a_cap_and_waiting_tries_do_not_count(
    store: st.Store, clock: Clock
) -> None:
    waits = []
    for n in range(1, 13):
        with pytest.raises(st.BadCredentials) as err:
            store.start_sign_in(PHONE, "000000")
        waits.append(max(0.0, err.value.retry_at - clock.now))
        assert store.backoff_state(PHONE)[0] == n
        if err.value.retry_at:
            # Tries while waiting are refused unheard: not checked, not counted.
            for tail in ("000000", "08123X"):
                with pytest.raises(st.Delayed):
                    store.start_sign_in(PHONE, tail)
            assert store.backoff_state(PHONE)[0] == n
            clock.advance(err.value.retry_at - clock.now)
    assert waits == [0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert max(waits) == BACKOFF_CAP_SECONDS
    # Failures are forgotten an hour after the last one.
    clock.advance(FORGET_SECONDS + 1)
    with pytest.raises(st.BadCredentials) as err:
        store.start_sign_in(PHONE, "000000")
    assert err.value.retry_at == 0 and store.backoff_state(PHONE)[0] == 1


def test_a_stranger_cannot_lock_a_subscriber_out(store: st.Store, clock: Clock) -> None:
    """Finding 6: five wrong tries by anyone used to lock the number for 15 minutes. Now a
    stranger's failures never stop the holder's code from working, and delay the holder's
    next code by at most the back-off cap, however many there are."""
    holding = store.start_sign_in(PHONE, "08123X")
    for _ in range(50):  # a stranger hammering for four minutes
        with pytest.raises((st.BadCredentials, st.Delayed)):
            store.start_sign_in(PHONE, "000000")
        clock.advance(5)
    assert store.backoff_state(PHONE)[0] > 5
    # The holder, with the code they were sent before: in at once.
    assert store.verify_code(holding.id, holding.code)
    for _ in range(50):  # and again, now all at once
        try:
            store.start_sign_in(PHONE, "000000")
        except st.BadCredentials:
            pass
        except st.Delayed as wait:
            # The holder asking for a new code now waits at most the cap.
            assert wait.until - clock.now <= BACKOFF_CAP_SECONDS
    clock.advance(BACKOFF_CAP_SECONDS)
    fresh = store.start_sign_in(PHONE, "08123X")
    assert store.verify_code(fresh.id, fresh.code)


def test_unknown_number_fails_and_backs_off_exactly_like_a_subscriber(
    store: st.Store, clock: Clock, tmp_path: Path
) -> None:
    """Neither the answer nor the back-off tells whether a number is a subscriber's, and
    numbers that are not ours are never kept in clear."""
    stranger = "+8613700137000"
    seen = {}
    for number, tail in ((stranger, "08123X"), (PHONE, "000000")):
        answers = []
        for _ in range(5):
            with pytest.raises(st.BadCredentials) as err:
                store.start_sign_in(number, tail)
            answers.append(err.value.retry_at - clock.now if err.value.retry_at else 0)
            clock.advance(max(0.0, err.value.retry_at - clock.now))
        seen[number] = answers
    assert seen[stranger] == seen[PHONE]
    assert store.backoff_state(stranger)[0] == 5
    assert b"13700137000" not in b"".join(p.read_bytes() for p in tmp_path.glob("app.db*"))


def test_malformed_tail_and_id_are_refused(store: st.Store) -> None:
    with pytest.raises(ValueError):
        store.start_sign_in(PHONE, "12345")
    with pytest.raises(ValueError):
        store.enroll("12345", SECOND, datetime.now(UTC))


def test_the_id_number_is_never_stored(tmp_path: Path, store: st.Store) -> None:
    store.enroll(ID, SECOND, datetime.now(UTC) - timedelta(days=3000))
    challenge = store.start_sign_in(PHONE, ID[-6:])
    store.verify_code(challenge.id, challenge.code)
    files = list(tmp_path.glob("app.db*"))
    raw = b"".join(f.read_bytes() for f in files)
    for secret in (ID, ID.lower(), ID[-6:], ID[:6], challenge.code):
        assert secret.encode() not in raw, secret
    import sqlite3

    dump = "\n".join(sqlite3.connect(tmp_path / "app.db").iterdump())
    assert ID[-6:] not in dump and challenge.code not in dump


def test_numbers_group_under_one_id_and_a_reissue_moves_a_number(store: st.Store) -> None:
    first = store.enroll(ID.lower(), SECOND, datetime.now(UTC) - timedelta(days=3000))
    c = store.start_sign_in(PHONE, "08123X")
    sid = store.verify_code(c.id, c.code)
    assert first.id == sid
    assert {n.e164 for n in store.numbers(sid)} == {PHONE, SECOND}
    # The carrier sells SECOND to someone else: it moves, with the new tenure.
    start = datetime.now(UTC).replace(microsecond=0)
    other = store.enroll(OTHER_ID, SECOND, start)
    assert other.id != sid and other.subject != first.subject
    assert [n.e164 for n in store.numbers(sid)] == [PHONE]
    (moved,) = store.numbers(other.id)
    assert moved.tenure_start == start


def test_revocations_are_kept_per_subscriber(store: st.Store, clock: Clock) -> None:
    c = store.start_sign_in(PHONE, "08123X")
    sid = store.verify_code(c.id, c.code)
    (n,) = store.numbers(sid)
    store.add_revocation("a" * 36, sid, n.id, "previous", [])
    clock.advance(1)
    store.add_revocation("b" * 36, sid, n.id, "platform", ["demo-shop"])
    assert [r.id for r in store.revocations(sid)] == ["b" * 36, "a" * 36]
    assert store.revocation(sid, "b" * 36) is not None
    assert store.revocation("someone-else", "b" * 36) is None


def test_masking_never_shows_the_middle_digits() -> None:
    assert st.mask("+8613800138000") == "138****8000"
    assert "0013" not in repr(st.Number(1, "x", "+8613800138000", datetime.now(UTC)))


def test_every_string_has_both_languages() -> None:
    assert all(zh and en for zh, en in TEXT.values())
    assert Translator("en").accounts(2) == "2 accounts"
    assert Translator("xx").lang == "zh"


def test_the_store_is_private_whatever_the_umask(tmp_path: Path, clock: Clock) -> None:
    import os
    import stat

    old = os.umask(0o022)  # a login shell's: files 0644
    try:
        s = st.Store(tmp_path / "app.db", SECRET, clock=clock)
        s.enroll(ID, PHONE, datetime.now(UTC) - timedelta(days=40))
    finally:
        os.umask(old)
    files = sorted(p for p in tmp_path.iterdir() if p.name.startswith("app.db"))
    assert tmp_path / "app.db" in files
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}
