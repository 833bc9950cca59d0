"""The code-session reaper: closes sessions idle past their timeout, or whose kernel ended, in every runtime
registry this process opened, so an abandoned session gives back its sandbox without waiting for someone to
open or list sessions."""

from __future__ import annotations

from compute.runtimes import opened_registries
from cxmpute.loops import LoopService


class SessionReaper(LoopService):
    name = "code-session-reaper"
    every_s = 15.0

    async def run_once(self) -> None:
        for registry in opened_registries():
            await registry.sessions.reap()
