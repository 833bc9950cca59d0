"""Storage errors; each carries the HTTP status the API answers with and the field at fault."""

from __future__ import annotations

from cxmpute.errors import CxmputeError


class StorageError(CxmputeError):
    pass


class NotEnoughNodes(StorageError):
    status_code = 503


class DataLost(StorageError):
    """Fewer healthy fragments remain than a block needs; repair cannot help until nodes return."""

    status_code = 503
