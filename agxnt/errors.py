"""Errors agents raise. Each maps to a 4xx at the API with its message and field named."""

from __future__ import annotations


class AgentError(Exception):
    """A failure caused by the caller's input or the agent's environment, not a bug."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if status_code is not None:
            self.status_code = status_code

    def to_dict(self) -> dict:
        return {"message": self.message, "field": self.field}


class NotFound(AgentError):
    status_code = 404


class Forbidden(AgentError):
    status_code = 403


class UnknownAgent(NotFound):
    pass
