"""Every registry witnesses every OTHER registry's log the federation manifest names.

The hub's log (the lifecycle events, reissues and revocations it applies) is witnessed by
every member; a member's own log (the orders it makes for its platforms, and their acks)
by the hub and every other member. One `Witness` per log (numbind.registry.federation.
witness: consistency with the last checkpoint it cosigned, replayed leaves, alarms and
evidence), all sharing this registry's witness key and store (witness state is kept per
origin). The set follows the live manifest: a member added later is witnessed from the
next round on, without a restart.

A log is witnessed under the key the manifest names for it; a manifest from before it
named the hub's log leaves that one pinned on first use, and a member's log the manifest
does not name is witnessed by nobody (there is no key to pin it to).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from numbind.protocol.checkpoint import CosignatureSigner
from numbind.protocol.manifest import FederationSetupError, SignedManifest
from numbind.registry.federation.witness import LogSource, Witness
from numbind.registry.storage.db import Database

__all__ = ["PeerLogWitnesses"]

_log = logging.getLogger(__name__)


class PeerLogWitnesses:
    """Contract: each round witnesses, concurrently, every log the current manifest names
    except this registry's own (`me`); one log's failure or absence never stops another's."""

    def __init__(
        self,
        db: Database,
        signer: CosignatureSigner,
        manifest: Callable[[], SignedManifest | None],
        me: str,
        source_for: Callable[[str], LogSource],
    ) -> None:
        self._db = db
        self._signer = signer
        self._manifest = manifest
        self._me = me
        self._source_for = source_for
        # (origin, named log key or None): a key the manifest changes is a new witness.
        self._witnesses: dict[tuple[str, str | None], Witness] = {}

    def targets(self) -> list[tuple[str, Witness]]:
        """(owner member id, its log's witness) for every peer log the manifest names."""
        held = self._manifest()
        if held is None:
            return []
        manifest = held.manifest
        out: list[tuple[str, Witness]] = []
        kept: dict[tuple[str, str | None], Witness] = {}
        for member in manifest.members:
            if member.id == self._me:
                continue
            log = manifest.log_of(member.id)
            if log is None and member.id != manifest.authority.id:
                continue  # a member's log the manifest does not name: no key to pin
            # The hub's log from before manifests named it: its key pinned on first use.
            slot = (log.origin, log.key) if log else (f"numbind.{manifest.federation}/log", None)
            witness = self._witnesses.get(slot)
            if witness is None:
                verifier = log.verifier if log is not None else None
                witness = Witness(self._db, self._signer, verifier, origin=slot[0])
            kept[slot] = witness
            out.append((member.id, witness))
        # A log the manifest no longer names (a member removed, a key changed) is dropped.
        self._witnesses = kept
        return out

    async def round(self) -> dict[str, bool]:
        """Witness every peer log once; owner id -> whether it cosigned this round."""
        targets = self.targets()
        done = await asyncio.gather(*(self._one(mid, w) for mid, w in targets))
        return {mid: ok for (mid, _), ok in zip(targets, done, strict=True)}

    async def _one(self, member_id: str, witness: Witness) -> bool:
        try:
            source = self._source_for(member_id)
        except FederationSetupError as exc:
            # The manifest file moved on before this registry's peer channels did (the
            # manifest watch updates them): next round.
            _log.info("witness: no channel to %s yet: %s", member_id, exc.message)
            return False
        return await witness.round(source)

    async def run(self, stopping: asyncio.Event, interval: float) -> None:
        """A round every `interval` seconds until `stopping`: a refusal stays an alarm (and
        that log's witness keeps refusing until an operator looks), an unreachable log is
        retried next round."""
        while not stopping.is_set():
            await self.round()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
