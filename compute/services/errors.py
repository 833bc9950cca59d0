"""Errors of container services."""

from __future__ import annotations

from compute.errors import ComputeError


class ServiceError(ComputeError):
    status_code = 422
