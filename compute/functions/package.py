"""Function packages: a folder zipped byte-for-byte reproducibly, so the same code always has the same CID."""

from __future__ import annotations

import ast
import io
import re
import zipfile
from pathlib import Path, PurePosixPath

from compute.errors import ComputeError

HANDLER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
_SKIP = {"__pycache__", ".git", ".venv", "node_modules"}
_EPOCH = (1980, 1, 1, 0, 0, 0)


class PackageError(ComputeError):
    status_code = 422

    def __init__(self, message: str, field: str = "package"):
        super().__init__(message, field=field)


def build(directory: Path, max_bytes: int | None = None) -> bytes:
    """Zip ``directory``: files sorted, fixed timestamps and modes, caches and VCS folders left out."""
    root = Path(directory)
    if not root.is_dir():
        raise PackageError(f"{root} is not a directory", field="directory")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            rel = path.relative_to(root)
            if _SKIP & set(rel.parts) or path.suffix == ".pyc":
                continue
            info = zipfile.ZipInfo(rel.as_posix(), date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
            if max_bytes is not None and buf.tell() > max_bytes:
                raise PackageError(f"the package is larger than {max_bytes // 2**20} MB", field="directory")
    return buf.getvalue()


def check(data: bytes, handler: str, max_bytes: int) -> None:
    """Refuse a package that is not a safe zip holding ``handler`` (``module:function``) as a top-level def."""
    if len(data) > max_bytes:
        raise PackageError(f"the package is {len(data)} bytes; the limit is {max_bytes // 2**20} MB")
    if not HANDLER.match(handler):
        raise PackageError(f"handler {handler!r} must look like 'module:function'", field="handler")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise PackageError("the package is not a zip archive") from None
    with archive:
        names = {}
        unpacked = 0
        for info in archive.infolist():
            path = PurePosixPath(info.filename)
            if path.is_absolute() or ".." in path.parts or "\\" in info.filename:
                raise PackageError(f"package entry {info.filename!r} leaves the package folder")
            unpacked += info.file_size
            if not info.is_dir():
                names[path.as_posix()] = info
        if unpacked > 4 * max_bytes:
            raise PackageError(f"the package unpacks to {unpacked} bytes; the limit is {4 * max_bytes // 2**20} MB")
        module, _, function = handler.partition(":")
        base = module.replace(".", "/")
        source_name = next((n for n in (f"{base}.py", f"{base}/__init__.py") if n in names), None)
        if source_name is None:
            raise PackageError(f"the package has no {base}.py for handler {handler!r}", field="handler")
        try:
            tree = ast.parse(archive.read(names[source_name]), source_name)
        except SyntaxError as exc:
            raise PackageError(f"{source_name}: SyntaxError: {exc.msg} (line {exc.lineno})", field="handler") from None
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    if function not in defined:
        raise PackageError(
            f"{source_name} defines no top-level function {function!r} (expected def {function}(event, context))",
            field="handler",
        )
