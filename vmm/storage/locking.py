"""Opening image files with the sharing rules VirtualBox applies to media: any number of readers,
or one writer. A second writer (another VM, or the service merging into a disk a VM is using) gets
a clear error instead of silently corrupting the image. flock() locks belong to the open file, so
the metadata helper that shares our descriptor keeps the lock alive until it has finished."""

from __future__ import annotations

import fcntl
import os

from vmm.storage.image import DiskImageError


def open_image_file(path: str, read_only: bool) -> int:
    try:
        fd = os.open(path, os.O_RDONLY if read_only else os.O_RDWR)
    except OSError as e:
        raise DiskImageError(f"{path}: cannot open the image: {e.strerror}")
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if read_only else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        mode = "reading" if read_only else "writing"
        raise DiskImageError(f"{path}: cannot open the image for {mode}: it is in use (locked by another "
                             f"process or handle)")
    except OSError:
        pass        # a file system without flock support: no protection, but usable
    return fd
