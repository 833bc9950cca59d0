"""A run executor serving the test session from a thread, as `cxmpute executor start` serves a platform."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flows.executor import Executor


@contextmanager
def executor_thread(concurrency: int = 16) -> Iterator[Executor]:
    executor = Executor(concurrency)
    thread = threading.Thread(target=executor.serve, name="run-executor", daemon=True)
    thread.start()
    try:
        yield executor
    finally:
        executor.stop()
        thread.join(30)
