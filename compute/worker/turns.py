"""Writers of a process taking turns on a database that takes one writer at a time (SQLite).

A writer that finds SQLite locked waits in its busy handler, which sleeps in growing steps (1, 2, 5, 10, ...
ms): under a burst it waits far longer than the writes ahead of it take, and it holds a thread meanwhile. The
platform's frequent writes of dispatched work (placements, deliveries, results) queue instead on an asyncio
lock of their event loop, then on one lock per process, and reach the database one at a time from each
process. Databases that lock rows (PostgreSQL) are written concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Iterator

from compute.store import Store
from cxmpute.db import get_engine

_writers = threading.Lock()
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()


def one_writer(store: Store) -> bool:
    return get_engine(store.url).dialect.name == "sqlite"


def turn(store: Store, name: str) -> contextlib.AbstractAsyncContextManager:
    """This event loop's queue for ``name`` writes (a no-op where the database takes several writers)."""
    if not one_writer(store):
        return contextlib.nullcontext()
    locks = _turns.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(name, asyncio.Lock())


@contextlib.contextmanager
def writing(store: Store) -> Iterator[None]:
    """This process's writes take turns (on SQLite)."""
    if not one_writer(store):
        yield
        return
    with _writers:
        yield
