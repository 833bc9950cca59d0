"""A service image as a ``docker save`` tarball: its manifest checked before anything is deployed from it, by
walking the tar's headers in storage (ranged reads, never the layers themselves)."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

from compute.services.errors import ServiceError


def manifest_entries(manifest: Any) -> list[dict]:
    """The images a tarball's ``manifest.json`` lists, each with its config and layers, or a ServiceError."""
    if not isinstance(manifest, list) or not manifest:
        raise ServiceError("the image tarball's manifest.json lists no image", field="image")
    for n, entry in enumerate(manifest):
        fields = entry if isinstance(entry, dict) else {}
        layers = fields.get("Layers")
        if not (
            isinstance(fields.get("Config"), str)
            and isinstance(layers, list)
            and all(isinstance(layer, str) for layer in layers)
        ):
            raise ServiceError(
                f"entry {n} of the image tarball's manifest.json has no Config and Layers", field="image"
            )
    return manifest


class StoredFile(io.RawIOBase):
    """A stored file read at any offset, so ``tarfile`` skips over members without fetching them."""

    def __init__(self, storage, cid: str, owner: str, size: int) -> None:
        self.storage, self.cid, self.owner, self.size, self.pos = storage, cid, owner, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = max(0, {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        end = min(self.size, self.pos + len(buffer))
        if end <= self.pos:
            return 0
        data = self.storage.get_bytes(self.cid, self.owner, self.pos, end)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def check_stored_image(storage, cid: str, owner: str, size: int) -> None:
    """Refuse, naming ``image``, a stored file that is not a ``docker save`` tarball whose manifest lists an
    image with its config and layers inside the tarball."""
    try:
        with tarfile.open(fileobj=io.BufferedReader(StoredFile(storage, cid, owner, size), 64 * 1024)) as tar:
            names = set(tar.getnames())
            if "manifest.json" not in names:
                raise ServiceError(f"{cid} is not a `docker save` tarball: it has no manifest.json", field="image")
            entries = manifest_entries(json.load(tar.extractfile("manifest.json")))
    except (tarfile.TarError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServiceError(f"{cid} is not a `docker save` tarball: {exc}", field="image") from None
    for entry in entries:
        missing = [name for name in (entry["Config"], *entry["Layers"]) if name not in names]
        if missing:
            raise ServiceError(
                f"{cid} is not a complete `docker save` tarball: its manifest names {missing[0]}, "
                "which the tarball lacks",
                field="image",
            )
