"""What the hub hands a federation member for a holder call, as plain values. No grpc.

A member acts on these without checking an attestation: the hub (the lifecycle authority,
which alone knows who serves a number) has checked it, and only the hub's peer identity
may call a member's fan-out service.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from numbind.registry.errors import InvalidArgument

__all__ = ["AdmittedNumber", "MemberRevocation"]


@dataclass(frozen=True)
class AdmittedNumber:
    """The attested token under the attested key, and the tenure start to apply."""

    token: bytes
    key_id: str
    tenure_start_us: int


@dataclass(frozen=True)
class MemberRevocation:
    """A holder revocation the hub recorded, for one member to create its orders."""

    revocation_id: str
    number: AdmittedNumber
    scope: int
    # Platforms anywhere in the federation; a member acts on those it holds.
    platform_ids: tuple[str, ...] = ()

    def to_json(self) -> str:
        """The outbox's stored form: canonical JSON."""
        value = {
            "revocation_id": self.revocation_id,
            "token": base64.b64encode(self.number.token).decode(),
            "key_id": self.number.key_id,
            "tenure_start_us": self.number.tenure_start_us,
            "scope": self.scope,
            "platform_ids": list(self.platform_ids),
        }
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> MemberRevocation:
        try:
            v: dict[str, Any] = json.loads(text)
            return cls(
                str(v["revocation_id"]),
                AdmittedNumber(
                    base64.b64decode(v["token"]), str(v["key_id"]), int(v["tenure_start_us"])
                ),
                int(v["scope"]),
                tuple(str(p) for p in v["platform_ids"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(f"fan-out outbox entry: {exc}") from None
