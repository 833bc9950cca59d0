"""The visual workflow builder: its built bundle served at ``/`` with its assets under ``/builder/``.

The bundle is committed together with a digest of the sources and lock file it was built from
(``web/static/builder/SOURCE_DIGEST``), so a fresh machine needs no npm; ``make builder`` rebuilds it and
a test fails when the sources changed without a rebuild.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, JSONResponse, Response

import web
from web.deps import public

SOURCES = Path(web.__file__).parent / "builder"
BUNDLE = Path(web.__file__).parent / "static" / "builder"
STAMP = BUNDLE / "SOURCE_DIGEST"
# What the bundle is built from; node_modules is reproduced from the lock file.
SOURCE_GLOBS = ("package.json", "package-lock.json", "index.html", "vite.config.js", "src/**/*")

router = APIRouter(include_in_schema=False)


def source_digest(root: Path = SOURCES) -> str:
    """SHA-256 over the builder's source files, by relative path and content."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in SOURCE_GLOBS for p in root.glob(pattern) if p.is_file()})
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _missing() -> Response:
    return JSONResponse(
        {"detail": "the builder bundle is not built: run `make builder`", "field": "builder"}, status_code=503
    )


@router.get("/", dependencies=[Depends(public)])
def index() -> Response:
    page = BUNDLE / "index.html"
    if not page.is_file():
        return _missing()
    # No other origin may frame the builder: a framing page could trick a signed-in user into clicks.
    return FileResponse(
        page,
        media_type="text/html",
        headers={
            "Cache-Control": "no-cache",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": "frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/builder/{path:path}", dependencies=[Depends(public)])
def asset(path: str) -> Response:
    target = (BUNDLE / path).resolve()
    if not target.is_relative_to(BUNDLE.resolve()) or not target.is_file() or target == STAMP.resolve():
        return JSONResponse({"detail": f"no builder file {path!r}", "field": "path"}, status_code=404)
    # asset names carry a content hash, so they never change under the same URL
    cache = "public, max-age=31536000, immutable" if path.startswith("assets/") else "no-cache"
    return FileResponse(target, headers={"Cache-Control": cache})


if __name__ == "__main__":
    STAMP.write_text(source_digest() + "\n")
    print(f"wrote {STAMP}")
