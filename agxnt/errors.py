"""Errors agents raise. Each maps to a 4xx at the API with its message and field named."""

from __future__ import annotations

from cxmpute.errors import CxmputeError, NotFound


class AgentError(CxmputeError):
    """A failure caused by the caller's input or the agent's environment, not a bug."""


class UnknownAgent(AgentError, NotFound):
    """No agent of that name (or version) is registered: a 404, and an agent error like the others."""
