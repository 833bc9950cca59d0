"""AgentContext: everything an agent may touch. Agents never reach global state."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from agxnt.errors import AgentError
from cxmpute.logging import get_logger
from cxmpute.settings import Settings, get_settings

ProgressFn = Callable[[float, str | None], None]

MAX_REDIRECTS = 10


class Cancelled(AgentError):
    status_code = 409


class BudgetExceeded(AgentError):
    status_code = 422


class Services:
    """Lazily built handles to the platform's services, shared by the agents of one process."""

    def __init__(self, settings: Settings | None = None, **overrides: Any):
        if {"http", "egress"} & overrides.keys():
            raise TypeError("the HTTP client and its egress policy come from settings; they cannot be replaced")
        self._settings = settings
        self._overrides = overrides
        for name, value in overrides.items():
            self.__dict__[name] = value

    @property
    def settings(self) -> Settings:
        """The settings given, else the process's current ones (so a reload reaches the egress policy)."""
        return self._settings if self._settings is not None else get_settings()

    @cached_property
    def memory(self):  # -> agxnt.memory.store.MemoryStore
        from agxnt.memory.store import MemoryStore

        return MemoryStore.from_settings(self.settings)

    def llm_for(self, owner: str):  # -> langchain BaseChatModel
        """A chat model for the caller's event loop, acting for ``owner`` where it reaches the platform's own
        gateway (cheap: local weights are cached by the loader)."""
        from agxnt.llm import chat_model

        if "llm" in self._overrides:
            return self._overrides["llm"]
        return chat_model(self.settings, owner=owner)

    @cached_property
    def storage(self):  # -> stxrage.store.Storage
        from stxrage import open_storage

        return open_storage(self.settings)

    @cached_property
    def runtimes(self):  # -> compute.runtimes.RuntimeRegistry
        from compute.runtimes import runtime_registry

        return runtime_registry(self.settings)

    @property
    def egress(self):  # -> agxnt.web.egress.EgressPolicy
        from agxnt.web.egress import EgressPolicy

        return EgressPolicy.from_settings(self.settings)

    def http(
        self,
        *,
        base_url: str = "",
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        max_redirects: int = MAX_REDIRECTS,
    ):  # -> httpx.AsyncClient
        """The HTTP client for everything an agent requests: each request and each redirect hop passes the
        egress policy. Proxies from the environment are ignored, since a proxy would connect on its own."""
        from agxnt.web.egress import GuardedTransport
        from cxmpute.http import async_client

        return async_client(
            base_url=base_url,
            headers=headers or {},
            timeout=timeout,
            max_redirects=max_redirects,
            transport=GuardedTransport(self.egress),
            trust_env=False,
        )


_default_services: Services | None = None


def default_services() -> Services:
    global _default_services
    if _default_services is None:
        _default_services = Services()
    return _default_services


@dataclass
class AgentContext:
    owner: str = "local"
    settings: Settings = field(default_factory=get_settings)
    services: Services = field(default_factory=default_services)
    logger: logging.Logger = field(default_factory=lambda: get_logger("agxnt.agents"))
    run_id: str | None = None
    node_id: str | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    on_progress: ProgressFn | None = None
    cancel_event: asyncio.Event | None = None
    max_iterations: int = 100
    deadline: float | None = None  # wall-clock time.time() after which loops must stop (crosses processes)

    def iterate(self, requested: int | None = None) -> Iterator[int]:
        """Loop indexes bounded by the run's iteration and time budget; every looping agent uses this."""
        limit = self.max_iterations if requested is None else min(requested, self.max_iterations)
        for i in range(limit):
            self.check_cancelled()
            if self.deadline is not None and time.time() > self.deadline:
                raise BudgetExceeded(f"time budget exhausted after {i} iterations")
            yield i

    @property
    def llm(self):  # -> langchain BaseChatModel
        """The chat model, acting for this context's owner (who pays for what the gateway serves)."""
        return self.services.llm_for(self.owner)

    def progress(self, fraction: float, message: str | None = None) -> None:
        if self.on_progress is not None:
            self.on_progress(max(0.0, min(1.0, fraction)), message)

    def check_cancelled(self) -> None:
        if self.cancel_event is not None and self.cancel_event.is_set():
            raise Cancelled("the run was cancelled")

    def secret(self, name: str) -> str:
        """The owner's secret ``name``: injected in ``secrets`` or read from the store; masked in logs from now on."""
        from agxnt.secrets import register_values, resolve_for

        if name not in self.secrets:
            self.secrets.update(resolve_for(self.owner, [name], self.settings))
        try:
            value = self.secrets[name]
        except KeyError:
            raise AgentError(f"secret {name!r} is not set for this account", field=name) from None
        register_values([value])
        return value
