"""10,000 generated bad inputs across every RPC that takes input, over real gRPC.

One registry (`numbind serve`, SQLite) holds numbers, bindings, an open reissue and its
orders. Hypothesis draws requests for each RPC, every one with at least one named defect
(tests/faults/_bad_inputs.py), and sends them with valid credentials of the role the RPC
is for. Each must get a precise status (never OK, INTERNAL, UNKNOWN, or no answer), and
every table of the database reads the same before and after the RPC's run. Deterministic
(derandomize) and bounded (a fixed number of examples per RPC, no shrinking).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from numbind.protocol.bundle import Bundle, make_client_key_and_csr
from numbind.registry import operator
from numbind.registry.config import Settings
from numbind.sdk import CarrierClient, Lifecycle, LifecycleReport, secure_channel
from numbind.v1 import (
    admin_pb2_grpc,
    carriers_pb2_grpc,
    holders_pb2_grpc,
    platforms_pb2_grpc,
    tokens_pb2_grpc,
)
from sqlalchemy import MetaData, create_engine, select

from tests.e2e._story import days_ago
from tests.faults import _bad_admin_requests as admin_req
from tests.faults import _bad_carrier_requests as carrier_req
from tests.faults import _bad_inputs as bad
from tests.faults import _bad_platform_requests as platform_req
from tests.faults import checker
from tests.faults._procs import Serve, free_port
from tests.faults._world import make_world, read_feed, seed

pytestmark = pytest.mark.slow

TOTAL = 10_000
# Fewer examples while working on the suite (e.g. 0.1); `make test` runs all of them.
SCALE = float(os.environ.get("NUMBIND_FAULTS_FUZZ_SCALE", "1"))
PRECISE = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
STATUSES: Counter[str] = Counter()


@dataclass(frozen=True)
class Rpc:
    role: str
    service: str
    method: str
    strategy: Callable[[bad.Env], st.SearchStrategy[bad.Drawn]]
    share: int  # examples, of TOTAL
    streaming: bool = False


RPCS = {
    r.method: r
    for r in [
        Rpc("platform", "Tokens", "Evaluate", carrier_req.evaluate, 600),
        Rpc("carrier", "Carriers", "ReportLifecycle", carrier_req.report_lifecycle, 700),
        Rpc("carrier", "Holders", "QueryBindings", carrier_req.query_bindings, 600),
        Rpc("carrier", "Holders", "RequestRevocation", carrier_req.request_revocation, 600),
        Rpc("carrier", "Holders", "GetRevocation", carrier_req.get_revocation, 500),
        Rpc("platform", "Platforms", "PublishBindings", platform_req.publish_bindings, 800),
        Rpc("platform", "Platforms", "WithdrawBindings", platform_req.withdraw_bindings, 600),
        Rpc("platform", "Platforms", "GetDigest", platform_req.get_digest, 400),
        Rpc(
            "platform",
            "Platforms",
            "ListBindings",
            lambda env: platform_req.list_bindings(env, "ListBindings"),
            500,
        ),
        Rpc(
            "platform",
            "Platforms",
            "ListRevokedBindings",
            lambda env: platform_req.list_bindings(env, "ListRevokedBindings"),
            400,
        ),
        Rpc("platform", "Platforms", "CheckReassigned", platform_req.check_reassigned, 600),
        Rpc(
            "platform", "Platforms", "StreamEvents", platform_req.stream_events, 150, streaming=True
        ),
        Rpc("platform", "Platforms", "AckEvents", platform_req.ack_events, 700),
        Rpc("admin", "Admin", "RegisterPlatform", admin_req.register_platform, 600),
        Rpc("admin", "Admin", "RegisterCarrier", admin_req.register_carrier, 600),
        Rpc("admin", "Admin", "SetPrincipalSuspended", admin_req.set_suspended, 400),
        Rpc("admin", "Admin", "SetCarrierAttestationKey", admin_req.set_attestation_key, 450),
        Rpc("admin", "Admin", "RotateKey", admin_req.rotate_key, 300),
        Rpc("admin", "Admin", "RetireKey", admin_req.retire_key, 250),
        Rpc("admin", "Admin", "ExportKey", admin_req.export_key, 250),
    ]
}
# GetKeys, ListPrincipals, ListKeys and GetStats take no input: nothing to make bad.
assert sum(r.share for r in RPCS.values()) == TOTAL

STUBS: dict[str, Callable[[grpc.Channel], Any]] = {
    "Tokens": tokens_pb2_grpc.TokensStub,
    "Carriers": carriers_pb2_grpc.CarriersStub,
    "Holders": holders_pb2_grpc.HoldersStub,
    "Platforms": platforms_pb2_grpc.PlatformsStub,
    "Admin": admin_pb2_grpc.AdminStub,
}


@dataclass
class Target:
    env: bad.Env
    bundles: dict[str, Bundle]
    database_url: str


async def _prepare(settings_: Settings, root: Path, listen: str) -> Target:
    world = make_world(settings_, root, listen, 4, platforms=1, accounts_per_platform=2)
    other = operator.add_principal(
        settings_, "carrier", "ct", root / "carrier-ct", display_name="ct", registry_address=listen
    )
    assert other.principal_id == "ct"
    await seed(world)
    async with CarrierClient(world.carrier) as carrier:
        summary = await carrier.report(
            [LifecycleReport(world.phones[0], Lifecycle.REISSUED, days_ago(1))]
        )
        tokens = await carrier.tokenize(world.phones)
    platform = world.platforms["p0"]
    events = await read_feed(platform)
    assert events and summary.revocation_ids
    env = bad.Env(
        key_id=tokens[0].key_id,
        tokens=[t.token for t in tokens],
        carrier_id=world.carrier.principal_id,
        other_carrier_id="ct",
        platform_id=platform.principal_id,
        signing_key=world.carrier.attestation_signing_key(),
        order_ids=[e.order_id for e in events],
        revocation_id=summary.revocation_ids[0],
        csr_pem=make_client_key_and_csr("fuzz")[1].decode(),
        feed_head=max(e.seq for e in events),
    )
    admin = Bundle.load(settings_.data_dir / operator.ADMIN_BUNDLE)
    bundles = {"admin": admin, "carrier": world.carrier, "platform": platform}
    return Target(env, bundles, settings_.effective_database_url)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("bad-inputs")
    listen = f"127.0.0.1:{free_port()}"
    settings_ = Settings(data_dir=root / "data", listen=listen)
    operator.init(settings_, registry_address=listen)
    # The registry's "listening on" line is at INFO; per-call noise is not needed.
    serve = Serve(settings_, root / "serve.log")
    try:
        serve.start()
        yield asyncio.run(_prepare(settings_, root, listen))
    finally:
        serve.stop()


def snapshot(url: str) -> dict[str, list[str]]:
    """Every table's rows, as text, sorted: the database's content."""
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {
                name: sorted(repr(tuple(row)) for row in conn.execute(select(table)))
                for name, table in sorted(meta.tables.items())
            }
    finally:
        engine.dispose()


def _stream(stub: Any, request: Message) -> tuple[grpc.StatusCode, str]:
    try:
        # A refused stream ends at once; one that was accepted would send a heartbeat or
        # events (or nothing before the deadline).
        for _ in stub.StreamEvents(request, timeout=0.5):
            return grpc.StatusCode.OK, "stream accepted"
        return grpc.StatusCode.OK, "stream ended without a status"
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""


def _outcome(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        call.result()
        return grpc.StatusCode.OK, "accepted"
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""


# Calls in flight at once: the registry works on some while the next ones are drawn.
IN_FLIGHT = 16


@pytest.mark.parametrize("name", list(RPCS))
def test_bad_inputs_get_a_precise_status_and_write_nothing(target: Target, name: str) -> None:
    rpc = RPCS[name]
    before = snapshot(target.database_url)
    wrong: Counter[tuple[str, str]] = Counter()
    examples: dict[tuple[str, str], str] = {}
    sent = Counter[str]()

    def tally(defect: str, code: grpc.StatusCode, details: str) -> None:
        sent[code.name] += 1
        if code not in PRECISE or not details:
            wrong[(defect, code.name)] += 1
            examples.setdefault((defect, code.name), details[:160])

    with secure_channel(target.bundles[rpc.role], aio=False) as channel:
        stub = STUBS[rpc.service](channel)
        in_flight: deque[tuple[str, Any]] = deque()

        @settings(
            max_examples=max(1, int(rpc.share * SCALE)),
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(rpc.strategy(target.env))
        def send(drawn: bad.Drawn) -> None:
            defect, request = drawn
            if rpc.streaming:
                tally(defect, *_stream(stub, request))
                return
            in_flight.append((defect, getattr(stub, rpc.method).future(request, timeout=60)))
            while len(in_flight) > IN_FLIGHT:
                defect, call = in_flight.popleft()
                tally(defect, *_outcome(call))

        send()
        while in_flight:
            defect, call = in_flight.popleft()
            tally(defect, *_outcome(call))

    STATUSES.update(sent)
    checker.record_bad_inputs("bad inputs over gRPC", sum(STATUSES.values()), STATUSES)
    after = snapshot(target.database_url)
    changed = [t for t in before if before[t] != after.get(t)]
    report = "\n".join(
        f"  {n:5d} x {defect} -> {code}: {examples[(defect, code)]!r}"
        for (defect, code), n in wrong.most_common()
    )
    assert not wrong, f"{name}: {sum(wrong.values())} of {sum(sent.values())} imprecise:\n{report}"
    assert not changed, f"{name}: bad inputs changed tables {changed}"
    assert sum(sent.values()) >= int(rpc.share * SCALE) * 0.9
