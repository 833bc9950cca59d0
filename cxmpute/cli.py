"""The root CLI. Each package mounts its sub-commands through the ``cxmpute.cli`` entry-point group.

One exit-code rule for every command: 0 done; 1 the platform or the command refused the input (one line on
stderr naming the field); 2 the platform could not be reached. A traceback only with ``--debug``.
"""

from __future__ import annotations

import os
import traceback
from functools import cache, lru_cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from cxmpute.logging import get_logger

if TYPE_CHECKING:
    from typer._click import Command

from cxmpute.settings import apply_environment_defaults

USER_ERROR, UNREACHABLE = 1, 2
_debug = {"on": os.environ.get("CXMPUTE_DEBUG", "").lower() in {"1", "true", "yes"}}


def report(exc: BaseException) -> int:
    """Print ``exc`` the way every command reports a failure and return its exit code."""
    from rich.console import Console
    from rich.markup import escape

    from cxmpute.client import PlatformError, PlatformUnreachable
    from cxmpute.errors import CxmputeError

    err = Console(stderr=True, soft_wrap=True)
    if isinstance(exc, PlatformUnreachable):
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        return UNREACHABLE
    if isinstance(exc, CxmputeError):
        where = f" ({exc.field})" if exc.field else ""
        err.print(f"[red]error{escape(where)}:[/red] {escape(exc.message)}")
        errors = exc.errors if isinstance(exc, PlatformError) else []
        for problem in errors if len(errors) > 1 else []:  # one problem is the headline itself
            if isinstance(problem, dict):
                err.print(f"  {escape(_place(problem))}: {escape(str(problem.get('message', '')))}")
        return USER_ERROR
    err.print(f"[red]error:[/red] {escape(f'{type(exc).__name__}: {exc}')} (run with --debug for the traceback)")
    return USER_ERROR


def _place(problem: dict[str, Any]) -> str:
    """Where a problem is: its node or edge of a workflow, then the field."""
    where = (
        f"node {problem['node']}"
        if problem.get("node")
        else f"edge #{problem['edge']}"
        if problem.get("edge") is not None
        else ""
    )
    field = str(problem.get("field") or "")
    return f"{where} ({field})" if where and field else where or field or "document"


class PlatformGroup(TyperGroup):
    """The root command. It applies the exit-code rule to every sub-command, wherever it is invoked from (a
    shell or a test), and loads a package's commands only when they are asked for, so a command pays for
    the imports of its own package alone."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, SystemExit):
            raise
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line and an exit code
            if _debug["on"]:
                traceback.print_exc()
            raise typer.Exit(report(exc)) from None

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_groups()) | set(_top_level()))

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Command | None:
        if cmd_name in _groups():
            return _group(cmd_name)
        return super().get_command(ctx, cmd_name) or _top_level().get(cmd_name)


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group="cxmpute.cli")}


def _load(name: str) -> typer.Typer | None:
    try:
        sub = _plugins()[name].load()
    except Exception:
        get_logger(__name__).exception("could not load CLI plug-in %s", name)
        return None
    return sub if isinstance(sub, typer.Typer) else None


def _groups() -> list[str]:
    return [name for name in _plugins() if not name.startswith("_")]


@cache
def _group(name: str) -> Command | None:
    sub = _load(name)
    if sub is None:
        return None
    group = typer.main.get_group(sub)
    group.name = name
    return group


@lru_cache(maxsize=1)
def _top_level() -> dict[str, Command]:
    """Commands that plug-ins named ``_...`` add at the top level (`cxmpute up`, `cxmpute run`)."""
    commands: dict[str, Command] = {}
    for name in sorted(_plugins()):
        sub = _load(name) if name.startswith("_") else None
        for info in sub.registered_commands if sub else []:
            command = typer.main.get_command_from_info(
                info, pretty_exceptions_short=sub.pretty_exceptions_short, rich_markup_mode=sub.rich_markup_mode
            )
            commands[command.name] = command
    return commands


app = typer.Typer(
    cls=PlatformGroup,
    help="Cxmpute: decentralized compute, agents and workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Print the full traceback of a failure (also CXMPUTE_DEBUG=1)"),
) -> None:
    if debug:
        _debug["on"] = True


apply_environment_defaults()


if __name__ == "__main__":
    app()
