"""Reading a folder of text files for Write Memory, confined to the configured ingest roots.

Agents may run on a shared machine, so a folder is only read when it resolves (symlinks included)
inside one of ``settings.memory_ingest_roots`` (default ``<home>/files``).
"""

from __future__ import annotations

from pathlib import Path

from agxnt.errors import AgentError
from agxnt.memory.items import DocumentIn
from cxmpute.errors import NotFound
from cxmpute.settings import Settings

MAX_FILES = 10_000


def ingest_roots(settings: Settings) -> list[Path]:
    roots = settings.memory_ingest_roots or [settings.data_dir / "files"]
    return [r.expanduser().resolve() for r in roots]


def resolve_folder(settings: Settings, folder: str) -> Path:
    roots = ingest_roots(settings)
    candidate = Path(folder).expanduser()
    path = (candidate if candidate.is_absolute() else roots[0] / candidate).resolve()
    if not any(path == root or path.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise AgentError(
            f"folder {folder!r} is outside the folders memory may read ({allowed})", field="folder", status_code=403
        )
    if not path.is_dir():
        raise NotFound(f"folder {folder!r} does not exist", field="folder")
    return path


def read_folder(settings: Settings, folder: str, pattern: str, recursive: bool) -> list[DocumentIn]:
    """One document per matching file, id = path relative to the folder, in a stable order."""
    root = resolve_folder(settings, folder)
    roots = ingest_roots(settings)
    matches = sorted(root.rglob(pattern) if recursive else root.glob(pattern))
    files = [p for p in matches if p.is_file() and any(p.resolve().is_relative_to(r) for r in roots)]
    if not files:
        raise AgentError(f"no files matching {pattern!r} in folder {folder!r}", field="folder")
    if len(files) > MAX_FILES:
        raise AgentError(f"{len(files)} files match; at most {MAX_FILES} per write", field="folder")
    documents = []
    for path in files:
        relative = path.relative_to(root).as_posix()
        if path.stat().st_size > settings.memory_max_document_chars * 4:  # cheap pre-check before reading
            raise AgentError(f"file {relative!r} is too large", field="folder", status_code=413)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise AgentError(f"file {relative!r} is not UTF-8 text", field="folder") from None
        if text.strip():
            documents.append(DocumentIn(id=relative, text=text, metadata={"source": relative}))
    return documents
