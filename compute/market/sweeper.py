"""The lease sweeper: renews or expires leases past their term and ends those of providers gone silent."""

from __future__ import annotations

import asyncio

from compute.network import get_network
from cxmpute.loops import LoopService


class LeaseSweeper(LoopService):
    """Sweeps the market every few seconds, once this process uses the network (before that there is
    nothing to sweep, and opening the network only to sweep it would start a chain for nobody)."""

    name = "lease-sweeper"
    every_s = 5.0

    async def run_once(self) -> None:
        net = get_network(create=False)
        if net is not None:
            await asyncio.to_thread(net.market.sweep)
