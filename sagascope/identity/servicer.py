"""``sagascope.identity.v1.IdentityService`` over gRPC."""

from __future__ import annotations

import grpc

from sagascope.api.identity.v1 import identity_pb2, identity_pb2_grpc
from sagascope.common.interceptors import metadata_value
from sagascope.identity.keys import KeyRing
from sagascope.identity.login import LoginService
from sagascope.identity.throttle import grpc_peer_address

FORWARDED_FOR = "x-forwarded-for"
SERVICE_NAME = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, login: LoginService, keys: KeyRing) -> None:
        self._login = login
        self._keys = keys

    async def Login(
        self, request: identity_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.LoginResponse:
        forwarded_for = metadata_value(context.invocation_metadata(), FORWARDED_FOR)
        address = self._login.client_address(grpc_peer_address(context.peer()), forwarded_for)
        issued = await self._login.login(request.username, request.password, address)
        return identity_pb2.LoginResponse(
            access_token=issued.access_token, token_type=issued.token_type, expires_in=issued.expires_in
        )

    async def GetJwks(
        self, request: identity_pb2.GetJwksRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.GetJwksResponse:
        return identity_pb2.GetJwksResponse(
            keys=[identity_pb2.JsonWebKey(**key.jwk()) for key in self._keys.keys],
            jwks_json=self._keys.jwks_json(),
        )
