"""The carrier app shows the holder a mark per app it asked, and serves that app's proof:
the revocation's trigger and the app's order, each proven in the registry's log under a
checkpoint the app's carrier SDK verified, as JSON anyone can re-check offline."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from numbind.carrier_app.app import AppSettings, create_app
from numbind.carrier_app.store import Store
from numbind.protocol import merkle, note
from numbind.protocol.checkpoint import Checkpoint
from numbind.protocol.log_entries import Opening
from numbind.registry.testing import RunningRegistry
from numbind.sdk import CarrierClient, Lifecycle, LifecycleReport, Scope

from tests.e2e._fanout import federation_of_three
from tests.e2e._story import days_ago, publish, take, tokenize
from tests.e2e.test_fanout import seed
from tests.unit.carrier_app_http import ID_NUMBER, PHONE, SECRET, Gateway, serving, sign_in


async def test_the_app_marks_an_asked_app_and_serves_its_verified_proof(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    cm = registry.add_carrier("cm", "示例移动")
    drive = registry.add_platform("drive", "示例网盘", "cloud-drive")
    token = await tokenize(drive, PHONE)
    await publish(drive, token, [(b"own-account", days_ago(100))])
    tenure = datetime.now(UTC) - timedelta(days=400)
    async with CarrierClient(cm) as c:
        await c.report([LifecycleReport(PHONE, Lifecycle.ISSUED, tenure)])
        store = Store(tmp_path / "app.db", SECRET)
        sub = store.enroll(ID_NUMBER, PHONE, tenure)
        (number,) = store.numbers(sub.id)
        rid, orders = await c.revoke(sub.subject, PHONE, tenure, Scope.PLATFORMS, ["drive"])
        assert orders == 1
        store.add_revocation(rid, sub.id, number.id, "platform", ["drive"])

    gateway = Gateway()
    settings = AppSettings(carrier_bundle=cm.directory, db=tmp_path / "app.db", secret=SECRET)
    async with serving(create_app(settings, send_code=gateway)) as http:
        await sign_in(http, gateway)
        me = await http.get("/me")
        assert f'href="/me/proof/{rid}/drive"' in me.text and "已入公开日志" in me.text
        got = await http.get(f"/me/proof/{rid}/drive")
        assert got.status_code == 200, got.text
        assert "attachment" in got.headers["content-disposition"]
        proof = got.json()
        # Someone else's revocation id is not served.
        other = await http.get("/me/proof/0b5c4a1e-8f7a-4c2e-9d3b-1a2b3c4d5e6f/drive")
        assert other.status_code == 404
    kinds = []
    for leaf in proof["leaves"]:
        # Re-check offline: the log's signature over the checkpoint, the inclusion path.
        key = note.Ed25519Verifier.parse(leaf["log_key"])
        opened = note.open_note(leaf["checkpoint"].encode(), [key])
        cp = Checkpoint.parse(opened.text)
        merkle.verify_inclusion(
            merkle.leaf_hash(bytes.fromhex(leaf["leaf"])),
            leaf["leaf_index"],
            cp.size,
            [bytes.fromhex(h) for h in leaf["inclusion_proof"]],
            cp.root_hash,
        )
        if leaf["opening"]:  # the carrier's own entry: the trigger
            o = leaf["opening"]
            entry = Opening(leaf["leaf_index"], bytes.fromhex(o["salt"]), o["body"].encode())
            entry.check(bytes.fromhex(leaf["leaf"]))
            kinds.append(entry.entry()["t"])
        else:
            kinds.append("order")
    assert sorted(kinds) == ["order", "revocation"]
    # A federation of one: the app's order is in the carrier's log, proved here.
    assert len(proof["orders_proved"]) == 1 and proof["orders_in_other_logs"] == []


async def test_in_a_federation_the_proof_names_the_orders_in_the_members_log(
    tmp_path: Path,
) -> None:
    """The app's orders are leaves of its member's log, which the carrier (at the hub)
    cannot open: the file proves the trigger and names those orders, never claims them."""
    async with federation_of_three(tmp_path) as f:
        cm, apps = await seed(f)
        tenure = days_ago(30)
        store = Store(tmp_path / "app.db", SECRET)
        sub = store.enroll(ID_NUMBER, PHONE, tenure)
        (number,) = store.numbers(sub.id)
        async with CarrierClient(cm) as c:
            rid, orders = await c.revoke(sub.subject, PHONE, tenure, Scope.PLATFORMS, ["loan"])
            assert orders == 1
        store.add_revocation(rid, sub.id, number.id, "platform", ["loan"])
        (event,) = await take(apps["loan"], tmp_path / "c-loan", 1)

        gateway = Gateway()
        settings = AppSettings(carrier_bundle=cm.directory, db=tmp_path / "app.db", secret=SECRET)
        async with serving(create_app(settings, send_code=gateway)) as http:
            await sign_in(http, gateway)
            got = await http.get(f"/me/proof/{rid}/loan")
            assert got.status_code == 200, got.text
            proof = got.json()
    # One leaf, the trigger (the carrier's own entry, opened): no order of loan's is here.
    assert [json.loads(leaf["opening"]["body"])["t"] for leaf in proof["leaves"]] == ["revocation"]
    assert proof["orders_proved"] == []
    assert proof["orders_in_other_logs"] == [event.order_id]
