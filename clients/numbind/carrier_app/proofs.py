"""The holder's proof that an app was asked: GET /me/proof/{revocation}/{platform}.

The app fetches the inclusion proofs of the revocation's trigger and of that app's orders
(and their outcomes) through the carrier SDK, which verifies them against a checkpoint
signed by the registry's pinned log key before anything is served; the holder downloads
the result as JSON that any RFC 9162 verifier can re-check (numbind log prove does). In a
federation the app's orders are in its member registry's log, not the hub's: the file then
proves the trigger and lists those orders under `orders_in_other_logs`.
Only a revocation the signed-in subscriber asked for is served.
"""

from __future__ import annotations

import json

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from numbind.carrier_app.deps import PageDep
from numbind.sdk.errors import NumbindClientError

__all__ = ["router"]

router = APIRouter()


@router.get("/me/proof/{revocation_id}/{platform_id}")
async def proof(page: PageDep, revocation_id: str, platform_id: str) -> Response:
    t = page.t
    sub = page.subscriber
    if sub is None:
        return JSONResponse({"error": t("err.session")}, status_code=401)
    if page.store.revocation(sub.id, revocation_id) is None:
        return JSONResponse({"error": t("err.not_found")}, status_code=404)
    client = page.client
    try:
        progress = await page.registry(client.revocation(revocation_id))
    except NumbindClientError as exc:
        return JSONResponse({"error": t(page.failed("proof", exc))}, status_code=502)
    mine = {o for p in progress if p.platform_id == platform_id for o in p.order_ids}
    if not mine:  # not an app of this revocation: nothing to look up or prove
        return JSONResponse({"error": t("err.not_found")}, status_code=404)
    try:
        leaves = await page.registry(client.log.find(revocation_id=revocation_id))
        wanted = [i for i, kind, ref in leaves if kind == "revocation" or ref in mine]
        here = {ref for _, kind, ref in leaves if kind == "order" and ref in mine}
        proved = await page.registry(client.log.prove(wanted))
    except NumbindClientError as exc:
        return JSONResponse({"error": t(page.failed("proof", exc))}, status_code=502)
    body = {
        "revocation_id": revocation_id,
        "platform_id": platform_id,
        "verified": True,
        "leaves": [p.proof_json() for p in proved],
        "orders_proved": sorted(here),
        # In a federation an app's orders are leaves of its member registry's own log,
        # which this carrier cannot open: the app's SDK proves them there, witnessed by
        # the other registries. Named here so the file claims only what it proves.
        "orders_in_other_logs": sorted(mine - here),
    }
    return Response(
        json.dumps(body, indent=2) + "\n",
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="numbind-proof-{platform_id}.json"'},
    )
