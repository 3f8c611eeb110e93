"""C2SP signed notes: the golang.org/x/mod example byte for byte, the opening rules, keys."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numbind.protocol import note as n
from numbind.protocol.log_errors import (
    BadSignature,
    MalformedKey,
    MalformedNote,
    NoKnownSignature,
    NoteError,
)

_VECTOR_FILE = "rfc9162_merkle_and_c2sp_note.json"


def _vector() -> dict[str, Any]:
    path = Path(__file__).resolve().parents[3] / "shared" / "vectors" / _VECTOR_FILE
    env = os.environ.get("NUMBIND_VECTORS")
    if not path.is_file() and env:
        path = Path(env) / _VECTOR_FILE if Path(env).is_dir() else Path(env)
    if not path.is_file():
        pytest.fail(f"vector file not found at {path} (set NUMBIND_VECTORS)")
    signed: dict[str, Any] = json.loads(path.read_text())["signed_note"]
    return signed


def _signer(name: str, seed_byte: int) -> n.Ed25519Signer:
    return n.Ed25519Signer(name, bytes([seed_byte]) * 32)


def test_peter_neumann_example_byte_for_byte() -> None:
    v = _vector()
    signer = n.Ed25519Signer.parse(v["signer_key"])
    assert f"{signer.key_id:08x}" == v["key_id"]
    assert n.sign_note(v["text"].encode(), signer) == v["note"].encode()
    assert signer.skey() == v["signer_key"]
    assert signer.verifier.vkey() == v["verifier_key"]

    verifier = n.Ed25519Verifier.parse(v["verifier_key"])
    assert verifier == signer.verifier
    opened = n.open_note(v["note"].encode(), [verifier])
    assert opened.text == v["text"].encode()
    assert [(s.name, f"{s.key_id:08x}") for s in opened.verified] == [("PeterNeumann", "c74f20a3")]
    assert opened.unverified == ()
    # The signature line begins with U+2014 and a space.
    assert v["note"].encode().split(b"\n\n")[1].startswith("— ".encode())


def test_key_id_rule_is_the_vectors() -> None:
    v = _vector()
    verifier = n.Ed25519Verifier.parse(v["verifier_key"])
    digest = hashlib.sha256(b"PeterNeumann\n\x01" + verifier.public_key).digest()
    assert digest[:4].hex() == v["key_id"] == f"{verifier.key_id:08x}"


def test_tampered_example_is_refused() -> None:
    v = _vector()
    verifier = n.Ed25519Verifier.parse(v["verifier_key"])
    data = v["note"].encode()
    with pytest.raises(BadSignature, match="PeterNeumann\\+c74f20a3"):
        n.open_note(data.replace(b"answer", b"anSwer"), [verifier])
    text, sig_block = data.split(b"\n\n")
    raw = bytearray(base64.b64decode(sig_block.split(b" ")[2]))
    raw[10] ^= 1
    forged = text + b"\n\n" + "— PeterNeumann ".encode() + base64.b64encode(raw) + b"\n"
    with pytest.raises(BadSignature):
        n.open_note(forged, [verifier])


def test_unknown_signatures_are_ignored_and_kept_apart() -> None:
    text = b"numbind.test/log\n3\n" + b"A" * 43 + b"=\n"
    log, other = _signer("numbind.test/log", 1), _signer("someone.else", 2)
    # Same name as the log, another key: unknown (only name and id together identify).
    impostor = _signer("numbind.test/log", 3)
    data = n.sign_note(text, other, log, impostor)
    opened = n.open_note(data, [log.verifier])
    assert [s.name for s in opened.verified] == ["numbind.test/log"]
    assert {(s.name, s.key_id) for s in opened.unverified} == {
        ("someone.else", other.key_id),
        ("numbind.test/log", impostor.key_id),
    }


def test_a_note_without_a_known_signature_is_refused() -> None:
    data = n.sign_note(b"hello\n", _signer("a.example", 1))
    with pytest.raises(
        NoKnownSignature, match=r"signed by a\.example\+[0-9a-f]{8}; know b\.example"
    ):
        n.open_note(data, [_signer("b.example", 2).verifier])
    with pytest.raises(NoKnownSignature, match="know none"):
        n.open_note(data, [])


def test_one_bad_signature_from_a_known_key_refuses_the_whole_note() -> None:
    a, b = _signer("a.example", 1), _signer("b.example", 2)
    good = n.sign_note(b"hello\n", a, b)
    wrong = n.Signature("b.example", b.key_id, b.sign(b"something else\n"))
    data = n.add_signatures(n.sign_note(b"hello\n", a), [wrong])
    n.open_note(good, [a.verifier, b.verifier])
    with pytest.raises(BadSignature, match=re.escape("b.example")):
        n.open_note(data, [a.verifier, b.verifier])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"hello\n", "no blank line"),
        (b"hello\n\n", "signature lines ending in a newline"),
        ("hello\n\n— a.example AAAAAAAA".encode(), "ending in a newline"),
        (b"hello\n\n- a.example AAAAAAAA\n", "want '— <name> <base64>'"),
        ("hello\n\n— a.example\n".encode(), "not standard base64|want a key id"),
        ("hello\n\n— a.example AAAA\n".encode(), "want a key id and a signature"),
        ("hello\n\n— a.example AAAAAA==\n".encode(), "want a key id"),
        ("hello\n\n— a.example AAAAAAAA!\n".encode(), "not standard base64"),
        ("hello\n\n— a.example AAAAAAB=\n".encode(), "not canonical"),  # trailing bits set
        ("hello\n\n— a+b AAAAAAAA\n".encode(), "signature name"),
        ("hello\n\n—  AAAAAAAA\n".encode(), "signature name"),
        ("hel\tlo\n\n— a.example AAAAAAAA\n".encode(), "control character"),
        (b"hel\xfflo\n\n\xe2\x80\x94 a.example AAAAAAAA\n", "not UTF-8"),
    ],
)
def test_malformed_notes_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(MalformedNote, match=match):
        n.open_note(data, [_signer("a.example", 1).verifier])


def test_signature_count_is_bounded() -> None:
    line = "— x.example AAAAAAAA\n".encode()
    n.split_note(b"hi\n\n" + line * n.MAX_SIGNATURES)
    with pytest.raises(MalformedNote, match="at most 100"):
        n.split_note(b"hi\n\n" + line * (n.MAX_SIGNATURES + 1))


def test_text_rules_when_signing() -> None:
    s = _signer("a.example", 1)
    with pytest.raises(MalformedNote, match="final newline"):
        n.sign_note(b"no newline", s)
    with pytest.raises(MalformedNote, match="control character"):
        n.sign_note(b"bell\x07\n", s)
    with pytest.raises(MalformedNote, match="at least one signer"):
        n.sign_note(b"x\n")
    # Blank lines inside the text are allowed: the last blank line separates.
    data = n.sign_note(b"a\n\nb\n\n", s)
    assert n.open_note(data, [s.verifier]).text == b"a\n\nb\n\n"


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ("a.example+00000000", "want <name>\\+<hex id>\\+<base64 key>"),
        ("a.example+0000000+AQ==", "8 lowercase hex"),
        ("a.example+C74F20A3+AQ==", "8 lowercase hex"),
        ("a example+00000000+AQ==", "name"),
        ("+00000000+AQ==", "name"),
        ("a.example+00000000+AQ=", "base64"),
        ("a.example+00000000+AQ==", "a type byte and key material"),
    ],
)
def test_malformed_verifier_keys(key: str, match: str) -> None:
    with pytest.raises(MalformedKey, match=match):
        n.Ed25519Verifier.parse(key)


def test_verifier_key_checks_type_length_and_id() -> None:
    v = _vector()
    name, kid, _, pub = n.parse_verifier_key(v["verifier_key"])
    with pytest.raises(MalformedKey, match="type 0x04, want 0x01"):
        n.Ed25519Verifier.parse(n.format_verifier_key(name, kid, 0x04, pub))
    with pytest.raises(MalformedKey, match="got 31 bytes"):
        n.Ed25519Verifier.parse(n.format_verifier_key(name, kid, 0x01, pub[:31]))
    with pytest.raises(MalformedKey, match="does not match the key"):
        n.Ed25519Verifier.parse(n.format_verifier_key(name, kid ^ 1, 0x01, pub))
    with pytest.raises(MalformedKey, match="does not match the key"):
        n.Ed25519Verifier.parse(n.format_verifier_key("PeterNeumanm", kid, 0x01, pub))
    with pytest.raises(MalformedKey, match="PRIVATE\\+KEY"):
        n.Ed25519Signer.parse(v["verifier_key"])
    sname, skid, _, seed = n.parse_signer_key(v["signer_key"])
    with pytest.raises(MalformedKey, match="does not match the key"):
        n.Ed25519Signer.parse(n.format_signer_key(sname, skid ^ 0x100, 0x01, seed))


def test_generated_keys_round_trip_and_the_seed_stays_out_of_repr() -> None:
    s = n.Ed25519Signer.generate("numbind.fed-1/log")
    again = n.Ed25519Signer.parse(s.skey())
    assert again.verifier == s.verifier == n.Ed25519Verifier.parse(s.verifier.vkey())
    # The key material is all after the fourth "+" (it is base64, which may hold "+" too:
    # its last "+"-separated piece alone can be two letters that any text contains).
    secret = s.skey().split("+", 4)[4]
    assert len(secret) == 44 and "PRIVATE" not in repr(s) and secret not in repr(s)
    assert repr(s).startswith("Ed25519Signer(numbind.fed-1/log+")


def test_duplicate_verifiers_are_refused() -> None:
    s = _signer("a.example", 1)
    data = n.sign_note(b"x\n", s)
    with pytest.raises(MalformedKey, match=re.escape("two keys named a.example")):
        n.open_note(data, [s.verifier, s.verifier])


def test_add_signatures_appends_new_keys_only() -> None:
    a, b = _signer("a.example", 1), _signer("b.example", 2)
    data = n.sign_note(b"x\n", a)
    b_sig = n.Signature(b.name, b.key_id, b.sign(b"x\n"))
    a_again = n.Signature(a.name, a.key_id, a.sign(b"x\n"))
    both = n.add_signatures(data, [b_sig, a_again, b_sig])
    assert both == n.sign_note(b"x\n", a, b)
    opened = n.open_note(both, [a.verifier, b.verifier])
    assert [s.name for s in opened.verified] == ["a.example", "b.example"]


def test_errors_share_one_root() -> None:
    for cls in (MalformedNote, MalformedKey, BadSignature, NoKnownSignature):
        assert issubclass(cls, NoteError)


def test_signatures_are_over_the_exact_text_bytes() -> None:
    s = _signer("a.example", 7)
    text = "Ünïcödé text — with a dash\n".encode()
    data = n.sign_note(text, s)
    sig = base64.b64decode(data.split(b" ")[-1])
    nacl.signing.VerifyKey(s.verifier.public_key).verify(text, sig[4:])
    assert sig[:4] == s.key_id.to_bytes(4, "big")


_TEXT = st.lists(
    st.text(
        alphabet=st.characters(
            min_codepoint=0x20, max_codepoint=0x2FFF, categories=("L", "M", "N", "P", "S", "Zs")
        ),
        max_size=30,
    ),
    min_size=1,
    max_size=5,
).map(lambda lines: ("\n".join(lines) + "\n").encode())


@settings(max_examples=60, deadline=None)
@given(_TEXT, st.data())
def test_round_trip_and_any_byte_change_is_refused(text: bytes, data: st.DataObject) -> None:
    s = _signer("a.example", 5)
    signed = n.sign_note(text, s)
    assert n.open_note(signed, [s.verifier]).text == text
    pos = data.draw(st.integers(0, len(signed) - 1))
    xor = data.draw(st.integers(1, 255))
    changed = signed[:pos] + bytes([signed[pos] ^ xor]) + signed[pos + 1 :]
    with pytest.raises(NoteError):
        n.open_note(changed, [s.verifier])
