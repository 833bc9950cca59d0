"""The browser bundles the platform serves (the builder at ``/``, the console at ``/console``), one way for both.

Each bundle is committed together with a digest of the sources and lock file it was built from
(``SOURCE_DIGEST`` beside its ``index.html``), so a fresh machine needs no npm; ``make builder`` rebuilds them
and a test fails when the sources changed without a rebuild.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, JSONResponse, Response

import web
from web.deps import public

WEB = Path(web.__file__).parent
# What a bundle is built from; node_modules is reproduced from the lock file.
SOURCE_GLOBS = ("package.json", "package-lock.json", "index.html", "vite.config.js", "src/**/*")
# No other origin may frame a page: a framing page could trick a signed-in user into clicks.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True)
class Bundle:
    name: str
    # Files of other bundles' sources this one imports, relative to web/: they count towards its digest.
    shared: tuple[str, ...] = ()

    @property
    def sources(self) -> Path:
        return WEB / self.name

    @property
    def built(self) -> Path:
        return WEB / "static" / self.name

    @property
    def stamp(self) -> Path:
        return self.built / "SOURCE_DIGEST"

    def source_digest(self, root: Path | None = None) -> str:
        """SHA-256 over the bundle's source files (and the shared ones it imports), by relative path and content."""
        root = root or self.sources
        digest = hashlib.sha256()
        files = sorted({p for pattern in SOURCE_GLOBS for p in root.glob(pattern) if p.is_file()})
        named = [(p.relative_to(root).as_posix(), p) for p in files]
        named += [(f"../{rel}", WEB / rel) for rel in self.shared if (WEB / rel).is_file()]
        for name, path in named:
            digest.update(name.encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
        return digest.hexdigest()

    def write_stamp(self) -> None:
        self.stamp.write_text(self.source_digest() + "\n")

    def routes(self, index_path: str, assets_prefix: str) -> APIRouter:
        """The page at ``index_path`` and the bundle's files under ``assets_prefix`` (Vite's ``base``)."""
        router = APIRouter(include_in_schema=False)

        @router.get(index_path, dependencies=[Depends(public)])
        def index() -> Response:
            page = self.built / "index.html"
            if not page.is_file():
                return JSONResponse(
                    {"detail": f"the {self.name} bundle is not built: run `make builder`", "field": self.name},
                    status_code=503,
                )
            return FileResponse(page, media_type="text/html", headers=PAGE_HEADERS)

        @router.get(assets_prefix + "{path:path}", dependencies=[Depends(public)])
        def asset(path: str) -> Response:
            if not path:  # the page's own folder, as a browser asks for it after a trailing slash
                return index()
            target = (self.built / path).resolve()
            inside = target.is_relative_to(self.built.resolve()) and target.is_file()
            if not inside or target == self.stamp.resolve():
                return JSONResponse({"detail": f"no {self.name} file {path!r}", "field": "path"}, status_code=404)
            # asset names carry a content hash, so they never change under the same URL
            cache = "public, max-age=31536000, immutable" if path.startswith("assets/") else "no-cache"
            return FileResponse(target, headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"})

        return router


BUILDER = Bundle("builder")
# The console signs in the way the builder does, with the builder's own wallet and session code.
CONSOLE = Bundle("console", shared=("builder/src/wallet.js", "builder/src/api.js"))
BUNDLES = {b.name: b for b in (BUILDER, CONSOLE)}


if __name__ == "__main__":
    for name in sys.argv[1:] or BUNDLES:
        BUNDLES[name].write_stamp()
        print(f"wrote {BUNDLES[name].stamp}")
