"""Metadata changes of an image file that a kill -9 (or a power loss, see below) cannot tear.

Two kinds of change:

* `ordered(steps)`: writes the caller has ordered so that the state after every prefix is valid or
  repaired by the next read-write open (VDI block allocation and discard, see vdi.py). No extra
  I/O: this is the guest's path.
* `atomic(writes)`: writes that no order can make safe (a resize rewrites the block map and moves
  the data offset in the header). They go first to a write-ahead record `<image>-journal`
  (length, CRC32, then the writes), which is fsynced before the image is touched and removed
  after the image is fdatasynced. `replay(path)` at open applies a complete record again (the
  writes are idempotent) and drops a torn one (the image was not touched yet).

Power loss: the record's fsync comes before the first write to the image, so a record that can
be read back complete holds every write; the image's fdatasync comes before the record's unlink,
so the record disappears only when the image holds every write.
"""

from __future__ import annotations

import os
import struct
import zlib

from settings import crashpoint
from vmm.storage.blockio import pwrite_all

_MAGIC = b"VBPYJRN1"
_HEAD = struct.Struct("<8sQI")      # magic, body length, crc32 of the body
_ITEM = struct.Struct("<QI")


def journal_path(path: str) -> str:
    return path + "-journal"


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Committer:
    """Applies metadata writes to one open image file."""

    def __init__(self, fd: int, path: str | None = None):
        self._fd = fd
        self._path = path

    def ordered(self, steps: list[tuple[str, int, bytes]]) -> None:
        """(crash-point name, offset, bytes) in the order they must reach the file."""
        for name, off, data in steps:
            crashpoint.hit(name)
            pwrite_all(self._fd, data, off)

    def commit(self, writes: list[tuple[int, bytes]]) -> None:
        """Writes that are safe in the given order (each prefix valid)."""
        for off, data in writes:
            pwrite_all(self._fd, data, off)

    def atomic(self, writes: list[tuple[int, bytes]]) -> None:
        """All of `writes` or none of them, across a kill or a power loss."""
        if self._path is None:
            raise ValueError("an atomic commit needs the image's path")
        body = b"".join(_ITEM.pack(off, len(data)) + bytes(data) for off, data in writes)
        record = _HEAD.pack(_MAGIC, len(body), zlib.crc32(body)) + body
        jpath = journal_path(self._path)
        crashpoint.hit("image.journal.write")
        fd = os.open(jpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            pwrite_all(fd, record, 0)
            os.fsync(fd)            # the record is whole on disk before the image changes
        finally:
            os.close(fd)
        _fsync_dir(jpath)
        for off, data in writes:
            crashpoint.hit("image.journal.apply")
            pwrite_all(self._fd, data, off)
        crashpoint.hit("image.journal.sync")
        os.fdatasync(self._fd)      # the image holds every write before the record goes
        crashpoint.hit("image.journal.remove")
        os.unlink(jpath)

    def close(self) -> None:
        pass


def _read_record(jpath: str) -> list[tuple[int, bytes]] | None:
    try:
        with open(jpath, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    if len(raw) < _HEAD.size:
        return []
    magic, n, crc = _HEAD.unpack_from(raw)
    body = raw[_HEAD.size:_HEAD.size + n]
    if magic != _MAGIC or len(body) != n or zlib.crc32(body) != crc:
        return []                   # torn: the image was never touched
    out, pos = [], 0
    while pos < n:
        off, size = _ITEM.unpack_from(body, pos)
        pos += _ITEM.size
        out.append((off, body[pos:pos + size]))
        pos += size
    return out


def replay(path: str, fd: int) -> bool:
    """Finish an atomic commit a crash interrupted (`fd` open for writing); True if one was found."""
    jpath = journal_path(path)
    writes = _read_record(jpath)
    if writes is None:
        return False
    for off, data in writes:
        pwrite_all(fd, data, off)
    os.fdatasync(fd)
    os.unlink(jpath)
    return True


def pending(path: str) -> bool:
    return os.path.exists(journal_path(path))
