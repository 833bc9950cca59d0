"""Storage errors; each carries the HTTP status the API answers with and the field at fault."""

from __future__ import annotations

from cxmpute.errors import CxmputeError


class StorageError(CxmputeError):
    pass


class NotFound(StorageError):
    status_code = 404


class Forbidden(StorageError):
    status_code = 403


class Conflict(StorageError):
    status_code = 409


class NotEnoughNodes(StorageError):
    status_code = 503


class DataLost(StorageError):
    """Fewer healthy fragments remain than a block needs; repair cannot help until nodes return."""

    status_code = 503
