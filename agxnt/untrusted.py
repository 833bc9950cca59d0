"""Who untrusted work runs as: pages in Chromium and prompt templates never run as root.

When the platform runs as root, that work runs as ``untrusted_user`` (default ``nobody``); otherwise it
keeps the platform's own, already unprivileged, user.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from agxnt.errors import AgentError
from cxmpute.settings import Settings


@dataclass(frozen=True)
class Identity:
    name: str
    uid: int
    gid: int


def drop_to(settings: Settings) -> Identity | None:
    """The identity to switch to before running untrusted work; None when this process is not root."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam(settings.untrusted_user)
    except KeyError:
        raise AgentError(
            f"user {settings.untrusted_user!r} does not exist", field="untrusted_user", status_code=503
        ) from None
    if user.pw_uid == 0:
        raise AgentError("untrusted work may not run as root", field="untrusted_user", status_code=503)
    return Identity(settings.untrusted_user, user.pw_uid, user.pw_gid)
