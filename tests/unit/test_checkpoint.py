"""C2SP checkpoints, cosignature/v1 witness signatures and the witness policy."""

from __future__ import annotations

import base64
import hashlib
import re

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numbind.protocol import checkpoint as c
from numbind.protocol import merkle
from numbind.protocol import note as n
from numbind.protocol.log_errors import (
    BadSignature,
    LogError,
    MalformedCheckpoint,
    MalformedKey,
    NoKnownSignature,
    QuorumNotMet,
)

ORIGIN = "numbind.fed-test/log"
# The examples of c2sp.org/tlog-checkpoint and tlog-cosignature.
SPEC_BODY = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_COSIGNATURE_LINE = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2"
    "oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)
NOW = 1_700_000_000


def _log() -> n.Ed25519Signer:
    return n.Ed25519Signer(ORIGIN, b"\x01" * 32)


def _witness(i: int, clock: int = NOW) -> c.CosignatureSigner:
    return c.CosignatureSigner(f"witness{i}.example", bytes([0x40 + i]) * 32, lambda: clock)


def _body(size: int = 8) -> bytes:
    tree = merkle.MemoryTree(merkle.leaf_hash(bytes([i])) for i in range(size))
    return c.Checkpoint(ORIGIN, size, tree.root()).text()


def test_spec_example_body_parses_and_formats_back() -> None:
    cp = c.Checkpoint.parse(SPEC_BODY)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.text() == SPEC_BODY


def test_extension_lines_round_trip() -> None:
    cp = c.Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT, ("ext one", "ext two"))
    assert cp.text().endswith(b"=\next one\next two\n")
    assert c.Checkpoint.parse(cp.text()) == cp


_ROOT = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (f"\n5\n{_ROOT}\n", "origin"),
        (f"a\x01b\n5\n{_ROOT}\n", "origin"),
        (f"o\n01\n{_ROOT}\n", "size: got '01'"),
        (f"o\n00\n{_ROOT}\n", "size"),
        (f"o\n-1\n{_ROOT}\n", "size"),
        (f"o\n+1\n{_ROOT}\n", "size"),
        (f"o\n 1\n{_ROOT}\n", "size"),
        (f"o\n1 \n{_ROOT}\n", "size"),
        (f"o\n\n{_ROOT}\n", "size"),
        (f"o\n0x10\n{_ROOT}\n", "size"),
        (f"o\n18446744073709551616\n{_ROOT}\n", "size: got 18446744073709551616"),
        (f"o\n1\n{_ROOT[:-1]}\n", "base64"),
        (f"o\n1\n{_ROOT[:-4]}\n", "got 30 bytes"),
        (f"o\n1\n{base64.b64encode(bytes(33)).decode()}\n", "got 33 bytes"),
        (f"o\n1\n{_ROOT[:-2]}3=\n", "not canonical"),
        (f"o\n1\n {_ROOT}\n", "base64"),
        (f"o\n1\n{_ROOT}", "final newline"),
        ("o\n1\n", "got 2 lines"),
        (f"o\n1\n{_ROOT}\n\n", "extension line 1"),
        (f"o\n1\n{_ROOT}\next\n\n", "extension line 2"),
    ],
)
def test_malformed_checkpoints_are_refused(text: str, match: str) -> None:
    with pytest.raises(MalformedCheckpoint, match=match):
        c.Checkpoint.parse(text.encode())


def test_checkpoint_values_are_checked_when_built() -> None:
    c.Checkpoint("o", merkle.MAX_TREE_SIZE, bytes(32))
    with pytest.raises(MalformedCheckpoint, match="size"):
        c.Checkpoint("o", merkle.MAX_TREE_SIZE + 1, bytes(32))
    with pytest.raises(MalformedCheckpoint, match="root hash: got 31 bytes"):
        c.Checkpoint("o", 1, bytes(31))
    with pytest.raises(MalformedCheckpoint, match="origin"):
        c.Checkpoint("two\nlines", 1, bytes(32))
    with pytest.raises(MalformedCheckpoint, match="not UTF-8"):
        c.Checkpoint.parse(b"\xff\n1\n" + _ROOT.encode() + b"\n")


def test_expected_origin() -> None:
    c.Checkpoint.parse(_body(), ORIGIN)
    with pytest.raises(
        MalformedCheckpoint, match=re.escape("origin: got 'numbind.fed-test/log', want")
    ):
        c.Checkpoint.parse(_body(), "numbind.other/log")


_LINE = st.text(
    alphabet=st.characters(
        min_codepoint=0x20, max_codepoint=0x2FFF, categories=("L", "M", "N", "P", "S", "Zs")
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(_LINE, st.integers(0, merkle.MAX_TREE_SIZE), st.binary(min_size=32, max_size=32),
       st.lists(_LINE, max_size=3))  # fmt: skip
def test_checkpoint_round_trip(origin: str, size: int, root: bytes, ext: list[str]) -> None:
    cp = c.Checkpoint(origin, size, root, tuple(ext))
    text = cp.text()
    assert c.Checkpoint.parse(text) == cp
    assert c.Checkpoint.parse(text).text() == text
    assert text.split(b"\n")[1] == str(size).encode()


def test_cosigned_message_is_the_specs_bytes() -> None:
    want = b"cosignature/v1\ntime 1679315147\n" + SPEC_BODY
    assert c.cosigned_message(SPEC_BODY, 1679315147) == want
    w = _witness(1)
    cosig = w.cosign(SPEC_BODY, 1679315147)
    # Checked with the Ed25519 library directly over the spec's message.
    nacl.signing.VerifyKey(w.verifier.public_key).verify(want, cosig.signature)
    raw = base64.b64decode(cosig.note_signature().line().split(b" ")[-1])
    assert raw[:4] == w.key_id.to_bytes(4, "big")
    assert raw[4:12] == (1679315147).to_bytes(8, "big")
    assert raw[12:] == cosig.signature and len(raw) == 4 + 8 + 64


def test_witness_key_id_uses_the_cosignature_algorithm_byte() -> None:
    w = _witness(1)
    pub = w.verifier.public_key
    want = hashlib.sha256(b"witness1.example\n\x04" + pub).digest()[:4]
    assert w.key_id.to_bytes(4, "big") == want
    # The same key as a plain note key has another id: the type byte is part of it.
    assert n.Ed25519Verifier("witness1.example", pub).key_id != w.key_id


def test_spec_cosignature_line_carries_the_specs_timestamp() -> None:
    _, sigs = n.split_note(SPEC_BODY + b"\n" + SPEC_COSIGNATURE_LINE.encode())
    cosig = c.Cosignature.from_signature(sigs[0])
    assert cosig.witness == "witness.example.com/w1"
    assert cosig.timestamp == 1679315147  # the "time" line of the spec's example message
    assert len(cosig.signature) == 64


def test_witness_keys_round_trip_and_are_typed() -> None:
    w = c.CosignatureSigner.generate("w.example")
    assert c.CosignatureSigner.parse(w.skey()).verifier == w.verifier
    vkey = w.verifier.vkey()
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == 0x04
    assert c.CosignatureVerifier.parse(vkey) == w.verifier
    # A plain Ed25519 note key (type 0x01) is not a witness key, and vice versa.
    log = _log()
    with pytest.raises(MalformedKey, match="type 0x01, want 0x04"):
        c.CosignatureVerifier.parse(log.verifier.vkey())
    with pytest.raises(MalformedKey, match="type 0x04, want 0x01"):
        n.Ed25519Verifier.parse(vkey)
    # An Ed25519 note signer key may be reused for cosigning, under the 0x04 key id.
    reused = c.CosignatureSigner.parse(log.skey())
    assert reused.verifier.public_key == log.verifier.public_key
    assert reused.key_id != log.key_id
    name, kid, alg, seed = n.parse_signer_key(w.skey())
    with pytest.raises(MalformedKey, match="key id"):
        c.CosignatureSigner.parse(n.format_signer_key(name, kid ^ 1, alg, seed))
    with pytest.raises(MalformedKey, match="key id"):
        c.CosignatureVerifier.parse(
            n.format_verifier_key(name, kid ^ 1, 0x04, w.verifier.public_key)
        )
    assert "PRIVATE" not in repr(w)


def _witnessed(body: bytes, *witnesses: c.CosignatureSigner) -> bytes:
    return n.sign_note(body, _log(), *witnesses)


def test_witnessed_checkpoint_round_trip() -> None:
    w1, w2 = _witness(1, NOW - 5), _witness(2, NOW - 3)
    body = _body(8)
    data = _witnessed(body, w1, w2)
    policy = c.WitnessPolicy.all_of([w1.verifier, w2.verifier])
    got = c.open_checkpoint(data, _log().verifier, policy, now=NOW)
    assert got.text == body
    assert got.checkpoint == c.Checkpoint.parse(body)
    assert [(x.witness, x.timestamp) for x in got.cosignatures] == [
        ("witness1.example", NOW - 5),
        ("witness2.example", NOW - 3),
    ]


def test_a_witness_adds_its_cosignature_to_the_logs_note() -> None:
    body, w1 = _body(5), _witness(1)
    logged = n.sign_note(body, _log())
    seen = c.open_checkpoint(logged, _log().verifier, c.WitnessPolicy.none())
    cosig = w1.cosign(seen.text, NOW)
    data = n.add_signatures(logged, [cosig.note_signature()])
    got = c.open_checkpoint(data, _log().verifier, c.WitnessPolicy.all_of([w1.verifier]))
    assert got.cosignatures == (cosig,)


def test_a_cosignature_from_an_unknown_witness_does_not_count() -> None:
    w1, w2, stranger = _witness(1), _witness(2), _witness(9)
    data = _witnessed(_body(), w1, stranger)
    policy = c.WitnessPolicy.all_of([w1.verifier, w2.verifier])
    with pytest.raises(QuorumNotMet, match="1 of 2 witnesses cosigned") as err:
        c.open_checkpoint(data, _log().verifier, policy)
    assert err.value.missing == ("witness2.example",)
    assert "witness2.example (no cosignature)" in err.value.message


def test_a_cosignature_over_another_checkpoint_is_refused() -> None:
    w1 = _witness(1)
    stale = w1.cosign(_body(7), NOW)
    data = n.add_signatures(n.sign_note(_body(8), _log()), [stale.note_signature()])
    with pytest.raises(
        BadSignature, match=r"witness1\.example.*does not verify over this checkpoint"
    ):
        c.open_checkpoint(data, _log().verifier, c.WitnessPolicy.all_of([w1.verifier]))


def test_k_of_n_policy() -> None:
    w = [_witness(i) for i in range(1, 4)]
    two_of_three = c.WitnessPolicy(tuple(x.verifier for x in w), 2)
    c.open_checkpoint(_witnessed(_body(), w[0], w[2]), _log().verifier, two_of_three)
    with pytest.raises(QuorumNotMet, match="1 of 3 witnesses cosigned, policy wants 2") as err:
        c.open_checkpoint(_witnessed(_body(), w[1]), _log().verifier, two_of_three)
    assert err.value.missing == ("witness1.example", "witness3.example")
    c.open_checkpoint(_witnessed(_body()), _log().verifier, c.WitnessPolicy.none())


def test_policy_is_validated() -> None:
    w1, w2 = _witness(1).verifier, _witness(2).verifier
    with pytest.raises(MalformedKey, match=re.escape("quorum: got 3, want 0..2")):
        c.WitnessPolicy((w1, w2), 3)
    with pytest.raises(MalformedKey, match="each witness once"):
        c.WitnessPolicy((w1, w1), 1)
    same_key = c.CosignatureVerifier("other.example", w1.public_key)
    with pytest.raises(MalformedKey, match="its own key"):
        c.WitnessPolicy((w1, same_key), 1)


def test_a_cosignature_dated_in_the_future_does_not_count() -> None:
    w1 = _witness(1, NOW + 3600)
    data = _witnessed(_body(), w1)
    policy = c.WitnessPolicy.all_of([w1.verifier])
    c.open_checkpoint(data, _log().verifier, policy)
    with pytest.raises(QuorumNotMet, match="dated 3600 s ahead"):
        c.open_checkpoint(data, _log().verifier, policy, now=NOW)


def test_a_checkpoint_signed_by_an_unknown_key_is_refused() -> None:
    w1 = _witness(1)
    rogue = n.Ed25519Signer(ORIGIN, b"\x66" * 32)
    policy = c.WitnessPolicy.all_of([w1.verifier])
    with pytest.raises(NoKnownSignature, match="no signature from a known key"):
        c.open_checkpoint(n.sign_note(_body(), rogue), _log().verifier, policy)
    # Witnessed, but not by the log: the witness's signature alone is not enough.
    with pytest.raises(NoKnownSignature, match="no signature by the log key"):
        c.open_checkpoint(n.sign_note(_body(), rogue, w1), _log().verifier, policy)


def test_origin_must_be_the_log_key_name() -> None:
    other = c.Checkpoint("numbind.other/log", 1, bytes(32)).text()
    with pytest.raises(MalformedCheckpoint, match=re.escape("want 'numbind.fed-test/log'")):
        c.open_checkpoint(n.sign_note(other, _log()), _log().verifier, c.WitnessPolicy.none())


def test_witnesses_cosign_checkpoints_only() -> None:
    with pytest.raises(MalformedCheckpoint):
        _witness(1).cosign(b"hello\n", NOW)


def test_malformed_cosignatures_are_refused() -> None:
    w1, body = _witness(1), _body()
    policy = c.WitnessPolicy.all_of([w1.verifier])
    # A plain Ed25519 signature (no timestamp) under the witness's key id.
    plain = n.Signature(
        w1.name, w1.key_id, nacl.signing.SigningKey(b"\x41" * 32).sign(body).signature
    )
    with pytest.raises(BadSignature, match="got 64 bytes, want 72"):
        c.open_checkpoint(
            n.add_signatures(n.sign_note(body, _log()), [plain]), _log().verifier, policy
        )
    too_late = n.Signature(w1.name, w1.key_id, (2**63).to_bytes(8, "big") + bytes(64))
    with pytest.raises(BadSignature, match=re.escape("want 0..2^63-1")):
        c.open_checkpoint(
            n.add_signatures(n.sign_note(body, _log()), [too_late]), _log().verifier, policy
        )


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_any_byte_change_to_a_witnessed_checkpoint_is_refused(data: st.DataObject) -> None:
    w1, w2 = _witness(1), _witness(2)
    signed = _witnessed(_body(13), w1, w2)
    policy = c.WitnessPolicy.all_of([w1.verifier, w2.verifier])
    c.open_checkpoint(signed, _log().verifier, policy)
    pos = data.draw(st.integers(0, len(signed) - 1))
    xor = data.draw(st.integers(1, 255))
    changed = signed[:pos] + bytes([signed[pos] ^ xor]) + signed[pos + 1 :]
    with pytest.raises(LogError):
        c.open_checkpoint(changed, _log().verifier, policy)
