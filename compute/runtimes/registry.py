"""Runtimes by name, discovered from the ``cxmpute.runtimes`` entry-point group.

A provider declares the runtimes its machine can run: those registered whose ``check`` passes. User code runs
in those of them that start sandboxes (``runs_code``); the ``vm`` runtime runs whole machines instead.
"""

from __future__ import annotations

import atexit
from importlib.metadata import entry_points

from compute.runtimes.base import Runtime, RuntimeUnavailable
from compute.runtimes.code import SessionManager
from cxmpute.logging import get_logger
from cxmpute.settings import Settings

log = get_logger(__name__)

DEFAULT_RUNTIME = "sandbox"


class RuntimeRegistry:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._runtimes: dict[str, Runtime] = {}
        self.sessions = SessionManager()
        # Sessions left open when the process ends would leave their scratch mounts (and containers) behind.
        atexit.register(self.sessions.close_all)
        for ep in entry_points(group="cxmpute.runtimes"):
            try:
                self._runtimes[ep.name] = ep.load()(settings)
            except Exception:  # a broken plug-in must not take the other runtimes down
                log.exception("could not load runtime entry point %s", ep.name)

    def names(self) -> list[str]:
        return sorted(self._runtimes)

    def runtime(self, name: str) -> Runtime:
        """A registered runtime whether or not this machine can run it (see :meth:`get`)."""
        try:
            return self._runtimes[name]
        except KeyError:
            raise RuntimeUnavailable(
                f"unknown runtime {name!r} (known: {', '.join(self.names())})", field="runtime", status_code=400
            ) from None

    def available(self) -> list[str]:
        """Every runtime this machine can run now, which a provider declares."""
        return [name for name in self.names() if self._runtimes[name].check() is None]

    def offered(self) -> list[str]:
        """The runtimes user code can run in on this machine now."""
        return [name for name in self.available() if self._runtimes[name].runs_code]

    def get(self, name: str | None = None) -> Runtime:
        name = name or DEFAULT_RUNTIME
        runtime = self.runtime(name)
        why = runtime.check()
        if why is not None:
            raise RuntimeUnavailable(f"runtime {name!r} is not available on this machine: {why}", field="runtime")
        return runtime
