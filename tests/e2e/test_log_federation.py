"""Members witness the hub's log as they run: each cosigns the hub's checkpoints over its
peer channel under its own witness name, and a client whose policy names the members
accepts a checkpoint only once they have."""

from __future__ import annotations

import asyncio

import pytest
from numbind.protocol.checkpoint import WitnessPolicy
from numbind.protocol.log_entries import canonical
from numbind.registry import operator
from numbind.registry.config import Settings
from numbind.registry.domain.logged import LogLeaf
from numbind.registry.federation.channel import PeerChannels
from numbind.registry.federation.files import FederationDir
from numbind.registry.log_key import load_or_create_witness
from numbind.registry.storage import log
from numbind.sdk.log import LogClient, LogProofError

from tests.e2e._three import MEMBERS, Three, make_three, running


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Three:
    root = tmp_path_factory.mktemp("three")
    three = make_three(root)
    operator.init(Settings(data_dir=root / "rogue"))
    return three


async def test_members_cosign_the_hubs_checkpoints(pristine: Three) -> None:
    async with running(pristine, "hub", *MEMBERS, log_witness_seconds=0.2) as three:
        hub = three.registry("hub")
        leaf = LogLeaf("key", "k", None, canonical({"t": "key", "key_id": "k"}))
        hub.db.transact(lambda s: log.append(s, [leaf, leaf, leaf]))
        files = FederationDir(three.dir("bank"))
        peers = PeerChannels(files, files.require().manifest.members)
        try:
            witnesses = [load_or_create_witness(three.dir(m)).verifier for m in MEMBERS]
            assert [w.name for w in witnesses] == [f"numbind.demo/witness/{m}" for m in MEMBERS]
            client = LogClient(peers.get("hub"), trust=WitnessPolicy.all_of(witnesses))
            for _ in range(100):
                try:
                    cp = await client.checkpoint()
                    break
                except LogProofError as exc:
                    assert exc.failure == "quorum", exc
                    await asyncio.sleep(0.2)
            else:
                pytest.fail("the members never cosigned the hub's checkpoint")
            assert cp.verified.checkpoint.origin == "numbind.demo/log"
            assert cp.size >= 3 and len(cp.verified.cosignatures) == 2
            proved = await client.prove([0, 2], checkpoint=cp)
            assert [p.index for p in proved] == [0, 2]
        finally:
            await peers.close()
