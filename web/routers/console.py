"""The web console: its built bundle served at ``/console`` (pages picked by the URL's hash) with its assets
under ``/console/``."""

from __future__ import annotations

from web.bundles import CONSOLE

router = CONSOLE.routes("/console", "/console/")
