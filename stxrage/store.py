"""Storage: the client every part of the platform stores files through.

It is one class put together from parts, each in a module of its own: the nodes blocks go to
(:mod:`stxrage.node_registry`), a block's fragments on them (:mod:`stxrage.fragments`), who may see and keep
a file (:mod:`stxrage.ownership`), getting files back (:mod:`stxrage.reads`), putting them
(:mod:`stxrage.writes`), and audit and repair (:mod:`stxrage.integrity`). This module sets up what they
share: the catalog, the pool blocks are placed and fetched on, and the key private files are sealed with.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cxmpute.db import migrate
from cxmpute.settings import Settings
from stxrage.integrity import Integrity
from stxrage.reads import Reads
from stxrage.writes import Writes


class Storage(Writes, Reads, Integrity):
    def __init__(
        self, settings: Settings, *, database_url: str | None = None, root: Path | None = None, workers: int = 8
    ):
        self.settings = settings
        self.database_url = database_url or settings.resolved_database_url
        migrate(self.database_url)
        self.root = Path(root or settings.storage_dir or settings.data_dir / "stxrage")
        self._stores = {}
        self._stores_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="stxrage")
        self._secret = settings.resolved_secret_key()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
