"""Errors of the compute network's own kinds (the shared ones are in :mod:`cxmpute.errors`). Each carries the
HTTP status and the field it is about."""

from __future__ import annotations

from cxmpute.errors import CxmputeError


class ComputeError(CxmputeError):
    pass


class InsufficientFunds(ComputeError):
    status_code = 402
