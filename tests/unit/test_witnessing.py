"""Which logs a registry witnesses: every log the manifest names but its own, one witness
per log (a key the manifest changes is a new witness), and one log's failure (no channel
yet, unreachable) never stops another's round."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from numbind.protocol import note
from numbind.protocol.checkpoint import CosignatureSigner
from numbind.protocol.manifest import (
    FederationSetupError,
    generate_federation_key,
    member_log_origin,
    sign_manifest,
)
from numbind.registry.federation.witness import LogSource, Witness
from numbind.registry.federation.witnessing import PeerLogWitnesses
from numbind.registry.pki import CertificateAuthority
from numbind.registry.storage.db import Database

from tests.unit.test_manifest_member_logs import _log, _manifest


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> list[CertificateAuthority]:
    root = tmp_path_factory.mktemp("cas")
    return [CertificateAuthority.create(root / f"ca{i}") for i in range(3)]


class _Down:
    async def checkpoint(self) -> bytes:
        raise OSError("connection refused")


def _witnesses(
    tmp_path: Path, logs: dict[str, str], cas: list[CertificateAuthority], me: str
) -> tuple[PeerLogWitnesses, list[str]]:
    signed = sign_manifest(_manifest(cas, logs, {}), generate_federation_key("demo"))
    asked: list[str] = []

    def source_for(member_id: str) -> LogSource:
        asked.append(member_id)
        if member_id == "m2":
            raise FederationSetupError("no member 'm2' in the manifest")
        return _Down()  # type: ignore[return-value]

    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    signer = CosignatureSigner.generate("numbind.demo/witness/" + me)
    return PeerLogWitnesses(db, signer, lambda: signed, me, source_for), asked


async def test_every_named_log_but_its_own_each_failure_kept_to_its_log(
    tmp_path: Path, cas: list[CertificateAuthority]
) -> None:
    logs = {"hub": _log("numbind.demo/log"), "m2": _log(member_log_origin("demo", "m2"))}
    witnesses, asked = _witnesses(tmp_path, logs, cas, "m1")
    targets = witnesses.targets()
    assert [(mid, w.origin) for mid, w in targets] == [
        ("hub", "numbind.demo/log"),
        ("m2", "numbind.demo/log/m2"),
    ]
    assert [w.verifier.name for _, w in targets] == ["numbind.demo/witness/m1"] * 2
    # Same manifest, same witnesses (their pinned state is per log).
    assert [w for _, w in witnesses.targets()] == [w for _, w in targets]
    # hub unreachable, m2 not dialable yet: both reported, neither raises.
    assert await witnesses.round() == {"hub": False, "m2": False}
    assert sorted(asked) == ["hub", "m2"]


async def test_the_hub_witnesses_members_and_skips_a_log_the_manifest_does_not_name(
    tmp_path: Path, cas: list[CertificateAuthority]
) -> None:
    logs = {"hub": _log("numbind.demo/log"), "m1": _log(member_log_origin("demo", "m1"))}
    witnesses, _ = _witnesses(tmp_path, logs, cas, "hub")
    # m2 named no log key: no key to pin, so nobody witnesses it.
    assert [mid for mid, _ in witnesses.targets()] == ["m1"]
    key = note.Ed25519Verifier.parse(logs["m1"])
    ((_, witness),) = witnesses.targets()
    assert witness.origin == key.name


async def test_a_log_the_manifest_stops_naming_is_let_go(
    tmp_path: Path, cas: list[CertificateAuthority]
) -> None:
    key = generate_federation_key("demo")
    hub_log = _log("numbind.demo/log")
    both = sign_manifest(
        _manifest(cas, {"hub": hub_log, "m2": _log(member_log_origin("demo", "m2"))}, {}), key
    )
    hub_only = sign_manifest(_manifest(cas, {"hub": hub_log}, {}), key)
    current = [both]
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    signer = CosignatureSigner.generate("numbind.demo/witness/m1")
    witnesses = PeerLogWitnesses(
        db,
        signer,
        lambda: current[0],
        "m1",
        lambda _: _Down(),  # type: ignore[arg-type,return-value]
    )
    before = dict(witnesses.targets())
    assert sorted(before) == ["hub", "m2"]
    current[0] = hub_only
    after = dict(witnesses.targets())
    assert list(after) == ["hub"] and after["hub"] is before["hub"]  # same log, same witness
    assert len(witnesses._witnesses) == 1


async def test_a_log_key_the_manifest_changes_is_a_new_witness(
    tmp_path: Path, cas: list[CertificateAuthority]
) -> None:
    key = generate_federation_key("demo")
    current = [sign_manifest(_manifest(cas, {"hub": _log("numbind.demo/log")}, {}), key)]
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    signer = CosignatureSigner.generate("numbind.demo/witness/m1")
    witnesses = PeerLogWitnesses(
        db,
        signer,
        lambda: current[0],
        "m1",
        lambda _: _Down(),  # type: ignore[arg-type,return-value]
    )
    before = dict(witnesses.targets())
    current[0] = sign_manifest(_manifest(cas, {"hub": _log("numbind.demo/log")}, {}), key)
    after = dict(witnesses.targets())
    assert after["hub"] is not before["hub"]  # a new key is witnessed afresh, pinned to it
    assert len(witnesses._witnesses) == 1


async def test_an_outage_is_one_warning_not_one_a_round(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:

    log_key = note.Ed25519Verifier.parse(_log("numbind.demo/log"))
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    witness = Witness(db, CosignatureSigner.generate("numbind.demo/witness/m1"), log_key)
    with caplog.at_level(logging.INFO, logger="numbind.registry.federation.witness"):
        for _ in range(5):
            assert await witness.round(_Down()) is False  # type: ignore[arg-type]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "witness: log numbind.demo/log unreachable (connection refused); retried every round"
    ]
