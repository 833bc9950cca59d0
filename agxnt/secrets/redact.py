"""Redaction: once a secret value is handed to an agent, it is masked in every log record this process
writes and in whatever the agent returns or raises."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "[redacted]"
MIN_FRAGMENT = 16  # token parts of a composite secret (a webhook URL's token, a bot token after 'id:')

_known: set[str] = set()
_lock = threading.Lock()
_installed = False


def _fragments(value: str) -> set[str]:
    parts = {value}
    parts.update(p for p in re.split(r"[/:?&=#@]", value) if len(p) >= MIN_FRAGMENT)
    return parts


def register_values(values: Iterable[str]) -> None:
    """Mask these values (and their long token parts) from now on, in logs and in :func:`redact`."""
    global _installed
    with _lock:
        for value in values:
            if value:
                _known.update(_fragments(value))
        if not _installed:
            _install_record_factory()
            _installed = True


def _ordered(values: Iterable[str]) -> list[str]:
    # Longest first, so a whole value is masked before a fragment of it could split the match.
    return sorted(set(values), key=len, reverse=True)


def _mask(text: str, values: list[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact(data: Any, extra: Iterable[str] = ()) -> Any:
    """A copy of ``data`` (str, dict, list, nested) with every known secret value masked."""
    with _lock:
        values = _ordered([*_known, *(f for v in extra if v for f in _fragments(v))])
    return _walk(data, values) if values else data


def _walk(data: Any, values: list[str]) -> Any:
    if isinstance(data, str):
        return _mask(data, values)
    if isinstance(data, dict):
        return {_walk(k, values): _walk(v, values) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(_walk(v, values) for v in data)
    return data


def _install_record_factory() -> None:
    """Mask at record creation, so every handler — console, file, the workflow engine's run log — sees
    the masked text, whichever library logged it (httpx logs request URLs, which carry bot tokens)."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        with _lock:
            values = _ordered(_known)
        if not values:
            return record
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: the logging module reports it when it formats
            message = str(record.msg)
        masked = _mask(message, values)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = _mask(text, values)
        return record

    logging.setLogRecordFactory(factory)
