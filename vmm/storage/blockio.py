"""Whole-buffer pread/pwrite (the kernel may transfer less than asked) and a fast all-zero test."""

from __future__ import annotations

import os

from vmm.storage.image import DiskImageError


def pread_into(fd: int, view: memoryview, off: int, path: str) -> None:
    while view:
        n = os.preadv(fd, [view], off)
        if n <= 0:
            raise DiskImageError(f"{path}: read beyond the end of the file at offset {off}")
        view = view[n:]
        off += n


def pwrite_all(fd: int, data, off: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, off)
        view = view[n:]
        off += n


def is_zero(view: memoryview, zeros: bytes) -> bool:
    if view[0] or view[-1]:
        return False
    return bytes(view) == zeros[: len(view)]
