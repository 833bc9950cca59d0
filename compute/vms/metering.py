"""VM metering: bills running machines and stops those whose lease ended."""

from __future__ import annotations

import asyncio

from compute.network import get_network
from compute.vms.service import meter_running
from cxmpute.loops import LoopService
from cxmpute.settings import Settings


class VmMeter(LoopService):
    """Meters every few seconds, once this process uses the network."""

    name = "vm-meter"
    every_s = 5.0

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    async def run_once(self) -> None:
        net = get_network(create=False)
        if net is not None:
            await asyncio.to_thread(meter_running, net, self.settings)
