"""Build a tiny Linux guest into a folder: Debian's cloud kernel (``apt-get download``, so on a Debian or Ubuntu
host) as ``vmlinuz`` and an initramfs of busybox-static as ``initrd.gz``, whose /init says so on the serial
console and then ticks once a second. Enough to try `cxmpute vms` without a disk image.

    python flows/examples/tiny_guest.py FOLDER
"""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

INIT = b"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
echo "guest up: $(uname -r)"
t=0
while true; do sleep 1; t=$((t + 1)); echo "tick $t"; done
"""


def kernel(dest: Path) -> Path:
    depends = subprocess.run(
        ["apt-cache", "depends", "linux-image-cloud-amd64"], capture_output=True, text=True, check=True
    ).stdout
    package = next(line.split()[-1] for line in depends.splitlines() if "Depends: linux-image-" in line)
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(["apt-get", "download", package], cwd=work, check=True, capture_output=True)
        subprocess.run(["dpkg-deb", "-x", str(next(Path(work).glob("*.deb"))), f"{work}/tree"], check=True)
        shutil.copyfile(next(Path(work, "tree", "boot").glob("vmlinuz-*")), dest)
    return dest


def cpio(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio ``newc`` archive of (path, mode, content), as the kernel unpacks an initramfs."""
    out = io.BytesIO()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out.write(b"070701" + "".join(f"{v:08x}" for v in fields).encode() + encoded)
        out.write(b"\0" * (-(110 + len(encoded)) % 4) + data + b"\0" * (-len(data) % 4))
    return out.getvalue()


def build(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    busybox = Path(shutil.which("busybox") or "/bin/busybox").read_bytes()
    entries = [(d, 0o040755, b"") for d in ("bin", "dev", "proc", "sys")]
    entries += [("bin/busybox", 0o100755, busybox), ("init", 0o100755, INIT)]
    (folder / "initrd.gz").write_bytes(gzip.compress(cpio(entries), compresslevel=1))
    kernel(folder / "vmlinuz")
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(build(Path(sys.argv[1])))
