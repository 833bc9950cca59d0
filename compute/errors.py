"""Errors of the compute network. Each carries the HTTP status and the field it is about."""

from __future__ import annotations


class ComputeError(Exception):
    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if status_code is not None:
            self.status_code = status_code


class Unauthorized(ComputeError):
    status_code = 401


class Forbidden(ComputeError):
    status_code = 403


class NotFound(ComputeError):
    status_code = 404


class Conflict(ComputeError):
    status_code = 409


class InsufficientFunds(ComputeError):
    status_code = 402
