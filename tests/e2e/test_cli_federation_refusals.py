"""`numbind federation` refusals: one clear line for a wrong step, a tampered or foreign
grant, and nothing changed by any of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from numbind.registry.federation import FederationDir

from tests.e2e._federation import (
    BANK_ADDRESS,
    HUB_ADDRESS,
    NET_ADDRESS,
    Dirs,
    fed,
    join,
    refused,
    version_of,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Dirs:
    return Dirs.create(tmp_path_factory.mktemp("pristine"))


@pytest.fixture
def dirs(pristine: Dirs, tmp_path: Path) -> Dirs:
    return pristine.copy(tmp_path)


def test_refusals_are_one_clear_line_and_change_nothing(dirs: Dirs, tmp_path: Path) -> None:
    root = dirs.root
    refused("add-member", dirs.hub, root / "none.req", "--out", root / "g", want="cannot read it")
    join(dirs)
    hub_before = (dirs.hub / "federation" / "manifest.note").read_bytes()

    # net asks for bank's id, then for bank's address.
    fed("request", dirs.net, "--id", "bank", "--address", NET_ADDRESS, "--out", root / "dup-id.req")
    refused(
        "add-member",
        dirs.hub,
        root / "dup-id.req",
        "--out",
        root / "g",
        want="member id bank is already in federation demo",
    )
    fed(
        "request",
        dirs.net,
        "--id",
        "net",
        "--address",
        BANK_ADDRESS,
        "--out",
        root / "dup-addr.req",
    )
    refused(
        "add-member",
        dirs.hub,
        root / "dup-addr.req",
        "--out",
        root / "g",
        want=f"address {BANK_ADDRESS} is already member bank's",
    )
    # bank's CA under another id: one CA per member.
    fed(
        "request",
        dirs.bank,
        "--id",
        "bank",
        "--address",
        BANK_ADDRESS,
        "--out",
        root / "bank-again.req",
    )
    same_ca = json.loads((root / "bank-again.req").read_text())
    same_ca.update(id="bank2", address=NET_ADDRESS)
    (root / "same-ca.req").write_text(json.dumps(same_ca))
    refused(
        "add-member",
        dirs.hub,
        root / "same-ca.req",
        "--out",
        root / "g",
        want="already member bank's; each member needs its own CA",
    )
    (root / "junk.req").write_text('{"format": "numbind/federation-join-request/v1", "id": 1}')
    refused("add-member", dirs.hub, root / "junk.req", "--out", root / "g", want="fields: got")
    assert (dirs.hub / "federation" / "manifest.note").read_bytes() == hub_before
    assert not (root / "g").exists()

    # Hub-only and member-only actions in the wrong place.
    refused("accept", dirs.hub, root / "bank.grant", want="it is the hub")
    refused("remove-member", dirs.hub, "hub", want="cannot remove its hub")
    refused("remove-member", dirs.bank, "bank", want="not its hub; run this on the hub")
    refused(
        "init",
        dirs.bank,
        "--id",
        "other",
        "--address",
        BANK_ADDRESS,
        want="already holds federation demo as member bank",
    )
    refused(
        "request",
        dirs.hub,
        "--id",
        "hub",
        "--address",
        HUB_ADDRESS,
        "--out",
        root / "r",
        want="the hub adds members",
    )
    refused(
        "init",
        tmp_path / "empty",
        "--id",
        "x",
        "--address",
        HUB_ADDRESS,
        want="run `numbind admin init",
    )
    refused("init", dirs.net, "--id", "x", want="pass --address HOST:PORT (or record it once")
    refused("init", dirs.net, "--id", "Bad", "--address", HUB_ADDRESS, want="--id: got 'Bad'")
    refused(
        "request",
        dirs.net,
        "--id",
        "net",
        "--address",
        "nohost",
        "--out",
        root / "r",
        want="address: got 'nohost'",
    )


def _tamper_grant(src: Path, dest: Path) -> None:
    grant = json.loads(src.read_text())
    note_text = grant["manifest"]
    i = note_text.index('"version":') + len('"version":')
    grant["manifest"] = note_text[:i] + "9" + note_text[i + 1 :]
    dest.write_text(json.dumps(grant))


def test_tampered_or_foreign_grants_are_refused_and_the_held_manifest_stays(
    dirs: Dirs, tmp_path: Path
) -> None:
    root = dirs.root
    join(dirs)
    held = (dirs.bank / "federation" / "manifest.note").read_bytes()

    _tamper_grant(root / "bank.grant", root / "tampered.grant")
    refused("accept", dirs.bank, root / "tampered.grant", want="does not verify")

    grant = json.loads((root / "bank.grant").read_text())
    grant["hub"]["address"] = "127.0.0.1:1"
    (root / "hub-moved.grant").write_text(json.dumps(grant))
    refused(
        "accept",
        dirs.bank,
        root / "hub-moved.grant",
        want="hub.address disagree with the signed manifest",
    )

    # Another federation's hub grants bank membership: its key is not the pinned one.
    other = Dirs.create(tmp_path / "other")
    fed("init", other.hub, "--id", "rival", "--address", HUB_ADDRESS)
    fed(
        "request", dirs.bank, "--id", "bank", "--address", BANK_ADDRESS, "--out", root / "rival.req"
    )
    fed("add-member", other.hub, root / "rival.req", "--out", root / "rival.grant")
    refused(
        "accept",
        dirs.bank,
        root / "rival.grant",
        want="but this registry pinned numbind.demo/federation",
    )
    assert (dirs.bank / "federation" / "manifest.note").read_bytes() == held

    # A grant for bank installed on net (another CA): refused before anything is written.
    refused("accept", dirs.net, root / "bank.grant", want="names another CA for bank")
    assert not FederationDir(dirs.net).is_installed()
    assert not FederationDir(dirs.net).pin_path.exists()

    # First accept with --expect-key: only the key agreed out of band.
    fed("request", dirs.net, "--id", "net", "--address", NET_ADDRESS, "--out", root / "net.req")
    fed("add-member", dirs.hub, root / "net.req", "--out", root / "net.grant")
    rival_key = (other.hub / "federation" / "federation.vkey").read_text().strip()
    refused(
        "accept",
        dirs.net,
        root / "net.grant",
        "--expect-key",
        rival_key,
        want="is not the expected",
    )
    assert not FederationDir(dirs.net).is_installed()
    demo_key = (dirs.hub / "federation" / "federation.vkey").read_text().strip()
    fed("accept", dirs.net, root / "net.grant", "--expect-key", demo_key)
    assert version_of(dirs.net) == 3

    # A manifest file edited on disk is refused when read, not trusted.
    path = dirs.bank / "federation" / "manifest.note"
    path.write_bytes(path.read_bytes().replace(b'"version":2', b'"version":7'))
    refused("show", dirs.bank, want="does not verify")
