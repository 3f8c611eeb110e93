"""`numbind federation`: a hub and members joined by exchanging files, through cli.main.
Refusals: test_cli_federation_refusals.py."""

from __future__ import annotations

import argparse
import json
import shutil
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from numbind.cli import build_parser
from numbind.protocol import note
from numbind.registry.config import load_settings
from numbind.registry.federation import FederationDir
from numbind.registry.federation import hub as hub_actions
from numbind.registry.keys import KeyRing
from numbind.registry.storage.db import Database

from tests.e2e._federation import (
    BANK_ADDRESS,
    HUB_ADDRESS,
    NET_ADDRESS,
    Dirs,
    cli,
    fed,
    join,
    ok,
    refused,
    show,
    version_of,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Dirs:
    return Dirs.create(tmp_path_factory.mktemp("pristine"))


@pytest.fixture
def dirs(pristine: Dirs, tmp_path: Path) -> Dirs:
    return pristine.copy(tmp_path)


def test_hub_and_members_join_by_exchanging_files(dirs: Dirs) -> None:
    root = dirs.root
    out = fed("init", dirs.hub, "--id", "demo", "--address", HUB_ADDRESS, "--name", "示例码号平台")
    vkey = (dirs.hub / "federation" / "federation.vkey").read_text().strip()
    assert f"federation key:  {vkey}" in out
    assert vkey.startswith("numbind.demo/federation+")
    # A hub already serving takes the federation up only when it restarts: the command says so.
    assert f"next: (re)start `numbind serve --data-dir {dirs.hub}` to serve as the hub" in out

    out = fed(
        "request",
        dirs.bank,
        "--id",
        "bank",
        "--address",
        BANK_ADDRESS,
        "--name",
        "示例金融平台登记",
        "--out",
        root / "bank.req",
    )
    req = json.loads((root / "bank.req").read_text())
    assert req["format"] == "numbind/federation-join-request/v1"
    assert (req["id"], req["address"]) == ("bank", BANK_ADDRESS)
    assert req["ca_pem"] == (dirs.bank / "pki" / "ca.pem").read_text()
    assert "client.key" not in json.dumps(req) and "PRIVATE" not in json.dumps(req)
    fingerprint = out.split("CA SHA-256:")[1].split()[0]

    out = fed("add-member", dirs.hub, root / "bank.req", "--out", root / "bank.grant")
    assert "added member bank" in out and "v2 (2 members)" in out
    grant = json.loads((root / "bank.grant").read_text())
    assert grant["member"] == "bank" and grant["federation_key"] == vkey
    assert grant["hub"] == {
        "id": "hub",
        "address": HUB_ADDRESS,
        "ca_pem": (dirs.hub / "pki" / "ca.pem").read_text(),
    }
    assert grant["manifest"].encode() == (dirs.hub / "federation" / "manifest.note").read_bytes()
    assert "PRIVATE" not in (root / "bank.grant").read_text()

    out = fed("accept", dirs.bank, root / "bank.grant")
    assert "manifest v2" in out and f"pinned key:      {vkey}" in out
    assert f"`numbind serve --data-dir {dirs.bank}` to serve as member bank" in out
    # The member now holds the hub's exact signed bytes and pins the hub's key.
    assert (dirs.bank / "federation" / "manifest.note").read_bytes() == (
        dirs.hub / "federation" / "manifest.note"
    ).read_bytes()
    assert (dirs.bank / "federation" / "federation.vkey").read_text().strip() == vkey
    assert not (dirs.bank / "federation" / "federation.key").exists()

    for data_dir, me in ((dirs.hub, "hub"), (dirs.bank, "bank")):
        report = show(data_dir)
        assert (report["federation"], report["version"], report["this_registry"]) == (
            "demo",
            2,
            me,
        )
        assert report["lifecycle_authority"] == "hub"
        members = {m["id"]: m for m in report["members"]}
        assert members["hub"]["roles"] == ["lifecycle-authority", "token-service"]
        assert members["hub"]["name"] == "示例码号平台"
        assert members["bank"]["roles"] == ["binding-registry"]
        assert members["bank"]["address"] == BANK_ADDRESS
        assert members["bank"]["identity"] == "spiffe://numbind/registry/bank"
        assert members["bank"]["ca_sha256"] == fingerprint
        assert members["bank"]["replication"] == {"position": None, "lag_seconds": None}
        assert [m["id"] for m in report["members"] if m["this_registry"]] == [me]
        assert report["token_service"]["address"] == HUB_ADDRESS

    text = fed("show", dirs.bank)
    row = next(line for line in text.splitlines() if " bank " in line)
    assert row.startswith("*") and row.split()[1:6] == [
        "bank",
        "binding-registry",
        BANK_ADDRESS,
        "n/a",
        "n/a",
    ]

    # The same request again signs nothing; accepting the same grant again changes nothing.
    out = fed("add-member", dirs.hub, root / "bank.req", "--out", root / "bank.grant2")
    assert "nothing signed" in out and version_of(dirs.hub) == 2
    assert (root / "bank.grant2").read_bytes() == (root / "bank.grant").read_bytes()
    assert "already installed" in fed("accept", dirs.bank, root / "bank.grant")

    # A second member: v3. The first member catches up by a fresh grant for its request.
    fed("request", dirs.net, "--id", "net", "--address", NET_ADDRESS, "--out", root / "net.req")
    fed("add-member", dirs.hub, root / "net.req", "--out", root / "net.grant")
    fed("accept", dirs.net, root / "net.grant")
    assert version_of(dirs.hub) == version_of(dirs.net) == 3 and version_of(dirs.bank) == 2
    fed("add-member", dirs.hub, root / "bank.req", "--out", root / "bank.grant3")
    out = fed("accept", dirs.bank, root / "bank.grant3")
    assert "manifest v3 (was v2)" in out and "pinned key" not in out
    assert "restart" not in out  # a running member follows a newer version live
    assert [m["id"] for m in show(dirs.bank)["members"]] == ["bank", "hub", "net"]

    # The old grant is older than what bank holds now: refused, v3 stays.
    refused(
        "accept",
        dirs.bank,
        root / "bank.grant",
        want="version 2 is not newer than the held version 3",
    )
    assert version_of(dirs.bank) == 3


def test_secrets_stay_in_files_with_tight_modes(dirs: Dirs) -> None:
    join(dirs)
    hub_files = FederationDir(dirs.hub)
    assert stat.S_IMODE(hub_files.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(hub_files.peer_key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(FederationDir(dirs.bank).peer_key_path.stat().st_mode) == 0o600
    # The federation key is never in the database.
    skey = hub_files.key_path.read_text().strip()
    seed = note.parse_signer_key(skey)[3]
    db = (dirs.hub / "registry.db").read_bytes()
    assert len(seed) == 32 and seed not in db and skey.encode() not in db


def test_peer_certificates_are_registry_identities_under_own_ca(dirs: Dirs) -> None:
    join(dirs)
    for data_dir, name in ((dirs.hub, "hub"), (dirs.bank, "bank")):
        cert = x509.load_pem_x509_certificate(FederationDir(data_dir).peer_cert_path.read_bytes())
        ca = x509.load_pem_x509_certificate((data_dir / "pki" / "ca.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
            f"spiffe://numbind/registry/{name}"
        ]


def test_remove_member_signs_the_next_version(dirs: Dirs) -> None:
    join(dirs, members=("bank", "net"))
    assert "removed member net; manifest v4" in fed("remove-member", dirs.hub, "net")
    assert [m["id"] for m in show(dirs.hub)["members"]] == ["bank", "hub"]
    assert "is not a member; manifest stays v4" in fed("remove-member", dirs.hub, "net")


def test_refresh_publishes_rotated_token_keys(dirs: Dirs) -> None:
    join(dirs)
    before = show(dirs.bank)["token_service"]
    assert "unchanged: manifest v2" in fed("refresh", dirs.hub)
    db = Database(f"sqlite:///{dirs.hub / 'registry.db'}")
    try:
        ring = KeyRing(db, dirs.hub / "keys")
        db.transact(ring.create_active)
        ring.reload()
        active = ring.active().key_id
    finally:
        db.close()
    assert "signed manifest v3" in fed("refresh", dirs.hub)
    after = show(dirs.hub)["token_service"]
    assert after["active_key_id"] == active != before["active_key_id"]
    assert sorted(after["key_ids"]) == sorted([*before["key_ids"], active])
    fed("refresh", dirs.hub, "--address", "127.0.0.1:18000")
    report = show(dirs.hub)
    assert report["version"] == 4
    assert report["token_service"]["address"] == "127.0.0.1:18000"
    assert [m["address"] for m in report["members"] if m["id"] == "hub"] == ["127.0.0.1:18000"]


def test_show_without_a_federation(dirs: Dirs) -> None:
    assert "a federation of one" in fed("show", dirs.bank)
    assert json.loads(fed("show", dirs.bank, "--json")) == {
        "federation": None,
        "data_dir": str(dirs.bank),
        "log_alarms": [],
    }


def test_init_is_idempotent_and_uses_the_served_address(dirs: Dirs) -> None:
    (dirs.hub / "serving.json").write_text(json.dumps({"address": "127.0.0.1:17999"}))
    fed("init", dirs.hub, "--id", "demo")
    assert show(dirs.hub)["members"][0]["address"] == "127.0.0.1:17999"
    assert "already initialised here (v1)" in fed("init", dirs.hub, "--id", "demo")
    refused("init", dirs.hub, "--id", "other", want="already holds federation demo")


def test_init_warns_when_the_hub_would_strand_its_platforms(dirs: Dirs) -> None:
    ok(
        "admin", "add-platform", "acme", "--display-name", "A", "--category", "other",
        "--data-dir", dirs.hub, "--out", dirs.root / "acme",
    )  # fmt: skip
    result = cli(
        "federation", "init", "--data-dir", dirs.hub, "--id", "demo", "--address", HUB_ADDRESS
    )
    assert result.code == 0, result
    assert "numbind: warning: this registry has 1 platform(s)" in result.err
    assert f"move {dirs.hub / 'federation'} away" in result.err
    # Done that way, the hub keeps them; a hub with no platform hears nothing of it.
    shutil.move(dirs.hub / "federation", dirs.root / "federation-old")
    again = cli(
        "federation", "init", "--data-dir", dirs.hub, "--id", "demo", "--address", HUB_ADDRESS,
        "--binding-registry",
    )  # fmt: skip
    assert again.code == 0 and "warning" not in again.err, again
    assert "binding-registry" in show(dirs.hub)["members"][0]["roles"]
    fresh = cli(
        "federation", "init", "--data-dir", dirs.net, "--id", "other", "--address", NET_ADDRESS
    )
    assert fresh.code == 0 and "platform(s)" not in fresh.err, fresh


def test_every_federation_option_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    fed = sub.choices["federation"]
    fsub = next(a for a in fed._actions if isinstance(a, argparse._SubParsersAction))
    assert set(fsub.choices) == {
        "init",
        "request",
        "add-member",
        "remove-member",
        "refresh",
        "accept",
        "show",
    }
    for name, action_parser in fsub.choices.items():
        for action in action_parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"federation {name}: {action.dest} has no help"


def test_concurrent_add_members_both_land(dirs: Dirs, monkeypatch: pytest.MonkeyPatch) -> None:
    fed("init", dirs.hub, "--id", "demo", "--address", HUB_ADDRESS)
    requests = {"bank": (dirs.bank, BANK_ADDRESS), "net": (dirs.net, NET_ADDRESS)}
    for name, (data_dir, address) in requests.items():
        req = dirs.root / f"{name}.req"
        fed("request", data_dir, "--id", name, "--address", address, "--out", req)
    settings = load_settings({"data_dir": dirs.hub})
    sign_next = hub_actions._sign_next

    def slow_sign_next(*args: Any) -> Any:
        # Widen the window between reading the held version and writing the next one, so
        # two unserialised add-members would both sign v2 and one member would be lost.
        time.sleep(0.2)
        return sign_next(*args)

    monkeypatch.setattr(hub_actions, "_sign_next", slow_sign_next)

    def add(name: str) -> int:
        grant = dirs.root / f"{name}.grant"
        return hub_actions.add_member(settings, dirs.root / f"{name}.req", grant).signed.version

    with ThreadPoolExecutor(max_workers=2) as pool:
        versions = sorted(pool.map(add, ["bank", "net"]))
    assert versions == [2, 3]
    assert [m["id"] for m in show(dirs.hub)["members"]] == ["bank", "hub", "net"]


def test_request_warns_when_the_server_certificate_does_not_name_the_address(
    dirs: Dirs,
) -> None:
    result = cli(
        "federation",
        "request",
        "--data-dir",
        dirs.bank,
        "--id",
        "bank",
        "--address",
        "bank.example:7443",
        "--out",
        dirs.root / "r",
    )
    assert result.code == 0, result
    assert "numbind: warning: the server certificate" in result.err
    assert "does not name bank.example" in result.err
    quiet = cli(
        "federation",
        "request",
        "--data-dir",
        dirs.bank,
        "--id",
        "bank",
        "--address",
        BANK_ADDRESS,
        "--out",
        dirs.root / "r",
    )
    assert quiet.code == 0 and quiet.err == ""
