"""The container runtime's image, built on this machine: no registry is needed (or reachable).

The root filesystem holds the host's Debian Python, a POSIX shell, a few core utilities and exactly
the shared libraries they link, as a ``FROM scratch`` image. The image tag carries a digest of the
file list, so a changed host Python gives a new image.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tarfile
from pathlib import Path

PYTHON = "/usr/bin/python3.11"
TOOLS = (
    "/bin/sh",
    "/usr/bin/dash",
    "/usr/bin/cat",
    "/usr/bin/ls",
    "/usr/bin/echo",
    "/usr/bin/sleep",
    "/usr/bin/rm",
    "/usr/bin/mkdir",
    "/usr/bin/env",
    "/usr/bin/id",
    "/usr/bin/head",
    "/usr/bin/wc",
    "/usr/bin/nohup",
    "/usr/bin/kill",
)
STDLIB = "/usr/lib/python3.11"
SKIP = re.compile(r"/(test|tests|idlelib|tkinter|turtledemo|ensurepip|__pycache__|lib2to3|pydoc_data)(/|$)")
REPOSITORY = "cxmpute/runtime-python"
_ETC = {
    "passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/scratch:/bin/sh\n",
    "group": "root:x:0:\nnogroup:x:65534:\n",
}


def _libraries(binaries: list[str]) -> set[str]:
    libs: set[str] = set()
    for chunk in range(0, len(binaries), 50):
        out = subprocess.run(["ldd", *binaries[chunk : chunk + 50]], capture_output=True, text=True).stdout
        libs.update(re.findall(r"(/\S+\.so[\w.]*)", out))
    return libs


def rootfs_files() -> list[str]:
    stdlib = []
    for top, dirs, files in os.walk(STDLIB):
        dirs[:] = [d for d in dirs if not SKIP.search(f"/{d}")]
        stdlib += [os.path.join(top, f) for f in files if not SKIP.search(os.path.join(top, f))]
    executables = [PYTHON, *[t for t in TOOLS if os.path.exists(t)]]
    modules = [f for f in stdlib if f.endswith(".so")]
    return sorted(set(executables + stdlib) | _libraries(executables + modules))


def image_tag(files: list[str]) -> str:
    digest = hashlib.sha256("\n".join(f"{f}:{os.path.getsize(f)}" for f in files).encode()).hexdigest()[:12]
    return f"{REPOSITORY}:{digest}"


def build_context(files: list[str]) -> io.BytesIO:
    """A docker build context: a Dockerfile and the root filesystem tarball it adds."""
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as tar:
        for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")):
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        tar.add("/etc/ld.so.cache", arcname="etc/ld.so.cache")
        for d in ("tmp", "scratch", "proc", "dev", "sys", "etc", "root"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for name, text in _ETC.items():
            data = text.encode()
            info = tarfile.TarInfo(f"etc/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for f in files:
            # Merged /usr: store each file (its content, not a link) under usr/, where /bin and /lib point.
            arcname = f.lstrip("/")
            if not arcname.startswith("usr/"):
                arcname = "usr/" + arcname
            tar.add(str(Path(f).resolve()), arcname=arcname, recursive=False)
        for alias in ("python3", "python"):
            info = tarfile.TarInfo(f"usr/bin/{alias}")
            info.type, info.linkname = tarfile.SYMTYPE, "python3.11"
            tar.addfile(info)
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = b"FROM scratch\nADD rootfs.tar /\nUSER 65534:65534\nWORKDIR /scratch\n"
        for name, data in (("Dockerfile", dockerfile), ("rootfs.tar", rootfs.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    return context


def ensure_image(client) -> str:
    """The tag of the runtime image, building it when this engine does not have it yet."""
    files = rootfs_files()
    tag = image_tag(files)
    try:
        client.images.get(tag)
    except Exception:  # docker.errors.ImageNotFound
        client.images.build(fileobj=build_context(files), custom_context=True, tag=tag, rm=True, forcerm=True)
    return tag
