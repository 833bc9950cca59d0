"""Errors agents raise. Each maps to a 4xx at the API with its message and field named."""

from __future__ import annotations

from cxmpute.errors import CxmputeError


class AgentError(CxmputeError):
    """A failure caused by the caller's input or the agent's environment, not a bug."""


class NotFound(AgentError):
    status_code = 404


class Forbidden(AgentError):
    status_code = 403


class UnknownAgent(NotFound):
    pass
