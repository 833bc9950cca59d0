"""Server-sent events as the gateway relays them: one data line each, usage counted on the request's record and
passed on only when the caller asked for it."""

from __future__ import annotations

import json

from compute.inference.models import RequestRecord


def relayed(event: bytes, record: RequestRecord, wants_usage: bool) -> bytes | None:
    """One server-sent event as it goes on to the caller (``data: ...``), or None for one that does not: comments
    and other fields are dropped, and so is the usage the caller did not ask for (counted on ``record``)."""
    if not event.startswith(b"data:") or b"\n" in event:  # not the one data line most events are
        lines = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
        if not lines:
            return None
        event = b"data: " + b"\ndata: ".join(lines)
    elif not event.startswith(b"data: "):
        event = b"data: " + event[5:].strip()
    if b'"usage"' not in event:  # most events report none: only those naming it are parsed
        return event
    doc = document(event[6:])
    usage = usage_of(doc)
    if usage is None:
        return event
    count(record, usage)
    if wants_usage:
        return event
    if not doc.get("choices"):
        return None
    # a server that reports usage on an event with choices: they go on, without it
    return b"data: " + json.dumps({key: value for key, value in doc.items() if key != "usage"}).encode()


def document(content: bytes | str) -> dict:
    """``content`` as a JSON object; empty when it is not one."""
    try:
        doc = json.loads(content)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def usage_of(doc: dict) -> dict | None:
    usage = doc.get("usage")
    return usage if isinstance(usage, dict) else None


def count(record: RequestRecord, usage: dict | None) -> None:
    if usage:
        record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        record.completion_tokens = int(usage.get("completion_tokens") or 0)
