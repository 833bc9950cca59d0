"""What every part of the storage client shares.

:class:`stxrage.store.Storage` is put together from one part per concern (the node registry, fragments,
ownership, reads, writes, integrity), each a class of its own module. Every part extends this base and the
parts it builds on, so all of them work on the one set of attributes ``Storage.__init__`` sets up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cxmpute.db import session_scope
from cxmpute.settings import Settings
from stxrage.blockstore import BlockStore

Progress = Callable[[int], None]


class StorageBase:
    settings: Settings
    database_url: str
    root: Path
    # node id -> ((url, credential) it was opened with, store)
    _stores: dict[str, tuple[tuple[str, str | None], BlockStore]]
    _stores_lock: threading.Lock
    _pool: ThreadPoolExecutor
    _secret: str

    def _session(self):
        return session_scope(self.database_url)
