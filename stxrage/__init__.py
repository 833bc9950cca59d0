"""Stxrage: content-addressed, replicated, verified storage.

``open_storage(settings)`` is the one way in; files go in with ``put_bytes``/``put_file`` and come
back by CID with ``get_bytes``/``get_file``.
"""

from __future__ import annotations

import threading

from cxmpute.settings import Settings, get_settings

_open: dict[tuple[str, str], "Storage"] = {}  # noqa: F821 — imported lazily below
_lock = threading.Lock()


def open_storage(settings: Settings | None = None):  # -> stxrage.store.Storage
    """The process's storage client for these settings (one per database and data directory)."""
    from stxrage.store import Storage

    settings = settings or get_settings()
    key = (settings.resolved_database_url, str(settings.storage_dir or settings.data_dir / "stxrage"))
    with _lock:
        storage = _open.get(key)
        if storage is None:
            storage = _open[key] = Storage(settings)
        return storage
