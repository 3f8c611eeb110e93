"""Token service and Tokenizer over real gRPC with mTLS."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict, Unpack

import grpc
import pytest
from numbind.cli import main as cli_main
from numbind.protocol import voprf
from numbind.protocol.bundle import Bundle
from numbind.registry.api.types import Ctx
from numbind.registry.config import QuotaSettings
from numbind.registry.testing import RunningRegistry, running_registry
from numbind.sdk import errors
from numbind.sdk.channel import secure_channel
from numbind.sdk.phone import InvalidNumber
from numbind.sdk.tokenizer import Tokenizer, TokenResult
from numbind.v1 import admin_pb2, admin_pb2_grpc, tokens_pb2, tokens_pb2_grpc

from tests.e2e._rekey import wait_rekeyed

NUMBERS = ["+8613800138000", "13912345678", "+1 650-253-0000", "+44 20 7946 0958"]
E164 = ["+8613800138000", "+8613912345678", "+16502530000", "+442079460958"]


class _TokenizerOptions(TypedDict, total=False):
    key_id: str | None
    batch_size: int
    in_flight: int
    workers: int | None
    processes: bool


async def _tokens(
    bundle: Bundle, numbers: Sequence[str], **kw: Unpack[_TokenizerOptions]
) -> list[TokenResult]:
    async with secure_channel(bundle) as channel:
        tok = Tokenizer(channel, **kw)
        try:
            return await tok.tokenize(numbers)
        finally:
            tok.close()


async def test_same_number_same_token_across_platforms(registry: RunningRegistry) -> None:
    a = await _tokens(registry.add_platform("alpha"), NUMBERS)
    b = await _tokens(registry.add_platform("beta"), list(reversed(NUMBERS)))
    assert [r.e164 for r in a] == E164
    assert [r.token for r in a] == [r.token for r in reversed(b)]
    assert len({r.token for r in a}) == len(NUMBERS)
    assert all(len(r.token) == 32 for r in a)
    # The token is the unblinded element k*HashToGroup(E.164) under the server's key.
    key = registry.registry.keys.active()
    assert key.secret is not None
    assert a[0].token == voprf.evaluate_element(key.secret, E164[0].encode(), voprf.MODE_VOPRF)


async def test_tokens_differ_across_keys_and_old_key_still_evaluates(
    registry: RunningRegistry,
) -> None:
    bundle = registry.add_platform("alpha")
    old = await _tokens(bundle, NUMBERS)
    async with secure_channel(registry.admin_bundle) as channel:
        rotated = await admin_pb2_grpc.AdminStub(channel).RotateKey(
            admin_pb2.RotateKeyRequest(request_id="rotate-1")
        )
    new = await _tokens(bundle, NUMBERS)
    assert new[0].key_id == rotated.key.key_id != old[0].key_id
    assert not {r.token for r in old} & {r.token for r in new}
    assert await _key_states(bundle) == {
        rotated.key.key_id: tokens_pb2.KEY_STATE_ACTIVE,
        old[0].key_id: tokens_pb2.KEY_STATE_EVALUATE_ONLY,
    }
    # EVALUATE_ONLY: re-tokenising under the old key still works and matches.
    again = await _tokens(bundle, NUMBERS, key_id=old[0].key_id)
    assert [r.token for r in again] == [r.token for r in old]
    # Retiring is refused while the rotation's re-key runs (even over an empty store).
    await wait_rekeyed(registry)
    async with secure_channel(registry.admin_bundle) as channel:
        await admin_pb2_grpc.AdminStub(channel).RetireKey(
            admin_pb2.RetireKeyRequest(request_id="retire-1", key_id=old[0].key_id)
        )
    with pytest.raises(errors.Refused, match="not a live key"):
        await _tokens(bundle, NUMBERS, key_id=old[0].key_id)
    assert await _key_states(bundle) == {rotated.key.key_id: tokens_pb2.KEY_STATE_ACTIVE}


async def _key_states(bundle: Bundle) -> dict[str, tokens_pb2.KeyState.ValueType]:
    async with secure_channel(bundle) as channel:
        keys = await tokens_pb2_grpc.TokensStub(channel).GetKeys(tokens_pb2.GetKeysRequest())
    return {k.key_id: k.state for k in keys.keys}


async def test_export_key_is_admin_only_and_returns_the_secret(
    registry: RunningRegistry,
) -> None:
    key = registry.registry.keys.active()
    async with secure_channel(registry.add_platform("alpha")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin_pb2_grpc.AdminStub(channel).ExportKey(
                admin_pb2.ExportKeyRequest(key_id=key.key_id)
            )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    out = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "numbind.cli",
        "admin",
        "export-key",
        "--data-dir",
        str(registry.settings.data_dir),
        "--json",
        key.key_id,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await out.communicate()
    assert out.returncode == 0, stderr
    assert b"WARNING" in stderr
    exported = bytes.fromhex(json.loads(stdout)["secret_scalar"])
    assert voprf.public_key(exported) == key.public_key


async def test_pipelined_batches_keep_input_order(registry: RunningRegistry) -> None:
    bundle = registry.add_platform("alpha")
    numbers = [f"+86138{i:08d}" for i in range(2500)]
    batched = await _tokens(bundle, numbers, batch_size=300, in_flight=4)
    single = await _tokens(bundle, numbers[-5:], batch_size=1)
    assert [r.e164 for r in batched] == numbers
    assert [r.token for r in batched[-5:]] == [r.token for r in single]


async def test_tokens_in_worker_processes_equal_tokens_in_threads(
    registry: RunningRegistry,
) -> None:
    bundle = registry.add_platform("alpha")
    numbers = [f"+86138{i:08d}" for i in range(50)]
    threads = await _tokens(bundle, numbers, batch_size=20)
    procs = await _tokens(bundle, numbers, batch_size=20, processes=True, workers=2)
    assert [r.token for r in procs] == [r.token for r in threads]


async def test_invalid_number_is_rejected_by_position_without_echo(
    registry: RunningRegistry,
) -> None:
    bundle = registry.add_platform("alpha")
    with pytest.raises(InvalidNumber) as err:
        await _tokens(bundle, ["+8613800138000", "12345", "+8613800138001"])
    assert err.value.position == 2 and str(err.value).startswith("number 2: ")
    assert "12345" not in str(err.value)


class _LyingTokens(tokens_pb2_grpc.TokensServicer):
    """Advertises key A, evaluates under key B (a registry partitioning its clients)."""

    def __init__(self) -> None:
        self.sk_a, self.pk_a = voprf.generate_key_pair()
        self.sk_b, self.pk_b = voprf.generate_key_pair()

    async def GetKeys(
        self, request: tokens_pb2.GetKeysRequest, context: Ctx
    ) -> tokens_pb2.GetKeysResponse:
        key = tokens_pb2.KeyInfo(
            key_id="0123456789abcdef", public_key=self.pk_a, state=tokens_pb2.KEY_STATE_ACTIVE
        )
        return tokens_pb2.GetKeysResponse(
            suite=voprf.SUITE_ID, active_key_id=key.key_id, keys=[key]
        )

    async def Evaluate(
        self, request: tokens_pb2.EvaluateRequest, context: Ctx
    ) -> tokens_pb2.EvaluateResponse:
        evaluated, proof = voprf.voprf_blind_evaluate(
            self.sk_b, self.pk_b, list(request.blinded_elements)
        )
        return tokens_pb2.EvaluateResponse(
            key_id=request.key_id, evaluated_elements=evaluated, proof=proof
        )


async def test_sdk_refuses_evaluation_under_another_key() -> None:
    server = grpc.aio.server()
    tokens_pb2_grpc.add_TokensServicer_to_server(_LyingTokens(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            tok = Tokenizer(channel)
            with pytest.raises(errors.ProofError, match="failed verification"):
                await tok.tokenize(["+8613800138000"])
            tok.close()
    finally:
        await server.stop(None)


class _RotatingLiar(tokens_pb2_grpc.TokensServicer):
    """Honest under key A, then announces a rotation to key B, publishes B, and evaluates
    under yet another key: following a rotation must not weaken the proof check."""

    def __init__(self) -> None:
        self.keys = {name: voprf.generate_key_pair() for name in ("a", "b", "c")}
        self.active = "a"

    def _info(self, name: str) -> tokens_pb2.KeyInfo:
        return tokens_pb2.KeyInfo(
            key_id=name * 16, public_key=self.keys[name][1], state=tokens_pb2.KEY_STATE_ACTIVE
        )

    async def GetKeys(
        self, request: tokens_pb2.GetKeysRequest, context: Ctx
    ) -> tokens_pb2.GetKeysResponse:
        return tokens_pb2.GetKeysResponse(
            suite=voprf.SUITE_ID, active_key_id=self.active * 16, keys=[self._info(self.active)]
        )

    async def Evaluate(
        self, request: tokens_pb2.EvaluateRequest, context: Ctx
    ) -> tokens_pb2.EvaluateResponse:
        name = request.key_id[0]
        sk, pk = self.keys["c" if name == "b" else name]
        evaluated, proof = voprf.voprf_blind_evaluate(sk, pk, list(request.blinded_elements))
        self.active = "b"  # "rotated" after the first evaluation
        return tokens_pb2.EvaluateResponse(
            key_id=request.key_id,
            evaluated_elements=evaluated,
            proof=proof,
            active_key_id=self.active * 16,
        )


async def test_sdk_follows_a_rotation_but_still_refuses_a_bad_proof() -> None:
    liar = _RotatingLiar()
    server = grpc.aio.server()
    tokens_pb2_grpc.add_TokensServicer_to_server(liar, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            tok = Tokenizer(channel)
            (first,) = await tok.tokenize(["+8613800138000"])
            assert first.key_id == "a" * 16
            with pytest.raises(errors.ProofError, match=f"under key {'b' * 16}"):
                await tok.tokenize(["+8613800138000"])
            tok.close()
    finally:
        await server.stop(None)


def _bad(elements: list[bytes], key_id: str = "") -> tokens_pb2.EvaluateRequest:
    return tokens_pb2.EvaluateRequest(key_id=key_id, blinded_elements=elements)


async def test_bad_inputs_get_precise_statuses(registry: RunningRegistry) -> None:
    bundle = registry.add_platform("alpha")
    _, good = voprf.blind(b"+8613800138000", voprf.MODE_VOPRF)
    top_bit = bytearray(good)
    top_bit[31] |= 0x80
    p_plus_1 = (2**255 - 19 + 1).to_bytes(32, "little")
    cases = [
        (_bad([good, bytes(32)]), grpc.StatusCode.INVALID_ARGUMENT, "blinded_elements[1]"),
        (_bad([bytes(top_bit)]), grpc.StatusCode.INVALID_ARGUMENT, "blinded_elements[0]"),
        (_bad([good, good, p_plus_1]), grpc.StatusCode.INVALID_ARGUMENT, "blinded_elements[2]"),
        (_bad([good[:31]]), grpc.StatusCode.INVALID_ARGUMENT, "blinded_elements[0]"),
        (_bad([good] * 4097), grpc.StatusCode.INVALID_ARGUMENT, "4097"),
        (_bad([]), grpc.StatusCode.INVALID_ARGUMENT, "got 0"),
        (_bad([good], "ffffffffffffffff"), grpc.StatusCode.NOT_FOUND, "key_id"),
    ]
    async with secure_channel(bundle) as channel:
        stub = tokens_pb2_grpc.TokensStub(channel)
        for request, code, needle in cases:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Evaluate(request)
            assert err.value.code() == code, needle
            assert needle in (err.value.details() or ""), err.value.details()
        await stub.Evaluate(_bad([good, good]))  # two good elements, for contrast
    # Refused batches were neither evaluated nor counted: only the good pair is.
    stats = await _stats(registry)
    assert [(u.principal_id, u.tokens_evaluated) for u in stats.usage] == [("alpha", 2)]


async def _stats(registry: RunningRegistry) -> admin_pb2.GetStatsResponse:
    async with secure_channel(registry.admin_bundle) as channel:
        return await admin_pb2_grpc.AdminStub(channel).GetStats(admin_pb2.GetStatsRequest())


async def test_quota_exhaustion_and_recovery(tmp_path: Path) -> None:
    # A slow rate so that scheduling delays on a busy machine cannot refill the bucket.
    quota = QuotaSettings(rate_per_second=50.0, burst=300, daily_cap=600)
    async with running_registry(tmp_path / "data", quota=quota) as reg:
        bundle = reg.add_platform("alpha")
        _, element = voprf.blind(b"+8613800138000", voprf.MODE_VOPRF)
        async with secure_channel(bundle) as channel:
            stub = tokens_pb2_grpc.TokensStub(channel)
            # The first call starts the worker processes (seconds on a loaded machine, in
            # which the bucket would refill): start them with one unit, refilled at once.
            await stub.Evaluate(_bad([element]))
            await asyncio.sleep(0.1)
            await stub.Evaluate(_bad([element] * 300))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Evaluate(_bad([element] * 100))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            hint = int(dict(err.value.trailing_metadata() or ())["retry-after-ms"])
            assert 100 <= hint <= 2000
            await asyncio.sleep(hint / 1000 + 0.05)
            await stub.Evaluate(_bad([element] * 100))  # the bucket refilled
            # The SDK honours the hint and retries by itself (100 more need ~2 s).
            tok = Tokenizer(channel, batch_size=50)
            results = await tok.tokenize([f"+86138{i:08d}" for i in range(100)])
            tok.close()
            assert len(results) == 100
            # Daily cap: 501 used of 600.
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Evaluate(_bad([element] * 200))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "daily cap" in (err.value.details() or "")
        stats = await _stats(reg)
        assert [(u.principal_id, u.tokens_evaluated) for u in stats.usage] == [("alpha", 501)]


async def test_cli_tokenize(registry: RunningRegistry, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = registry.add_platform("alpha")
    numbers = tmp = registry.settings.data_dir / "numbers.txt"
    tmp.write_text("13800138000\n+44 20 7946 0958\n")
    code = await asyncio.to_thread(
        cli_main,
        [
            "tokenize",
            "--bundle",
            str(bundle.directory),
            "--json",
            "--file",
            str(numbers),
            "+8613912345678",
        ],
    )
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["e164"] for r in rows] == ["+8613912345678", "+8613800138000", "+442079460958"]
    assert all(len(bytes.fromhex(r["token"])) == 32 for r in rows)
    code = await asyncio.to_thread(
        cli_main, ["tokenize", "--bundle", str(bundle.directory), "+86138", "12"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "number 1: not a valid number" in err and "+86138" not in err
    # From a file, a bad number is named by its line (1-based, blank lines counted).
    numbers.write_text("13800138000\n\n12\n")
    code = await asyncio.to_thread(
        cli_main, ["tokenize", "--bundle", str(bundle.directory), "--file", str(numbers)]
    )
    err = capsys.readouterr().err
    assert code == 1 and f"{numbers}: line 3: not a valid number" in err, err
