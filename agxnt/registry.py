"""The one agent registry, filled from the ``cxmpute.agents`` entry-point group.

Entry-point names are free (``memory.write`` or ``memory.write@1``); the id and version come from
the class. Keeping old versions registered keeps saved workflows that pin them runnable.
"""

from __future__ import annotations

import threading
from importlib.metadata import entry_points

from agxnt.agent import Agent, AgentInfo
from agxnt.errors import UnknownAgent
from cxmpute.logging import get_logger

log = get_logger(__name__)


def _version_key(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in v.split("."))


class Registry:
    def __init__(self) -> None:
        self._agents: dict[str, dict[str, type[Agent]]] = {}
        self._loaded = False
        self._lock = threading.Lock()
        self._catalogue: list[AgentInfo] | None = None  # JSON Schemas are costly to build; agents rarely change

    def load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            for ep in entry_points(group="cxmpute.agents"):
                try:
                    cls = ep.load()
                except Exception:  # a broken third-party plug-in must not take the platform down
                    log.exception("could not load agent entry point %s", ep.name)
                    continue
                self._add(cls)
            self._loaded = True

    def _add(self, cls: type[Agent]) -> None:
        self._agents.setdefault(cls.id, {})[cls.version] = cls
        self._catalogue = None

    def register(self, cls: type[Agent]) -> type[Agent]:
        """Add an agent class in-process (plug-ins loaded at run time, tests)."""
        self.load()
        with self._lock:
            self._add(cls)
        return cls

    def ids(self) -> list[str]:
        self.load()
        return sorted(self._agents)

    def versions(self, agent_id: str) -> list[str]:
        self.load()
        return sorted(self._agents.get(agent_id, {}), key=_version_key)

    def get(self, agent_id: str, version: str | None = None) -> type[Agent]:
        self.load()
        by_version = self._agents.get(agent_id)
        if not by_version:
            raise UnknownAgent(f"unknown agent {agent_id!r}", field="agent")
        if version is None:
            return by_version[self.versions(agent_id)[-1]]
        try:
            return by_version[version]
        except KeyError:
            raise UnknownAgent(
                f"agent {agent_id!r} has no version {version!r} (available: {', '.join(self.versions(agent_id))})",
                field="version",
            ) from None

    def has(self, agent_id: str, version: str | None = None) -> bool:
        try:
            self.get(agent_id, version)
            return True
        except UnknownAgent:
            return False

    def catalogue(self) -> list[AgentInfo]:
        catalogue = self._catalogue
        if catalogue is None:
            catalogue = self._catalogue = [self.get(i).info(self.versions(i)) for i in self.ids()]
        return catalogue


registry = Registry()
