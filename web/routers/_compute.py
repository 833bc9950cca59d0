"""Shared pieces of the compute network's routers: the network and the signed-in account dependency."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends

from compute.errors import Unauthorized
from compute.identity.tokens import Principal
from compute.network import Network, get_network
from web.deps import current_principal


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
