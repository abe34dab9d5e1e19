"""A raw disk image (the file's bytes are the disk's bytes) behind the DiskImage protocol."""

from __future__ import annotations

import os
import threading

from vmm.storage.image import DiskImageError
from vmm.storage.locking import open_image_file

_ZEROS = bytes(1 << 20)


class RawImage:
    format = "RAW"
    variant = "fixed"
    uuid = None
    modify_uuid = None
    parent_uuid = None
    parent_modify_uuid = None
    parent = None

    def __init__(self, path: str, read_only: bool = False):
        self.path = path
        self.read_only = read_only
        self._fd = open_image_file(path, read_only)
        self.size = os.lseek(self._fd, 0, os.SEEK_END)     # also right for block devices
        self._lock = threading.Lock()
        self._closed = False

    @property
    def file_size(self) -> int:
        return os.fstat(self._fd).st_size

    def read_at(self, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        self.readinto_at(offset, memoryview(buf))
        return bytes(buf)

    def readinto_at(self, offset: int, buf) -> None:
        view = buf if isinstance(buf, memoryview) and buf.format == "B" else memoryview(buf).cast("B")
        if offset < 0 or offset + len(view) > self.size:
            raise DiskImageError(f"{self.path}: read of {len(view)} bytes at {offset} is outside the disk")
        while view:
            n = os.preadv(self._fd, [view], offset)
            if n <= 0:      # the file shrank under us: the rest reads as zeros
                view[:] = bytes(len(view))
                return
            view = view[n:]
            offset += n

    def write_at(self, offset: int, data) -> None:
        view = data if isinstance(data, memoryview) and data.format == "B" else memoryview(data).cast("B")
        if self.read_only:
            raise DiskImageError(f"{self.path}: image is opened read-only")
        if offset < 0 or offset + len(view) > self.size:
            raise DiskImageError(f"{self.path}: write of {len(view)} bytes at {offset} is outside the disk")
        while view:
            n = os.pwrite(self._fd, view, offset)
            view = view[n:]
            offset += n

    def discard(self, offset: int, length: int) -> None:
        """Discarded ranges read back as zeros."""
        if self.read_only:
            raise DiskImageError(f"{self.path}: image is opened read-only")
        if offset < 0 or length < 0 or offset + length > self.size:
            raise DiskImageError(f"{self.path}: discard of {length} bytes at {offset} is outside the disk")
        end = offset + length
        while offset < end:
            n = min(end - offset, len(_ZEROS))
            self.write_at(offset, _ZEROS[:n])
            offset += n

    def resize(self, new_size: int) -> None:
        if self.read_only:
            raise DiskImageError(f"{self.path}: image is opened read-only")
        os.ftruncate(self._fd, new_size)
        self.size = new_size

    def flush(self) -> None:
        if not self.read_only:
            os.fdatasync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self.flush()
            finally:
                os.close(self._fd)
                self._fd = -1           # a reused descriptor number must never be read by mistake

    def __enter__(self) -> RawImage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
