"""Errors agents raise. Each maps to a 4xx at the API with its message and field named."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cxmpute.errors import CxmputeError, NotFound


class AgentError(CxmputeError):
    """A failure caused by the caller's input or the agent's environment, not a bug."""


class UnknownAgent(AgentError, NotFound):
    """No agent of that name (or version) is registered: a 404, and an agent error like the others."""


@contextmanager
def as_agent_errors() -> Iterator[None]:
    """Refusals of the layers below (the sandbox, inference, storage) reach the agent's caller as agent errors,
    with the same message, field and status."""
    try:
        yield
    except AgentError:
        raise
    except CxmputeError as exc:
        raise AgentError(exc.message, field=exc.field, status_code=exc.status_code) from None
