"""Service images for tests: one Python file on the container runtime's own image, saved as a tarball."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def service_image(engine, app: str, tag: str, dest: Path) -> Path:
    """Build ``app`` (Python source run as the container's command) into ``tag`` and `docker save` it to
    ``dest``, the tarball a service deploys."""
    from compute.runtimes.image import ensure_image

    base = ensure_image(engine)
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (
            (
                "Dockerfile",
                f'FROM {base}\nCOPY app.py /app/app.py\nCMD ["/usr/bin/python3", "-u", "/app/app.py"]\n'.encode(),
            ),
            ("app.py", app.encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    image, _ = engine.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True)
    with open(dest, "wb") as f:
        for chunk in image.save(named=True):
            f.write(chunk)
    return dest
