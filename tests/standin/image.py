"""Test fixture: a busybox image that stands in for the CUDA training image (no GPU, no registry here).

Its `chatlike-train` (a shell script next to this file) prints Trainer-like lines, writes
adapter-shaped files and honours SIGTERM, so the runner's Docker behaviour is tested for real.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
SCRIPT = Path(__file__).with_name("chatlike-train")
UID = 1000
REPOSITORY = "chatlike-test/standin"


def rootfs() -> bytes:
    """A busybox root filesystem with the stand-in entrypoint, as an uncompressed tar."""
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(name: str, *, data: bytes | None = None, mode: int = 0o644, uid: int = 0, link: str | None = None):
            info = tarfile.TarInfo(name)
            info.uid = info.gid = uid
            info.mode = mode
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

        for folder in ("bin", "etc", "tmp", "usr", "usr/local", "usr/local/bin", "chatlike"):
            add(folder, mode=0o1777 if folder == "tmp" else 0o755)
        for folder in ("chatlike/input", "chatlike/output", "chatlike/cache"):
            add(folder, mode=0o755, uid=UID)
        add("bin/busybox", data=BUSYBOX.read_bytes(), mode=0o755)
        for applet in applets:
            if applet != "busybox":
                add(f"bin/{applet}", link="busybox")
        add("etc/passwd", data=f"root:x:0:0::/root:/bin/sh\nchatlike:x:{UID}:{UID}::/tmp:/bin/sh\n".encode())
        add("etc/group", data=f"root:x:0:\nchatlike:x:{UID}:\n".encode())
        add("usr/local/bin/chatlike-train", data=SCRIPT.read_bytes(), mode=0o755)
    return buffer.getvalue()



def ensure(client) -> str:
    """Import the image into the engine unless it is there; returns its reference."""
    data = rootfs()
    ref = f"{REPOSITORY}:{hashlib.sha256(data).hexdigest()[:12]}"
    if not client.images.list(name=ref):
        client.api.import_image_from_data(
            data,
            repository=REPOSITORY,
            tag=ref.rpartition(":")[2],
            changes=["ENV PATH=/usr/local/bin:/bin", 'CMD ["chatlike-train"]'],  # starts as root, like the real one
        )
    return ref
