"""Where untrusted code runs: the Runtime interface, its implementations and their registry."""

from __future__ import annotations

import threading

from compute.runtimes.base import (
    BackgroundProcess,
    ExecResult,
    FileInfo,
    Limits,
    OutputChunk,
    ResourceUsage,
    Runtime,
    RuntimeUnavailable,
    Sandbox,
    SandboxSpec,
)
from compute.runtimes.registry import DEFAULT_RUNTIME, RuntimeRegistry
from cxmpute.settings import Settings, get_settings

__all__ = [
    "BackgroundProcess",
    "DEFAULT_RUNTIME",
    "ExecResult",
    "FileInfo",
    "SandboxSpec",
    "Limits",
    "OutputChunk",
    "ResourceUsage",
    "Runtime",
    "RuntimeRegistry",
    "RuntimeUnavailable",
    "Sandbox",
    "opened_registries",
    "runtime_registry",
]


_registries: dict[str, RuntimeRegistry] = {}
_lock = threading.Lock()


def runtime_registry(settings: Settings | None = None) -> RuntimeRegistry:
    """The registry of runtimes for these settings, one per data directory so sessions are shared."""
    settings = settings or get_settings()
    with _lock:
        key = str(settings.home)
        if key not in _registries:
            _registries[key] = RuntimeRegistry(settings)
        return _registries[key]


def opened_registries() -> list[RuntimeRegistry]:
    """The registries this process has opened so far (none is opened by asking)."""
    with _lock:
        return list(_registries.values())
