"""A member's token service: its platforms' tokenisation, forwarded to the federation's.

A member holds no token key. `Evaluate` and `GetKeys` go to the token service the manifest
names, over the member's peer channel, and an answer counts only under a key the installed
manifest lists (the federation's key, pinned, signed it): a token service that answered
under any other key is refused, so a platform's tokens are the federation's tokens.
The platform still verifies the VOPRF proof against the key it got from GetKeys.
"""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
from numbind.protocol.manifest import TokenService as ManifestTokens
from numbind.registry.domain.types import KeyState, Principal
from numbind.registry.errors import (
    FailedPrecondition,
    InvalidArgument,
    NumbindError,
    ResourceExhausted,
    Unavailable,
)
from numbind.registry.federation.channel import PeerChannels
from numbind.registry.federation.files import FederationDir
from numbind.registry.federation.manifest_changes import ManifestChanges
from numbind.registry.keys import TokenKey
from numbind.registry.services.tokens import (
    Evaluation,
    QuotaGate,
    validate_batch_size,
    validate_elements,
)
from numbind.v1 import tokens_pb2, tokens_pb2_grpc

__all__ = ["ForwardedTokens"]

# A forwarded evaluation waits at most this long for the token service.
FORWARD_TIMEOUT_SECONDS = 10.0
# How long an answer under a key the manifest does not list yet waits for the manifest
# that lists it (the hub signs one at each rotation; replication brings it within moments).
MANIFEST_WAIT_SECONDS = 5.0
# While it waits, how often it looks at the manifest file (a stat; read only once changed).
MANIFEST_LOOK_SECONDS = 0.1


class ForwardedTokens:
    """TokenService's interface (keys, evaluate), answered by the federation's token
    service through this member."""

    def __init__(
        self, files: FederationDir, peers: PeerChannels, token_service: str, gate: QuotaGate
    ) -> None:
        self._files = files
        # This member's quotas for its platforms (the token service does not gate members).
        self._gate = gate
        self._peers = peers
        self._member = token_service
        self._pinned_version = 0
        self._pinned: ManifestTokens | None = None
        self._changes = ManifestChanges(files)

    def _manifest_keys(self) -> ManifestTokens:
        # Replication installs newer manifests (a rotation at the hub, a new member). The
        # file is read and its signature checked once per version, not once per call:
        # ManifestChanges looks at its modification time and reads it only when it moved.
        changed = self._changes.poll()
        if changed is None and self._pinned is None:
            changed = self._files.require()
        if changed is not None:
            self._pinned = changed.manifest.token_service
            self._pinned_version = changed.manifest.version
        assert self._pinned is not None
        return self._pinned

    async def _listing(self, key_id: str) -> ManifestTokens:
        """The manifest's keys, once they list `key_id` or after MANIFEST_WAIT_SECONDS:
        between a rotation at the hub and the new manifest's arrival, the token service
        already answers under the new key, and a platform must not see that gap."""
        pinned = self._manifest_keys()
        loop = asyncio.get_running_loop()
        until = loop.time() + MANIFEST_WAIT_SECONDS
        while pinned.key(key_id) is None and loop.time() < until:
            await asyncio.sleep(min(MANIFEST_LOOK_SECONDS, max(0.0, until - loop.time())))
            pinned = self._manifest_keys()
        return pinned

    def _stub(self) -> tokens_pb2_grpc.TokensAsyncStub:
        stub: tokens_pb2_grpc.TokensAsyncStub = tokens_pb2_grpc.TokensStub(
            self._peers.get(self._member)
        )
        return stub

    async def keys(self) -> tuple[str, list[TokenKey]]:
        try:
            response = await self._stub().GetKeys(
                tokens_pb2.GetKeysRequest(), timeout=FORWARD_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as exc:
            raise _mapped(exc) from None
        pinned = await self._listing(response.active_key_id)
        keys = []
        for k in response.keys:
            entry = pinned.key(k.key_id)
            # Only keys the signed manifest lists, with the public key it lists.
            if entry is None or entry.public_key != k.public_key:
                continue
            created = k.created_at.seconds * 1_000_000 + k.created_at.nanos // 1000
            keys.append(TokenKey(k.key_id, bytes(k.public_key), KeyState(k.state), created))
        if not any(k.key_id == response.active_key_id for k in keys):
            raise Unavailable(
                f"the token service's active key {response.active_key_id} is not in manifest "
                f"v{self._pinned_version}; retry once the federation's new manifest arrives"
            )
        return response.active_key_id, keys

    async def evaluate(self, caller: Principal, key_id: str, elements: list[bytes]) -> Evaluation:
        validate_batch_size(elements)
        pinned = await self._listing(key_id) if key_id else self._manifest_keys()
        if key_id and pinned.key(key_id) is None:
            raise InvalidArgument(
                f"key_id: got {key_id!r}, want one of the federation's keys from GetKeys"
            )
        # Validate, then act: a bad batch is refused here, before it takes any quota.
        await asyncio.to_thread(validate_elements, elements)
        day = await self._gate.take(caller, len(elements))
        try:
            response = await self._stub().Evaluate(
                tokens_pb2.EvaluateRequest(key_id=key_id, blinded_elements=elements),
                timeout=FORWARD_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as exc:
            await self._gate.refund(caller, day, len(elements))
            raise _mapped(exc) from None
        await self._gate.record(caller, day, len(elements))
        if pinned.key(response.key_id) is None:
            pinned = await self._listing(response.key_id)
        if pinned.key(response.key_id) is None:
            raise Unavailable(
                f"the token service evaluated under key {response.key_id}, which manifest "
                f"v{self._pinned_version} does not list; refused"
            )
        return Evaluation(
            response.key_id,
            list(response.evaluated_elements),
            bytes(response.proof),
            response.active_key_id,
        )


def _mapped(exc: grpc.aio.AioRpcError) -> NumbindError:
    """The token service's refusal, passed on to the platform with its reason (its
    messages name the request's fields, which are the platform's own)."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(details)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPrecondition(details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhausted(f"the federation's token service: {details}", 1.0)
    return Unavailable(
        f"the federation's token service did not answer ({code.name}); retry shortly"
    )
