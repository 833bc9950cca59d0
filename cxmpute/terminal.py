"""What the command-line tools share: one transfer progress bar on stderr."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

err = Console(stderr=True)


@contextmanager
def transfer_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A byte-counting progress bar on stderr; yields the function to advance it."""
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
