"""The DiskImage protocol: all a block device or the media service knows of a disk format."""

from __future__ import annotations

from typing import Protocol


class DiskImageError(Exception):
    """A malformed, unsupported or unusable image (the message names the file and the problem)."""


class DiskImage(Protocol):
    path: str
    size: int          # virtual size in bytes
    read_only: bool

    def read_at(self, offset: int, length: int) -> bytes: ...
    def readinto_at(self, offset: int, buf: memoryview) -> None: ...
    def write_at(self, offset: int, data: bytes | memoryview) -> None: ...
    def discard(self, offset: int, length: int) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
