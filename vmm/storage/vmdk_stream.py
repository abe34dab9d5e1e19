"""Writing a streamOptimized VMDK front to back: the form appliances and Vagrant boxes carry.

The file is header + embedded descriptor, then each non-zero grain deflated behind a (lba, size)
marker, then the grain tables and the directory behind their markers, a footer (the header again,
now saying where the directory is) and an end-of-stream marker, as VMware's format and VirtualBox's
VMDK.cpp write it. Grains must arrive in increasing order; the file gets its name only when it is
complete.
"""

from __future__ import annotations

import os
import zlib
from array import array

from vmm.storage.blockio import is_zero, pwrite_all
from vmm.storage.image import DiskImageError
from vmm.storage.vmdk_descriptor import Descriptor
from vmm.storage.vmdk_header import (
    GD_AT_END,
    GRAIN_MARKER,
    MARKER_EOS,
    MARKER_FOOTER,
    MARKER_GD,
    MARKER_GT,
    SECTOR,
    new_header,
    pack_marker,
)

COMPRESS_LEVEL = 6              # zlib's default, as VirtualBox (RTZIPLEVEL_DEFAULT) and qemu use


class StreamWriter:
    def __init__(self, path: str, size: int, descriptor: Descriptor):
        from vmm.storage.create import create_new_file

        self.path = path
        self.size = size
        capacity = -(-size // SECTOR)
        self._h = new_header(capacity, stream=True)
        text = descriptor.render().encode()
        desc_sectors = max(self._h.descriptor_size, -(-len(text) // SECTOR))
        grain_sectors = self._h.grain_size
        overhead = -(-(1 + desc_sectors) // grain_sectors) * grain_sectors
        self._h = self._h.with_(descriptor_size=desc_sectors, overhead=overhead, gd_offset=GD_AT_END)
        self._gbytes = self._h.grain_bytes
        self._gt = array("I", [0]) * (self._h.gd_entries * self._h.gtes_per_gt)
        self._next = 0                  # lowest grain index still accepted
        self._tmp = f"{path}.{os.getpid()}.creating"
        if os.path.lexists(path):
            raise DiskImageError(f"{path}: cannot create the image: the file already exists")
        self._fd = create_new_file(self._tmp)
        self._pos = overhead * SECTOR
        self._closed = False
        try:
            pwrite_all(self._fd, self._h.pack(), 0)
            pwrite_all(self._fd, text.ljust(desc_sectors * SECTOR, b"\0"), SECTOR)
        except BaseException:
            self.abort()
            raise

    @property
    def grain_bytes(self) -> int:
        return self._gbytes

    def write_grain(self, index: int, data: bytes | memoryview, packed: bytes | None = None) -> None:
        """Grain `index` (a full grain, or the disk's short last one); all-zero grains are skipped.
        `packed` is the grain already compressed with compress_grain (compression may run in
        parallel; the file is still written in grain order)."""
        if index < self._next:
            raise DiskImageError(f"{self.path}: VMDK: stream grains must be written in increasing order")
        if len(data) > self._gbytes or index * self._gbytes >= self.size:
            raise DiskImageError(f"{self.path}: VMDK: grain {index} is outside the disk")
        self._next = index + 1
        if packed is None:
            view = memoryview(data).cast("B")
            if is_zero(view, bytes(len(view))):
                return
            packed = compress_grain(data, self._gbytes)
        rec = GRAIN_MARKER.pack(index * self._h.grain_size, len(packed)) + packed
        rec += bytes(-len(rec) % SECTOR)
        pwrite_all(self._fd, rec, self._pos)
        self._gt[index] = self._pos // SECTOR
        self._pos += len(rec)

    def close(self) -> None:
        """Write tables, directory, footer and end marker; then publish the file under its name."""
        from vmm.storage.create import publish_file

        if self._closed:
            return
        try:
            h = self._h
            per = h.gtes_per_gt
            gd = array("I", [0]) * h.gd_entries
            for gdi in range(h.gd_entries):
                table = self._gt[gdi * per:(gdi + 1) * per]
                if not any(table):
                    continue
                pwrite_all(self._fd, pack_marker(h.gt_sectors, 0, MARKER_GT), self._pos)
                gd[gdi] = self._pos // SECTOR + 1
                pwrite_all(self._fd, _le(table).ljust(h.gt_sectors * SECTOR, b"\0"), self._pos + SECTOR)
                self._pos += (1 + h.gt_sectors) * SECTOR
            pwrite_all(self._fd, pack_marker(h.gd_sectors, 0, MARKER_GD), self._pos)
            gd_sector = self._pos // SECTOR + 1
            pwrite_all(self._fd, _le(gd).ljust(h.gd_sectors * SECTOR, b"\0"), self._pos + SECTOR)
            self._pos += (1 + h.gd_sectors) * SECTOR
            footer = h.with_(gd_offset=gd_sector)
            tail = pack_marker(1, 0, MARKER_FOOTER) + footer.pack() + pack_marker(0, 0, MARKER_EOS)
            pwrite_all(self._fd, tail, self._pos)
            self._pos += len(tail)
            os.ftruncate(self._fd, self._pos)
            os.fsync(self._fd)
            os.close(self._fd)
            self._closed = True
            publish_file(self._tmp, self.path)
        except OSError as e:
            self.abort()
            raise DiskImageError(f"{self.path}: cannot create the image: {e.strerror or e}") from None
        except BaseException:
            self.abort()
            raise
        finally:
            if os.path.lexists(self._tmp):
                os.unlink(self._tmp)

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)
        if os.path.lexists(self._tmp):
            os.unlink(self._tmp)


def compress_grain(data, grain_bytes: int) -> bytes:
    """A grain deflated in zlib format; readers expect whole grains, the disk's last one too."""
    data = bytes(data)
    if len(data) < grain_bytes:
        data += bytes(grain_bytes - len(data))
    return zlib.compress(data, COMPRESS_LEVEL)


def _le(a: array) -> bytes:
    if array("I", [1]).tobytes() != b"\x01\0\0\0":
        a = array("I", a)
        a.byteswap()
    return a.tobytes()


def write_stream(src, path: str, descriptor: Descriptor, report=None) -> None:
    """Copy an open image `src` into a new streamOptimized VMDK at `path`."""
    from concurrent.futures import ThreadPoolExecutor

    w = StreamWriter(path, src.size, descriptor)
    pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))  # zlib runs without the GIL
    try:
        gbytes = w.grain_bytes
        chunk = 64 * gbytes
        buf = bytearray(chunk)
        zeros = bytes(gbytes)
        skip = getattr(src, "next_allocated", None)
        off = 0
        while off < src.size:
            if skip is not None:
                off = max(off, skip(off) // gbytes * gbytes)
                if off >= src.size:
                    break
            n = min(chunk, src.size - off)
            view = memoryview(buf)[:n]
            src.readinto_at(off, view)
            grains = [(g, view[g:g + gbytes]) for g in range(0, n, gbytes)]
            grains = [(g, v) for g, v in grains if not is_zero(v, zeros)]
            packed = pool.map(lambda item: compress_grain(item[1], gbytes), grains)
            for (g, v), p in zip(grains, packed, strict=True):
                w.write_grain((off + g) // gbytes, v, p)
            off += n
            if report:
                report(off, src.size)
        w.close()
    except BaseException:
        w.abort()
        raise
    finally:
        pool.shutdown()
