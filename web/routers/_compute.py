"""Shared pieces of the compute network's routers: the network dependency, and the signed-in account one."""

from __future__ import annotations

from compute.network import Network, get_network
from web.deps import signed_in

__all__ = ["network", "signed_in"]


def network() -> Network:
    return get_network()
