"""The one error base: a failure caused by the caller's input or the environment, not a bug.

Each package subclasses it; the API answers every one with its status and a JSON body naming the field.
"""

from __future__ import annotations

from typing import Any


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
