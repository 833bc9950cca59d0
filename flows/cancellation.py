"""Which runs executing in this process their owners asked to cancel: the executor sets it, nodes look."""

from __future__ import annotations

import threading

_requested: set[str] = set()
_lock = threading.Lock()


def request(run_id: str) -> None:
    with _lock:
        _requested.add(run_id)


def requested(run_id: str) -> bool:
    return run_id in _requested


def forget(run_id: str) -> None:
    with _lock:
        _requested.discard(run_id)
