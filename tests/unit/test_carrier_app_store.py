"""The carrier app's subscriber store: codes expire, five wrong tries lock, IDs never stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from numbind.carrier_app import store as st
from numbind.carrier_app.i18n import TEXT, Translator

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


def test_five_wrong_codes_lock_the_number_for_fifteen_minutes(
    store: st.Store, clock: Clock
) -> None:
    challenge = store.start_sign_in(PHONE, "08123X")
    for left in (4, 3, 2, 1):
        with pytest.raises(st.WrongCode) as err:
            store.verify_code(challenge.id, wrong(challenge.code))
        assert err.value.remaining == left
    with pytest.raises(st.Locked) as locked:
        store.verify_code(challenge.id, wrong(challenge.code))
    assert locked.value.until == clock.now + st.LOCK_SECONDS
    # Locked: the right code no longer works, and no new code is issued.
    with pytest.raises((st.Locked, st.ChallengeInvalid)):
        store.verify_code(challenge.id, challenge.code)
    clock.advance(st.LOCK_SECONDS - 1)
    with pytest.raises(st.Locked):
        store.start_sign_in(PHONE, "08123X")
    clock.advance(2)
    again = store.start_sign_in(PHONE, "08123X")
    assert store.verify_code(again.id, again.code)
    assert store.lock_state(PHONE) == (0, 0.0)


def test_a_new_code_does_not_reset_the_count(store: st.Store, clock: Clock) -> None:
    for _ in range(2):
        c = store.start_sign_in(PHONE, "08123X")
        with pytest.raises(st.WrongCode):
            store.verify_code(c.id, wrong(c.code))
        with pytest.raises(st.WrongCode):
            store.verify_code(c.id, wrong(c.code))
    c = store.start_sign_in(PHONE, "08123X")
    with pytest.raises(st.Locked):
        store.verify_code(c.id, wrong(c.code))


def test_a_new_code_retires_the_old_one(store: st.Store) -> None:
    old = store.start_sign_in(PHONE, "08123X")
    new = store.start_sign_in(PHONE, "08123X")
    with pytest.raises(st.ChallengeInvalid):
        store.verify_code(old.id, old.code)
    assert store.verify_code(new.id, new.code)


def test_wrong_id_tail_counts_towards_the_lock(store: st.Store) -> None:
    for left in (4, 3, 2, 1):
        with pytest.raises(st.BadCredentials) as err:
            store.start_sign_in(PHONE, "000000")
        assert err.value.remaining == left
    with pytest.raises(st.Locked):
        store.start_sign_in(PHONE, "000000")
    with pytest.raises(st.Locked):
        store.start_sign_in(PHONE, "08123X")


def test_unknown_number_fails_and_locks_exactly_like_a_subscriber(
    store: st.Store, tmp_path: Path
) -> None:
    """Neither the answer nor the lockout tells whether a number is a subscriber's, and
    numbers that are not ours are never kept in clear."""
    stranger = "+8613700137000"
    for left in (4, 3, 2, 1):
        with pytest.raises(st.BadCredentials) as err:
            store.start_sign_in(stranger, "08123X")
        assert err.value.remaining == left
    with pytest.raises(st.Locked):
        store.start_sign_in(stranger, "08123X")
    assert store.lock_state(stranger)[1] > 0
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
