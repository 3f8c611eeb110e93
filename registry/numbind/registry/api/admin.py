"""Admin servicer: wire <-> AdminService."""

from __future__ import annotations

from numbind.registry.api.auth import current_principal
from numbind.registry.api.convert import body_hash, key_info, rekey_to_wire, ts_from_us
from numbind.registry.api.types import Ctx
from numbind.registry.domain.types import OrderState
from numbind.registry.services.admin import AdminService, NewPrincipal
from numbind.v1 import admin_pb2, admin_pb2_grpc

_ROLE_NUMBERS: dict[str, admin_pb2.PrincipalRole.ValueType] = {
    "platform": admin_pb2.PRINCIPAL_ROLE_PLATFORM,
    "carrier": admin_pb2.PRINCIPAL_ROLE_CARRIER,
    "admin": admin_pb2.PRINCIPAL_ROLE_ADMIN,
    # Listed and counted, never registered or suspended here: the manifest decides.
    "registry": admin_pb2.PRINCIPAL_ROLE_REGISTRY,
}
_ROLE_NAMES = {v: k for k, v in _ROLE_NUMBERS.items() if k != "registry"}


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(self, service: AdminService, ca_pem: bytes) -> None:
        self._service = service
        self._ca_pem = ca_pem.decode()

    async def _register(
        self,
        request: admin_pb2.RegisterPlatformRequest | admin_pb2.RegisterCarrierRequest,
        role: str,
        name: str,
        category: str,
        attestation_key: bytes | None,
    ) -> admin_pb2.RegisterPrincipalResponse:
        result = await self._service.register(
            current_principal(),
            request.request_id,
            body_hash(request),
            NewPrincipal(role, name, request.display_name, category, attestation_key),
            request.csr_pem.encode(),
        )
        return admin_pb2.RegisterPrincipalResponse(
            principal_uri=result["uri"],
            certificate_pem=result["cert"],
            ca_certificate_pem=self._ca_pem,
        )

    async def RegisterPlatform(
        self, request: admin_pb2.RegisterPlatformRequest, context: Ctx
    ) -> admin_pb2.RegisterPrincipalResponse:
        return await self._register(
            request, "platform", request.platform_id, request.category, None
        )

    async def RegisterCarrier(
        self, request: admin_pb2.RegisterCarrierRequest, context: Ctx
    ) -> admin_pb2.RegisterPrincipalResponse:
        return await self._register(
            request, "carrier", request.carrier_id, "", request.attestation_public_key
        )

    async def SetPrincipalSuspended(
        self, request: admin_pb2.SetPrincipalSuspendedRequest, context: Ctx
    ) -> admin_pb2.SetPrincipalSuspendedResponse:
        role = _ROLE_NAMES.get(request.role, "")
        await self._service.set_suspended(role, request.principal_id, request.suspended)
        return admin_pb2.SetPrincipalSuspendedResponse()

    async def SetCarrierAttestationKey(
        self, request: admin_pb2.SetCarrierAttestationKeyRequest, context: Ctx
    ) -> admin_pb2.SetCarrierAttestationKeyResponse:
        await self._service.set_attestation_key(request.carrier_id, request.attestation_public_key)
        return admin_pb2.SetCarrierAttestationKeyResponse()

    async def ListPrincipals(
        self, request: admin_pb2.ListPrincipalsRequest, context: Ctx
    ) -> admin_pb2.ListPrincipalsResponse:
        rows = await self._service.list_principals()
        return admin_pb2.ListPrincipalsResponse(
            principals=[
                admin_pb2.Principal(
                    role=_ROLE_NUMBERS[r.role],
                    principal_id=r.name,
                    display_name=r.display_name,
                    category=r.category,
                    suspended=r.suspended,
                    created_at=ts_from_us(r.created_us),
                )
                for r in rows
            ]
        )

    async def ListKeys(
        self, request: admin_pb2.ListKeysRequest, context: Ctx
    ) -> admin_pb2.ListKeysResponse:
        return admin_pb2.ListKeysResponse(keys=[key_info(k) for k in self._service.list_keys()])

    async def RotateKey(
        self, request: admin_pb2.RotateKeyRequest, context: Ctx
    ) -> admin_pb2.RotateKeyResponse:
        key, rekey = await self._service.rotate_key(current_principal(), request.request_id)
        return admin_pb2.RotateKeyResponse(
            key=key_info(key), rekey=rekey_to_wire(rekey) if rekey else None
        )

    async def RetireKey(
        self, request: admin_pb2.RetireKeyRequest, context: Ctx
    ) -> admin_pb2.RetireKeyResponse:
        await self._service.retire_key(request.key_id)
        return admin_pb2.RetireKeyResponse()

    async def ExportKey(
        self, request: admin_pb2.ExportKeyRequest, context: Ctx
    ) -> admin_pb2.ExportKeyResponse:
        return admin_pb2.ExportKeyResponse(secret_scalar=self._service.export_key(request.key_id))

    async def GetStats(
        self, request: admin_pb2.GetStatsRequest, context: Ctx
    ) -> admin_pb2.GetStatsResponse:
        s = await self._service.stats()
        return admin_pb2.GetStatsResponse(
            platforms=s.platforms,
            carriers=s.carriers,
            active_bindings=s.active_bindings,
            numbers=s.numbers,
            orders_pending=s.orders[OrderState.PENDING],
            orders_delivered=s.orders[OrderState.DELIVERED],
            orders_done=s.orders[OrderState.DONE],
            orders_rejected=s.orders[OrderState.REJECTED],
            orders_overdue=s.orders[OrderState.OVERDUE],
            usage=[
                admin_pb2.PrincipalUsage(
                    role=_ROLE_NUMBERS[u.role],
                    principal_id=u.name,
                    tokens_evaluated=u.tokens_evaluated,
                    reassigned_checks=u.reassigned_checks,
                )
                for u in s.usage
            ],
            rekey=rekey_to_wire(s.rekey) if s.rekey else None,
        )
