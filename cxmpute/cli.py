"""The root CLI. Each package mounts its sub-commands through the ``cxmpute.cli`` entry-point group."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import typer

from cxmpute.settings import apply_environment_defaults

app = typer.Typer(help="Cxmpute: decentralized compute, agents and workflows.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


def _mount() -> None:
    for ep in sorted(entry_points(group="cxmpute.cli"), key=lambda e: e.name):
        try:
            sub = ep.load()
        except Exception:
            logging.getLogger("cxmpute.cli").exception("could not load CLI plug-in %s", ep.name)
            continue
        if isinstance(sub, typer.Typer):
            if ep.name.startswith("_"):  # top-level commands (`cxmpute up`, `cxmpute run`)
                app.registered_commands.extend(sub.registered_commands)
            else:
                app.add_typer(sub, name=ep.name)
        else:
            app.command(name=ep.name)(sub)


apply_environment_defaults()
_mount()


if __name__ == "__main__":
    app()
