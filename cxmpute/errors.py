"""The one error family: a failure caused by the caller's input or the environment, not a bug.

The API answers every one with its status and a JSON body naming the field. The kinds every package shares
(unauthorized, forbidden, not found, conflict) are defined here once; a package adds only its own kinds, under
its own base (``ComputeError``, ``StorageError``, ``AgentError``), so code that handles "any refusal" catches
:class:`CxmputeError`.
"""

from __future__ import annotations

from typing import Any, Self


class CxmputeError(Exception):
    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if status_code is not None:
            self.status_code = status_code

    def body(self) -> dict[str, Any]:
        return {"detail": self.message, "field": self.field}

    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": "Bearer"} if self.status_code == 401 else None

    def rephrased(self, message: str, *, field: str | None = None) -> Self:
        """This error (its class, status and attributes) with another message and field, and no traceback or
        cause: to add where it happened, or to take a secret out of the message, before raising it again."""
        twin = type(self).__new__(type(self))
        twin.__dict__.update(self.__dict__)
        Exception.__init__(twin, message)
        twin.message, twin.field = message, field
        return twin


class Unauthorized(CxmputeError):
    status_code = 401


class Forbidden(CxmputeError):
    status_code = 403


class NotFound(CxmputeError):
    status_code = 404


class Conflict(CxmputeError):
    status_code = 409
