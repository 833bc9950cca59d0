"""Which runs executing in this process must stop: those their owners asked to cancel, and those this process
no longer holds (its claim lapsed and another executor carries the run on). The executor sets them, nodes look."""

from __future__ import annotations

import threading

_requested: set[str] = set()
_lost: set[str] = set()
_lock = threading.Lock()


def request(run_id: str) -> None:
    with _lock:
        _requested.add(run_id)


def requested(run_id: str) -> bool:
    return run_id in _requested


def lose(run_id: str) -> None:
    with _lock:
        _lost.add(run_id)


def lost(run_id: str) -> bool:
    return run_id in _lost


def forget(run_id: str) -> None:
    with _lock:
        _requested.discard(run_id)
        _lost.discard(run_id)
