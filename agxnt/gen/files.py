"""Generated files go to the owner's storage and travel between nodes as references, never inline."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from agxnt.context import AgentContext
from agxnt.errors import AgentError
from cxmpute.errors import CxmputeError


class GeneratedFile(BaseModel):
    """A file an agent produced, kept in the caller's storage (``GET /v1/storage/files/{cid}`` reads it)."""

    cid: str = Field(description="The file in the caller's storage")
    name: str = Field(description="File name, with its extension")
    media_type: str = Field(description="MIME type, e.g. image/png")
    size: int = Field(description="Size in bytes")


async def store(ctx: AgentContext, data: bytes, name: str, media_type: str) -> GeneratedFile:
    """Keep ``data`` as a private file of the caller's: what they generate is theirs to share."""
    stored = await asyncio.to_thread(ctx.services.storage.put_bytes, data, owner=ctx.owner, name=name, private=True)
    return GeneratedFile(cid=stored.file.cid, name=name, media_type=media_type, size=len(data))


async def load(ctx: AgentContext, cid: str, field: str) -> bytes:
    """A stored file of the caller's, for an input that names one by CID."""
    try:
        return await asyncio.to_thread(ctx.services.storage.get_bytes, cid, owner=ctx.owner)
    except CxmputeError as exc:  # missing, foreign or malformed: the caller's input names it
        raise AgentError(f"cannot read {cid}: {exc.message}", field=field, status_code=exc.status_code) from None


def one_of(input: BaseModel, *names: str) -> str:
    """The one field of ``names`` the input sets. Checked at run time, not by the model: in a workflow any of
    them may arrive over an edge, which the params alone do not show."""
    given = [name for name in names if getattr(input, name) is not None]
    if len(given) != 1:
        listed = ", ".join(names[:-1]) + f" or {names[-1]}"
        raise AgentError(f"give exactly one of {listed}", field=given[1] if given else names[0], status_code=422)
    return given[0]


def stem(filename: str, default: str) -> str:
    """A safe file name stem: the caller's name without path or extension, or ``default``."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0].strip()
    cleaned = "".join(c if c.isalnum() or c in "-_ " else "_" for c in base)[:100].strip()
    return cleaned or default
