"""Errors of the compute network. Each carries the HTTP status and the field it is about."""

from __future__ import annotations

from cxmpute.errors import CxmputeError


class ComputeError(CxmputeError):
    pass


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
