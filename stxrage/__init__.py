"""Stxrage: content-addressed, replicated, verified storage.

``open_storage(settings)`` is the one way in; files go in with ``put_bytes``/``put_file``/``put_dir``
and come back by CID with ``get_bytes``/``get_file``/``get_dir``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from cxmpute.settings import Settings, get_settings

if TYPE_CHECKING:  # the store pulls in SQLAlchemy and the codecs; importing the package stays cheap
    from stxrage.store import Storage

_open: dict[tuple[str, str], Storage] = {}
_lock = threading.Lock()


def open_storage(settings: Settings | None = None) -> Storage:
    """The process's storage client for these settings (one per database and data directory)."""
    from stxrage.store import Storage

    settings = settings or get_settings()
    key = (settings.resolved_database_url, str(settings.storage_dir or settings.data_dir / "stxrage"))
    with _lock:
        storage = _open.get(key)
        if storage is None:
            storage = _open[key] = Storage(settings)
        return storage
