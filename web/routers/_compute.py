"""Shared pieces of the compute network's routers: error mapping and the signed-in account dependency."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from compute.errors import ComputeError, Unauthorized
from compute.identity.tokens import Principal
from compute.market.matching import NoMatchError
from compute.network import Network, get_network
from web.deps import current_principal


class ComputeRoute(APIRoute):
    """Turns the network's errors into 4xx JSON naming the field (and, for no match, the explanation)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ComputeError as exc:
                body = {"detail": exc.message, "field": exc.field}
                if isinstance(exc, NoMatchError):
                    body["no_match"] = exc.explanation.model_dump()
                headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
                return JSONResponse(status_code=exc.status_code, content=body, headers=headers)

        return route


def network() -> Network:
    return get_network()


def signed_in(scope: str) -> Callable[..., Principal]:
    """A dependency: a signed-in account holding ``scope`` (anonymous 'local' use has no wallet)."""

    def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        if not principal.is_account:
            raise Unauthorized("sign in with a wallet or use an API key", field="authorization")
        principal.require(scope)
        return principal

    return dependency
