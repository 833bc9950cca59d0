"""Shared pieces of the compute network's routers: the network dependency, and the signed-in account one."""

from __future__ import annotations

from compute.network import Network, get_network
from web.deps import signed_in

__all__ = ["network", "signed_in"]


async def network() -> Network:
    # async: a plain function would cost every request a hop to the thread pool for a lookup (the network is
    # built when the app starts)
    return get_network()
