"""How long an SDK call may go on when the registry is not there: a one-off read of the event
feed gives up like any other call, a follower keeps trying, and ``rpc_timeout`` bounds one
try of a CarrierClient's calls as it does a PlatformClient's.

Nothing here starts a registry: a port with nothing on it refuses every connection, and a
listener that accepts and never answers stands for a stopped registry or a black hole.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from numbind.protocol.bundle import Bundle, make_client_key_and_csr
from numbind.registry.pki import CertificateAuthority, PrincipalId
from numbind.sdk import CarrierClient, PlatformClient
from numbind.sdk.carrier_model import Lifecycle, LifecycleReport
from numbind.sdk.errors import ErrorCode, Unavailable
from numbind.sdk.retry import RetryPolicy

# Each of these calls ends in well under a second; the bound only proves that it ends.
ENDS_WITHIN = 30.0
QUICK = RetryPolicy(attempts=3, base=0.01, cap=0.05)


def _bundle(ca: CertificateAuthority, directory: Path, role: str, registry: str) -> Bundle:
    key_pem, csr_pem = make_client_key_and_csr(role)
    return Bundle.write(
        directory,
        registry=registry,
        role=role,  # type: ignore[arg-type]
        principal_id=role,
        ca_pem=ca.cert_pem,
        cert_pem=ca.sign_csr(csr_pem, PrincipalId(role, role)),  # type: ignore[arg-type]
        key_pem=key_pem,
        attestation_seed=bytes(32) if role == "carrier" else None,
    )


@pytest.fixture
def refused() -> str:
    """An address nothing listens on (a port the kernel just gave out, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
async def silent() -> AsyncIterator[str]:
    """An address that accepts connections and never says anything."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()


async def _drain(client: PlatformClient, follow: bool, cursor: Path) -> int:
    return len([e async for e in client.events(follow=follow, cursor_file=cursor)])


async def test_a_one_off_read_of_the_feed_gives_up_when_nothing_listens(
    ca: CertificateAuthority, tmp_path: Path, refused: str
) -> None:
    bundle = _bundle(ca, tmp_path / "p", "platform", refused)
    started = time.monotonic()
    async with PlatformClient(bundle, retry=QUICK) as client:
        with pytest.raises(Unavailable) as err:
            await asyncio.wait_for(_drain(client, False, tmp_path / "c"), ENDS_WITHIN)
        assert client.feed is not None and client.feed.reconnects == QUICK.attempts - 1
    assert err.value.code == ErrorCode.UNAVAILABLE
    assert time.monotonic() - started < ENDS_WITHIN


async def test_a_one_off_read_of_the_feed_gives_up_on_a_registry_that_never_answers(
    ca: CertificateAuthority, tmp_path: Path, silent: str
) -> None:
    bundle = _bundle(ca, tmp_path / "p", "platform", silent)
    async with PlatformClient(bundle, retry=QUICK, rpc_timeout=0.3) as client:
        with pytest.raises(Unavailable) as err:
            await asyncio.wait_for(_drain(client, False, tmp_path / "c"), ENDS_WITHIN)
    assert err.value.code == ErrorCode.DEADLINE_EXCEEDED


async def test_a_follower_keeps_reconnecting_whatever_the_clients_retry_policy(
    ca: CertificateAuthority, tmp_path: Path, refused: str
) -> None:
    bundle = _bundle(ca, tmp_path / "p", "platform", refused)
    async with PlatformClient(bundle, retry=QUICK) as client:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(_drain(client, True, tmp_path / "c"), 2.0)
        assert client.feed is not None and client.feed.reconnects >= QUICK.attempts


async def test_carrier_client_rpc_timeout_bounds_each_try(
    ca: CertificateAuthority, tmp_path: Path, silent: str
) -> None:
    bundle = _bundle(ca, tmp_path / "c", "carrier", silent)
    once = RetryPolicy(attempts=1)
    now = datetime.now(UTC)
    async with CarrierClient(bundle, retry=once, rpc_timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable) as err:
            await asyncio.wait_for(client.revocation_status("r1"), ENDS_WITHIN)
        assert err.value.code == ErrorCode.DEADLINE_EXCEEDED
        # 0.3 s, not the 30 s this call waits by default.
        assert time.monotonic() - started < 10
        # A report tokenises first: the token service's calls are bounded the same way.
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await client.report([LifecycleReport("13800138000", Lifecycle.REISSUED, now)])
        assert time.monotonic() - started < 10
