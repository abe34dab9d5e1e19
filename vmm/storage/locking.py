"""Opening image files with the sharing rules VirtualBox applies to media: any number of readers,
or one writer. A second writer (another VM, or the service merging into a disk a VM is using) gets
a clear error instead of silently corrupting the image.

flock() locks belong to the open file, which a child that inherited the descriptor shares: after
a writer is killed such a child may hold the lock for a moment longer. So when the lock is busy
but every process that took it is dead, we wait (briefly) instead of reporting the image as in use.
"""

from __future__ import annotations

import fcntl
import os
import time

from vmm.storage.image import DiskImageError

ORPHAN_WAIT_S = 10.0


def open_image_file(path: str, read_only: bool) -> int:
    try:
        fd = os.open(path, os.O_RDONLY if read_only else os.O_RDWR)
    except OSError as e:
        raise DiskImageError(f"{path}: cannot open the image: {e.strerror}")
    mode = fcntl.LOCK_SH if read_only else fcntl.LOCK_EX
    deadline = None
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            holders = _flock_holders(fd)
            if holders and not any(_alive(pid) for pid in holders):
                deadline = deadline or time.monotonic() + ORPHAN_WAIT_S
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
            os.close(fd)
            what = "reading" if read_only else "writing"
            raise DiskImageError(f"{path}: cannot open the image for {what}: it is in use (locked by "
                                 f"another process or handle)")
        except OSError:
            return fd       # a file system without flock support: no protection, but usable


def _flock_holders(fd: int) -> list[int]:
    """PIDs that took flock locks on this file, from /proc/locks (empty if unknown)."""
    st = os.fstat(fd)
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    try:
        with open("/proc/locks") as f:
            for line in f:
                fields = line.split()
                if "->" in fields:          # a waiter, not a holder
                    continue
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == key:
                    pids.append(int(fields[4]))
    except (OSError, ValueError):
        return []
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
