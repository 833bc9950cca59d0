"""The one logger naming rule: every platform logger is ``cxmpute.<module>``, so one handler on ``cxmpute``
(``cxmpute up`` sets it on the API's console) shows every part's lines, and a log line names its module."""

from __future__ import annotations

import logging
import sys


def get_logger(name: str) -> logging.Logger:
    """The logger of module ``name`` (pass ``__name__``): ``compute.vms.service`` logs as
    ``cxmpute.compute.vms.service``; the shell's own modules are already ``cxmpute.*``; a module run with
    ``python -m`` keeps its own name rather than ``__main__``."""
    if name == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        name = spec.name if spec is not None else name
    return logging.getLogger(name if name == "cxmpute" or name.startswith("cxmpute.") else f"cxmpute.{name}")
