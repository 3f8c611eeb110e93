"""Idempotency records: the first answer to a request id, replayed on every retry.

The record is written in the same transaction as the change it answers for, so a retry
either finds both or neither.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from numbind.registry.domain.types import now_us
from numbind.registry.errors import AlreadyExists
from numbind.registry.storage.models import IdempotencyRow
from sqlalchemy.orm import Session


def once(
    session: Session,
    principal_pk: int,
    method: str,
    request_id: str,
    body_hash: bytes,
    act: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Run act() the first time; afterwards return what it returned the first time.

    The same request id with a different body is ALREADY_EXISTS, naming the id.
    """
    row = session.get(IdempotencyRow, (principal_pk, method, request_id))
    if row is not None:
        if row.body_hash != body_hash:
            raise AlreadyExists(
                f"request_id: {request_id!r} was already used for a different {method} request"
            )
        result: dict[str, Any] = json.loads(row.response)
        return result
    # Claim the request id before acting. A twin of this request running at the same
    # moment (a client's retry racing its first try, through another process, say) read
    # no record too; its claim now waits on this row's key until this transaction ends,
    # then fails as a duplicate, and Database.transact runs it again to replay the answer
    # below. Without the claim the twin acted, met this one's effects in its own checks
    # ("already registered", "attestation already used") and answered that error.
    claim = IdempotencyRow(
        principal_pk=principal_pk,
        method=method,
        request_id=request_id,
        body_hash=body_hash,
        response=b"",
        created_us=now_us(),
    )
    session.add(claim)
    session.flush()
    result = act()
    claim.response = json.dumps(result, separators=(",", ":")).encode()
    return result
