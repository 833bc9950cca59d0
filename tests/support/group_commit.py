"""Driving a group-commit writer (:mod:`compute.market.group_commit`) so that callers share a batch for sure."""

from __future__ import annotations

import threading
from collections.abc import Callable

from compute.market.group_commit import GroupCommit


def together(writer: GroupCommit, calls: list[Callable[[], object]], monkeypatch) -> tuple[list[object], list[int]]:
    """Run ``calls`` (each going through ``writer``) from one thread each: the first call's batch is held while it
    is being written until every other call waits in the queue behind it. Returns each call's outcome (what it
    returned, or the exception it raised), in order, and the sizes of the batches written."""
    kind = type(writer)
    write = kind.write
    sizes: list[int] = []
    writing, queued = threading.Event(), threading.Event()

    def held(self: GroupCommit, batch: list) -> None:
        if self is writer and not writing.is_set():
            writing.set()
            assert queued.wait(30)
        sizes.append(len(batch))
        write(self, batch)

    monkeypatch.setattr(kind, "write", held)
    outcomes: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            outcomes[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - the refusal is the outcome
            outcomes[i] = exc

    first = threading.Thread(target=run, args=(0,))
    first.start()
    assert writing.wait(30)
    others = [threading.Thread(target=run, args=(i,)) for i in range(1, len(calls))]
    for thread in others:
        thread.start()
    while writer.waiting < len(others):
        threading.Event().wait(0.01)
    queued.set()
    for thread in [first, *others]:
        thread.join(30)
    return outcomes, sizes
