"""What the command-line tools share: one way to report a refused command, one transfer progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from cxmpute.errors import CxmputeError

err = Console(stderr=True)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn a :class:`CxmputeError` into its message (naming the field) on stderr and exit status 2."""
    try:
        yield
    except CxmputeError as exc:
        where = f" ({exc.field})" if exc.field else ""
        err.print(f"[red]error{where}:[/red] {exc.message}")
        raise typer.Exit(2) from None


@contextmanager
def transfer_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A byte-counting progress bar on stderr; yields the function to advance it."""
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
