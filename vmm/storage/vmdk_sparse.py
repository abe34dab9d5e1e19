"""One hosted sparse VMDK extent: grain directory -> grain tables -> grains, compressed or not.

Reads follow the directory lazily (a grain table is loaded and checked against the file the first
time it is needed, so opening a huge disk is cheap and a hostile table is caught before use).
Writes allocate whole grains at the end of the file in VirtualBox's order: the grain's data first,
then the grain table entry, then (only when a table itself is new) the directory entry, primary
before redundant copy. Each of those writes is one aligned 4-byte entry (or a whole new table
appended past the end), and every prefix of the sequence is a valid file: an appended grain or
table that nothing points to yet is only unused space (the next open appends after it), a table
entry in a new table nobody points to is invisible, and a primary entry whose redundant copy is
still old reads the new data (readers follow the primary directory; `qemu-img check` accepts
both). So a killed writer leaves the old or the new mapping of every grain, never a torn one,
without a journal. Each step is a named crash point (`vmdk.*`, settings/crashpoint.py) that the
fault tests kill the writer at.

Power loss is covered at the guest's flushes: `flush()` (the guest's FLUSH CACHE) fdatasyncs, so
every grain, table and entry written before it is durable. Between two flushes the writes are not
ordered on the disk (no sync between a grain and its entry, as in VirtualBox: a sync per new
grain would make every allocating write wait for the disk), so a power loss there may lose or
garble grains the guest wrote since its last flush, which the guest must expect of any disk with
a volatile cache. The unclean-shutdown
flag is set in the header before the first change after an open and cleared only after a sync on
close.

Compressed (streamOptimized) extents are read-only here; vmdk_stream.py writes them front to back.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from array import array

from settings import crashpoint
from vmm.storage.blockio import is_zero, pread_into, pwrite_all
from vmm.storage.committer import Committer
from vmm.storage.image import DiskImageError
from vmm.storage.vmdk_header import (
    FLAG_REDUNDANT_GT,
    FLAG_ZERO_GTE,
    GD_AT_END,
    GRAIN_MARKER,
    MARKER,
    MARKER_FOOTER,
    SECTOR,
    SparseHeader,
    parse_header,
)

_U32 = struct.Struct("<I")
STREAM_READ_ONLY = ("{path}: VMDK: the grains of a streamOptimized image cannot be modified in place "
                    "(clone it to another variant to write to it)")
_LITTLE = struct.pack("=I", 1) == struct.pack("<I", 1)


def _u32_array(raw: bytes) -> array:
    a = array("I")
    a.frombytes(raw)
    if not _LITTLE:
        a.byteswap()
    return a


class SparseExtent:
    """A sparse extent file; offsets passed in are bytes within this extent. `base`/`length` place
    a read-only extent inside a bigger file (a VMDK stored in an OVA tar, read in place)."""

    def __init__(self, path: str, fd: int, read_only: bool, header: SparseHeader | None = None,
                 base: int = 0, length: int | None = None):
        self.path = path
        self._fd = fd
        self.read_only = read_only
        if base and not read_only:
            raise DiskImageError(f"{path}: VMDK: an extent inside another file can only be read")
        self._base = base
        self._lock = threading.RLock()
        self._file_size = os.fstat(fd).st_size - base if length is None else length
        raw = os.pread(fd, SECTOR, base)
        h = header or parse_header(raw, path)
        if h.gd_offset == GD_AT_END:
            h = self._footer_header(h)
        self.h = h
        self.size = h.capacity * SECTOR
        self._gbytes = h.grain_bytes
        self._gshift = self._gbytes.bit_length() - 1
        self._per_gt = h.gtes_per_gt
        self._zeros = bytes(self._gbytes)
        self._gd = self._load_dir(h.gd_offset, "grain directory")
        self._rgd = None
        if h.flags & FLAG_REDUNDANT_GT and not h.compressed:
            self._rgd = self._load_dir(h.rgd_offset, "redundant grain directory")
        self._gts: dict[int, array] = {}
        self._rgts: dict[int, array] = {}
        self._cache_index = -1
        self._cache = b""
        self._committer = None
        self._dirty_header = False
        self._append = -(-self._file_size // SECTOR)     # next free sector

    # ---- loading and checks ----------------------------------------------------------------------

    def _footer_header(self, first: SparseHeader) -> SparseHeader:
        """streamOptimized: the real header (with the directory's place) sits before the EOS marker."""
        if not first.markers or self._file_size < 3 * SECTOR:
            raise DiskImageError(f"{self.path}: VMDK: the grain directory is at the end but the file "
                                 f"has no footer")
        raw = os.pread(self._fd, 3 * SECTOR, self._base + self._file_size - 3 * SECTOR)
        _n, size, mtype = MARKER.unpack_from(raw, 0)
        if size != 0 or mtype != MARKER_FOOTER:
            raise DiskImageError(f"{self.path}: VMDK: the stream footer is missing (the file is truncated?)")
        footer = parse_header(raw[SECTOR:2 * SECTOR], self.path)
        if footer.gd_offset == GD_AT_END or footer.capacity != first.capacity \
                or footer.grain_size != first.grain_size:
            raise DiskImageError(f"{self.path}: VMDK: the stream footer does not match the header")
        return footer

    def _load_dir(self, sector: int, what: str) -> array:
        h = self.h
        n = h.gd_entries
        if sector == 0 or sector * SECTOR + 4 * n > self._file_size:
            raise DiskImageError(f"{self.path}: VMDK: the {what} (sector {sector}, {n} entries) lies outside "
                                 f"the file")
        gd = _u32_array(os.pread(self._fd, 4 * n, self._base + sector * SECTOR))
        limit = self._file_size
        for i, e in enumerate(gd):
            if e and (e == 0xFFFFFFFF or e * SECTOR + 4 * self._per_gt > limit):
                raise DiskImageError(f"{self.path}: VMDK: {what} entry {i} points outside the file "
                                     f"(sector {e})")
        return gd

    def _table(self, gdi: int, redundant: bool = False) -> array | None:
        cache = self._rgts if redundant else self._gts
        gt = cache.get(gdi)
        if gt is not None:
            return gt
        gd = self._rgd if redundant else self._gd
        sector = gd[gdi]
        if not sector:
            return None
        gt = _u32_array(os.pread(self._fd, 4 * self._per_gt, self._base + sector * SECTOR))
        if len(gt) != self._per_gt:
            raise DiskImageError(f"{self.path}: VMDK: grain table {gdi} is truncated")
        self._check_table(gt, gdi)
        cache[gdi] = gt
        return gt

    def _check_table(self, gt: array, gdi: int) -> None:
        zero_ok = bool(self.h.flags & FLAG_ZERO_GTE)
        need = GRAIN_MARKER.size if self.h.compressed else self._gbytes
        limit = self._file_size
        overhead = self.h.overhead if not self.h.compressed else 1
        for j, e in enumerate(gt):
            if e == 0 or (e == 1 and zero_ok):
                continue
            if e < overhead or e * SECTOR + need > limit:
                raise DiskImageError(f"{self.path}: VMDK: grain table {gdi} entry {j} points "
                                     f"outside the file "
                                     f"(sector {e})")

    # ---- reading ---------------------------------------------------------------------------------

    def _entry(self, grain: int) -> int:
        gdi, gti = divmod(grain, self._per_gt)
        gt = self._table(gdi)
        return 0 if gt is None else gt[gti]

    def readinto(self, offset: int, mv: memoryview) -> None:
        n = len(mv)
        gbytes, gshift = self._gbytes, self._gshift
        within = offset & (gbytes - 1)
        if within + n <= gbytes and not self.h.compressed:   # fast path: one allocated grain, one pread
            grain = offset >> gshift
            gt = self._gts.get(grain // self._per_gt)
            if gt is not None:
                e = gt[grain % self._per_gt]
                if e > 1 and os.preadv(self._fd, (mv,), self._base + e * SECTOR + within) == n:
                    return
        with self._lock:
            pos = 0
            while pos < n:
                off = offset + pos
                grain = off >> gshift
                within = off & (gbytes - 1)
                chunk = min(n - pos, gbytes - within)
                e = self._entry(grain)
                if e <= 1 and (e == 0 or self.h.flags & FLAG_ZERO_GTE):
                    mv[pos:pos + chunk] = self._zeros[:chunk]
                elif self.h.compressed:
                    data = self._grain_data(grain, e)
                    mv[pos:pos + chunk] = data[within:within + chunk]
                else:
                    pread_into(self._fd, mv[pos:pos + chunk], self._base + e * SECTOR + within, self.path)
                pos += chunk

    def _grain_data(self, grain: int, sector: int) -> bytes:
        if grain == self._cache_index:
            return self._cache
        head = os.pread(self._fd, GRAIN_MARKER.size, self._base + sector * SECTOR)
        lba, csize = GRAIN_MARKER.unpack(head)
        if lba != grain * self.h.grain_size:
            raise DiskImageError(f"{self.path}: VMDK: the compressed grain at sector {sector} is for sector "
                                 f"{lba}, not {grain * self.h.grain_size}")
        start = sector * SECTOR + GRAIN_MARKER.size
        if csize == 0 or start + csize > self._file_size or csize > 2 * self._gbytes + 1024:
            raise DiskImageError(f"{self.path}: VMDK: the compressed grain at sector {sector} has an invalid "
                                 f"size of {csize} bytes")
        packed = os.pread(self._fd, csize, self._base + start)
        try:
            z = zlib.decompressobj()
            data = z.decompress(packed, self._gbytes)
        except zlib.error as e:
            raise DiskImageError(f"{self.path}: VMDK: the compressed grain at sector {sector} is "
                                 f"corrupt ({e})") \
                from None
        if len(data) < self._gbytes:
            if lba + len(data) // SECTOR < self.h.capacity or len(data) % SECTOR:
                raise DiskImageError(f"{self.path}: VMDK: the compressed grain at sector {sector} "
                                     f"inflates to "
                                     f"{len(data)} bytes, not {self._gbytes}")
            data += bytes(self._gbytes - len(data))
        self._cache_index, self._cache = grain, data
        return data

    def next_allocated(self, offset: int) -> int:
        """The first offset >= offset of a grain that may hold data (grain granularity)."""
        grain = offset >> self._gshift
        total = -(-self.size // self._gbytes)
        with self._lock:
            while grain < total:
                gdi, gti = divmod(grain, self._per_gt)
                gt = self._table(gdi)
                if gt is None:
                    grain = (gdi + 1) * self._per_gt
                    continue
                for j in range(gti, self._per_gt):
                    e = gt[j]
                    if e > 1 or (e == 1 and not self.h.flags & FLAG_ZERO_GTE):
                        return max(offset, (gdi * self._per_gt + j) << self._gshift)
                grain = (gdi + 1) * self._per_gt
        return self.size

    def allocated_grains(self) -> int:
        count = 0
        for gdi in range(len(self._gd)):
            gt = self._table(gdi)
            if gt is not None:
                count += sum(1 for e in gt if e > 1 or (e == 1 and not self.h.flags & FLAG_ZERO_GTE))
        return count

    # ---- writing ---------------------------------------------------------------------------------

    def write(self, offset: int, mv: memoryview) -> None:
        n = len(mv)
        gbytes, gshift = self._gbytes, self._gshift
        within = offset & (gbytes - 1)
        if within + n <= gbytes and self._dirty_header:      # fast path: one allocated grain, one pwrite
            grain = offset >> gshift
            gt = self._gts.get(grain // self._per_gt)
            if gt is not None:
                e = gt[grain % self._per_gt]
                if e > 1 and os.pwrite(self._fd, mv, e * SECTOR + within) == n:
                    return
        with self._lock:
            self._mark_unclean()
            fresh = []                  # new grains of this request: appended and committed together
            pos = 0
            while pos < n:
                off = offset + pos
                grain = off >> gshift
                within = off & (gbytes - 1)
                chunk = min(n - pos, gbytes - within)
                e = self._entry(grain)
                piece = mv[pos:pos + chunk]
                if e > 1 or (e == 1 and not self.h.flags & FLAG_ZERO_GTE):
                    pwrite_all(self._fd, piece, e * SECTOR + within)
                elif not is_zero(piece, self._zeros):
                    fresh.append((grain, within, piece))
                pos += chunk
            if fresh:
                self._allocate(fresh)

    def discard(self, offset: int, length: int) -> None:
        """Zero the range (grains stay allocated: hosted sparse extents have no free list)."""
        end = offset + length
        while offset < end:
            n = min(end - offset, self._gbytes - (offset & (self._gbytes - 1)))     # up to the grain's end
            with self._lock:
                if self._entry(offset >> self._gshift) > 1:
                    self.write(offset, memoryview(self._zeros)[:n])
            offset += n

    def _allocate(self, fresh: list[tuple[int, int, memoryview]]) -> None:
        """Append the grains (data first; the rest of each grain zeros), then point the tables at
        them in one commit. `fresh`: (grain, offset within it, bytes)."""
        gbytes = self._gbytes
        first = self._append
        data = bytearray(gbytes * len(fresh))
        for k, (_grain, within, piece) in enumerate(fresh):
            data[k * gbytes + within:k * gbytes + within + len(piece)] = piece
        crashpoint.hit("vmdk.grain.data")
        pwrite_all(self._fd, data, first * SECTOR)
        self._append = first + len(fresh) * (gbytes // SECTOR)
        writes = []
        for k, (grain, _within, _piece) in enumerate(fresh):
            self._point(grain, first + k * (gbytes // SECTOR), writes)
        self._file_size = max(self._file_size, self._append * SECTOR)
        self._commit(writes)

    def _point(self, grain: int, sector: int, writes: list) -> None:
        """Table entries (and, for a table the file never had, the table and directory entries)
        that map `grain` to `sector`, primary before redundant copy: (crash point, offset, bytes)."""
        gdi, gti = divmod(grain, self._per_gt)
        for redundant in (False, True):
            gd = self._rgd if redundant else self._gd
            if gd is None:
                continue
            gt = self._table(gdi, redundant)
            if gt is None:              # a table this file never had: append it before the directory entry
                gt = array("I", [0]) * self._per_gt
                gt_sector = self._append
                self._append += self.h.gt_sectors
                copy = "vmdk.rgt" if redundant else "vmdk.gt"
                crashpoint.hit(f"{copy}.new")
                pwrite_all(self._fd, bytes(self.h.gt_sectors * SECTOR), gt_sector * SECTOR)
                self._file_size = max(self._file_size, self._append * SECTOR)
                gd[gdi] = gt_sector
                (self._rgts if redundant else self._gts)[gdi] = gt
                base = self.h.rgd_offset if redundant else self.h.gd_offset
                writes.append((f"{copy}.entry", gd[gdi] * SECTOR + 4 * gti, _U32.pack(sector)))
                writes.append((f"{copy}.dir", base * SECTOR + 4 * gdi, _U32.pack(gt_sector)))
            else:
                copy = "vmdk.rgt" if redundant else "vmdk.gt"
                writes.append((f"{copy}.entry", gd[gdi] * SECTOR + 4 * gti, _U32.pack(sector)))
            gt[gti] = sector

    def _commit(self, writes: list[tuple[str, int, bytes]]) -> None:
        if self._committer is None:
            self._committer = Committer(self._fd)
        self._committer.ordered(writes)

    def _mark_unclean(self) -> None:
        if self.read_only:
            raise DiskImageError(f"{self.path}: image is opened read-only")
        if self.h.compressed:
            raise DiskImageError(STREAM_READ_ONLY.format(path=self.path))
        if not self._dirty_header:
            self._dirty_header = True
            self.h = self.h.with_(unclean_shutdown=1)
            crashpoint.hit("vmdk.header.unclean")
            pwrite_all(self._fd, self.h.pack(), 0)

    def flush(self) -> None:
        if not self.read_only:
            os.fdatasync(self._fd)

    def close(self) -> None:
        """Flush, then clear the unclean-shutdown flag as VirtualBox does on a clean close."""
        if self.read_only:
            return
        if self._dirty_header:
            os.fdatasync(self._fd)
            self.h = self.h.with_(unclean_shutdown=0)
            crashpoint.hit("vmdk.header.clean")
            pwrite_all(self._fd, self.h.pack(), 0)
            self._dirty_header = False
        os.fdatasync(self._fd)
        if self._committer is not None:
            self._committer.close()
            self._committer = None

    @property
    def file_size(self) -> int:
        return self._file_size
