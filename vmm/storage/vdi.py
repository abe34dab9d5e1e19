"""A VDI image behind the DiskImage protocol: block map lookups, allocation, diff chains, discard.

This is the guest's hot path (AHCI / virtio-scsi call it from the vCPU thread), so a request that
hits allocated blocks is one bounds check, one map lookup and one pread/pwrite. Allocation follows
VirtualBox: new blocks are appended at index cBlocksAllocated, an all-zero full-block write to an
unallocated block only marks it ZERO, and a partial write into an unallocated block is completed
from the parent (or zeros) so the block is whole.

Crash safety without a helper process. The header's cBlocksAllocated and a block's map entry are
1 MiB apart, so no single write changes both; instead every metadata change is a sequence of
single writes whose every prefix leaves an image that reads the old or the new content, and whose
only possible flaw is a data slot no map entry uses (cBlocksAllocated one too high, or a hole
left by a discard). `qemu-img check` reports such an image as a count mismatch; our next
read-write open repairs it (`_repair`) before anything else, with the same ordered steps:

* allocate: data into the new slot -> header count + 1 -> map entry. Before the map entry the new
  slot is an unused tail; the block still reads as before.
* discard a whole block: map entry FREE/ZERO (the block reads as discarded from here on) ->
  copy the last slot's data into the freed one -> point the last slot's owner at the copy ->
  header count - 1 -> truncate. No state has an entry pointing at data of another block (the
  old order copied first, so a crash before the map write made the block read foreign data).
"""

from __future__ import annotations

import os
import struct
import threading
import uuid
from array import array
from collections.abc import Callable

from settings import crashpoint
from vmm.storage import committer
from vmm.storage.blockio import is_zero, pread_into, pwrite_all
from vmm.storage.committer import Committer
from vmm.storage.image import DiskImage, DiskImageError
from vmm.storage.locking import open_image_file
from vmm.storage.vdi_header import (
    BLOCK_FREE,
    BLOCK_ZERO,
    DIFF_TYPES,
    NULL_UUID,
    PRE_HEADER_SIZE,
    SECTOR,
    TYPE_FIXED,
    VdiHeader,
    parse_header,
)
from vmm.storage.vdi_layout import VdiLayoutOps
from vmm.storage.vdi_map import index_map, load_map, next_used_block

_ENTRY = struct.Struct("<I")
_HEADER_READ = 4096


class VdiImage(VdiLayoutOps):
    """One VDI file (plus, for a differencing image, its opened parent chain)."""

    format = "VDI"

    def __init__(self, path: str, fd: int, header: VdiHeader, block_map: array, owner: array,
                 file_size: int, read_only: bool, parent: DiskImage | None):
        self.path = path
        self.read_only = read_only
        self.parent = parent
        self.owns_parent = True         # close() closes the parent chain too
        self._fd = fd
        self._h = header
        self._map = block_map
        self._file_size = file_size
        self._lock = threading.RLock()
        self._committer = None if read_only else Committer(fd, path)
        self._first_write = True
        self._modified = False
        self._keep_modify_uuid = False
        self._closed = False
        self._set_geometry()
        self._owner = owner             # physical block -> virtual block (-1: unused slot)

    # ---- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str, read_only: bool = False,
             parent_opener: Callable[[VdiHeader, str], DiskImage] | None = None,
             detached: bool = False) -> VdiImage:
        """Open and validate `path`; `parent_opener(header, path)` opens a diff image's parent.

        `detached` opens a diff image without its parent, for block-level work (merge, clone) that
        only touches the image's own blocks: its FREE blocks then read as zeros.
        """
        if committer.pending(path):
            cls._replay(path)
        fd = open_image_file(path, read_only)
        try:
            file_size = os.fstat(fd).st_size
            raw = os.pread(fd, _HEADER_READ, 0)
            header = parse_header(raw, file_size, path)
            block_map = load_map(fd, header, file_size, path)
            owner = index_map(block_map, header, file_size, path)
            parent = None
            if header.image_type in DIFF_TYPES and not detached:
                if parent_opener is None:
                    raise DiskImageError(f"{path}: differencing image but no way to find its parent")
                parent = parent_opener(header, path)
            img = cls(path, fd, header, block_map, owner, file_size, read_only, parent)
        except BaseException:
            os.close(fd)
            raise
        if not read_only:
            try:
                img._repair()
            except BaseException:
                img.close()
                raise
        return img

    @staticmethod
    def _replay(path: str) -> None:
        """Finish a resize or merge commit that a crash cut short (committer.py)."""
        try:
            fd = open_image_file(path, False)
        except DiskImageError:
            return          # held by a live writer, or read-only media: it finishes or reads as is
        try:
            committer.replay(path, fd)
        finally:
            os.close(fd)

    def _repair(self) -> None:
        """Remove the unused data slots a crash can leave (see the module docstring): an unused
        slot at the end lowers the count, a hole gets the last slot's block moved into it."""
        with self._lock:
            owner = self._owner
            holes = [p for p in range(len(owner)) if owner[p] < 0]
            if not holes:
                return
            while holes:
                last = len(owner) - 1
                if owner[last] < 0:
                    holes.remove(last)
                    owner.pop()
                    self._h = self._h.with_(c_blocks_allocated=last).upgraded()
                    self._committer.ordered([("vdi.repair.header", PRE_HEADER_SIZE, self._h.pack())])
                    continue
                hole = holes.pop(0)
                moved = owner[last]
                self._copy_slot(last, hole, "vdi.repair.copy")
                self._map[moved] = hole
                owner[hole] = moved
                owner[last] = -1
                self._committer.ordered([("vdi.repair.remap", self._h.off_blocks + 4 * moved,
                                          _ENTRY.pack(hole))])
                holes.append(last)
            self._trim_file()
            os.fdatasync(self._fd)

    def _copy_slot(self, src: int, dst: int, point: str) -> None:
        buf = bytearray(self._stride)
        pread_into(self._fd, memoryview(buf), self._h.off_data + src * self._stride, self.path)
        crashpoint.hit(point)
        pwrite_all(self._fd, buf, self._h.off_data + dst * self._stride)

    def _set_geometry(self) -> None:
        h = self._h
        self.size = h.cb_disk // SECTOR * SECTOR
        self._bs = h.cb_block
        self._shift = h.cb_block.bit_length() - 1
        self._mask = h.cb_block - 1
        self._stride = h.stride
        self._data_off = h.off_data + h.cb_block_extra
        self._contiguous = h.cb_block_extra == 0
        self._zeros = bytes(h.cb_block)
        self._zview = memoryview(self._zeros)

    # ---- metadata ------------------------------------------------------------------------------

    @property
    def header(self) -> VdiHeader:
        return self._h

    @property
    def uuid(self) -> str:
        return str(self._h.uuid_create)

    @property
    def modify_uuid(self) -> str:
        return str(self._h.uuid_modify)

    @property
    def parent_uuid(self) -> str | None:
        return None if self._h.uuid_linkage == NULL_UUID else str(self._h.uuid_linkage)

    @property
    def parent_modify_uuid(self) -> str | None:
        u = self._h.uuid_parent_modify
        return None if u == NULL_UUID else str(u)

    @property
    def variant(self) -> str:
        if self._h.image_type in DIFF_TYPES:
            return "differencing"
        return "fixed" if self._h.image_type == TYPE_FIXED else "dynamic"

    @property
    def block_size(self) -> int:
        return self._bs

    @property
    def block_count(self) -> int:
        return self._h.c_blocks

    @property
    def allocated_blocks(self) -> int:
        return self._h.c_blocks_allocated

    @property
    def file_size(self) -> int:
        return self._file_size

    def block_entry(self, block: int) -> int:
        """The raw map entry of a virtual block (physical index, BLOCK_FREE or BLOCK_ZERO)."""
        return self._map[block]

    # ---- DiskImage -----------------------------------------------------------------------------

    def read_at(self, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        self.readinto_at(offset, memoryview(buf))
        return bytes(buf)

    def readinto_at(self, offset: int, buf) -> None:
        mv = memoryview(buf)
        n = mv.nbytes
        if offset < 0 or offset + n > self.size:
            raise DiskImageError(f"{self.path}: read of {n} bytes at {offset} is outside the disk")
        if not n:
            return
        within = offset & self._mask
        if within + n <= self._bs:          # fast path: one allocated block, one pread
            with self._lock:
                e = self._map[offset >> self._shift]
                if (
                    e < BLOCK_ZERO
                    and os.preadv(self._fd, (mv,), self._data_off + e * self._stride + within) == n
                ):
                    return
        self._readinto(offset, mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B"))

    def _readinto(self, offset: int, mv: memoryview) -> None:
        n = len(mv)
        shift, mask, bs, bmap = self._shift, self._mask, self._bs, self._map
        with self._lock:
            pos = 0
            while pos < n:
                voff = offset + pos
                blk = voff >> shift
                within = voff & mask
                chunk = min(n - pos, bs - within)
                e = bmap[blk]
                if e < BLOCK_ZERO:
                    if self._contiguous:
                        nxt = blk + 1
                        while chunk < n - pos and bmap[nxt] == e + (nxt - blk):
                            chunk = min(n - pos, chunk + bs)
                            nxt += 1
                    pread_into(self._fd, mv[pos:pos + chunk], self._data_off + e * self._stride + within,
                                self.path)
                elif e == BLOCK_FREE and self.parent is not None:
                    self._read_parent(voff, mv[pos:pos + chunk])
                else:
                    mv[pos:pos + chunk] = self._zview[:chunk]
                pos += chunk

    def next_allocated(self, offset: int) -> int:
        """The first offset >= `offset` where some image of the chain may hold data (block
        granularity), or the disk size: lets clone skip the empty parts of a big sparse disk."""
        if offset >= self.size:
            return self.size
        own = min(self.size, next_used_block(self._map, offset >> self._shift) << self._shift)
        parent = self.parent
        if parent is not None and offset < parent.size:
            if hasattr(parent, "next_allocated"):
                own = min(own, parent.next_allocated(offset))
            else:
                return offset       # a raw parent: anything may be data
        return max(offset, own)

    def _read_parent(self, voff: int, view: memoryview) -> None:
        """Read through to the parent; bytes beyond a (smaller) parent's end read as zeros."""
        avail = max(0, min(len(view), self.parent.size - voff))
        if avail:
            self.parent.readinto_at(voff, view[:avail])
        if avail < len(view):
            view[avail:] = self._zview[: len(view) - avail]

    def write_at(self, offset: int, data) -> None:
        mv = memoryview(data)
        n = mv.nbytes
        if self.read_only:
            raise DiskImageError(f"{self.path}: image is opened read-only")
        if offset < 0 or offset + n > self.size:
            raise DiskImageError(f"{self.path}: write of {n} bytes at {offset} is outside the disk")
        if not n:
            return
        within = offset & self._mask
        if within + n <= self._bs and not self._first_write:     # fast path: one allocated block
            with self._lock:
                e = self._map[offset >> self._shift]
                if e < BLOCK_ZERO:
                    self._modified = True
                    if os.pwrite(self._fd, mv, self._data_off + e * self._stride + within) == n:
                        return
        self._write(offset, mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B"))

    def _write(self, offset: int, mv: memoryview) -> None:
        n = len(mv)
        shift, mask, bs, bmap = self._shift, self._mask, self._bs, self._map
        with self._lock:
            self._note_write()
            pos = 0
            while pos < n:
                voff = offset + pos
                blk = voff >> shift
                within = voff & mask
                chunk = min(n - pos, bs - within)
                e = bmap[blk]
                if e < BLOCK_ZERO:
                    if self._contiguous:
                        nxt = blk + 1
                        while chunk < n - pos and bmap[nxt] == e + (nxt - blk):
                            chunk = min(n - pos, chunk + bs)
                            nxt += 1
                    pwrite_all(self._fd, mv[pos:pos + chunk], self._data_off + e * self._stride + within)
                else:
                    self._write_unallocated(blk, within, mv[pos:pos + chunk], e)
                pos += chunk

    def _write_unallocated(self, blk: int, within: int, piece: memoryview, entry: int) -> None:
        bs = self._bs
        zero_background = entry == BLOCK_ZERO or self.parent is None
        if len(piece) == bs:
            if is_zero(piece, self._zeros):
                if entry == BLOCK_FREE:     # as VirtualBox: no data block, just a ZERO entry
                    self._commit_entries({blk: BLOCK_ZERO})
                return
            self._allocate(blk, piece, 0)
        elif zero_background:
            if is_zero(piece, self._zeros):
                return                      # the block already reads as zeros
            self._allocate(blk, piece, within)
        else:
            whole = bytearray(bs)
            self._read_parent(blk * bs, memoryview(whole))
            whole[within:within + len(piece)] = piece
            self._allocate(blk, memoryview(whole), 0)

    def _allocate(self, blk: int, data: memoryview, within: int) -> None:
        """Append a block: data first (the rest of the block reads as zeros), then map + header."""
        phys = self._h.c_blocks_allocated
        start = self._h.off_data + phys * self._stride
        end = start + self._stride
        if self._file_size > start:     # an orphan tail left by a crash: make it zeros again
            os.ftruncate(self._fd, start)
            self._file_size = start
        crashpoint.hit("vdi.alloc.extend")
        os.ftruncate(self._fd, end)
        self._file_size = end
        crashpoint.hit("vdi.alloc.data")
        pwrite_all(self._fd, data, self._data_off + phys * self._stride + within)
        self._h = self._h.with_(c_blocks_allocated=phys + 1).upgraded()
        self._owner.append(blk)
        self._map[blk] = phys
        self._committer.ordered([
            ("vdi.alloc.header", PRE_HEADER_SIZE, self._h.pack()),      # slot counted, unused
            ("vdi.alloc.map", self._h.off_blocks + 4 * blk, _ENTRY.pack(phys)),     # and used
        ])

    def _commit_entries(self, entries: dict[int, int]) -> None:
        """Set map entries that change no data slot (FREE <-> ZERO): each write is a valid state."""
        steps = []
        for blk, value in sorted(entries.items()):
            self._map[blk] = value
            steps.append(("vdi.mark", self._h.off_blocks + 4 * blk, _ENTRY.pack(value)))
        self._h = self._h.upgraded()
        steps.append(("vdi.mark.header", PRE_HEADER_SIZE, self._h.pack()))
        self._committer.ordered(steps)

    def _note_write(self) -> None:
        """VirtualBox's modified flag: a fresh modification UUID at the first write and at each flush."""
        if self._first_write and not self._keep_modify_uuid:
            self._first_write = False
            self._h = self._h.with_(uuid_modify=uuid.uuid4()).upgraded()
            pwrite_all(self._fd, self._h.pack(), PRE_HEADER_SIZE)
        else:
            self._modified = True

    def discard(self, offset: int, length: int) -> None:
        """Whole blocks become ZERO (freeing their space); partial ranges are zeroed."""
        if self.read_only:
            raise DiskImageError(f"{self.path}: image is opened read-only")
        if offset < 0 or length < 0 or offset + length > self.size:
            raise DiskImageError(f"{self.path}: discard of {length} bytes at {offset} is outside the disk")
        bs = self._bs
        with self._lock:
            pos, end = offset, offset + length
            while pos < end:
                blk, within = divmod(pos, bs)
                chunk = min(end - pos, bs - within)
                block_end = min((blk + 1) * bs, self.size)
                if within == 0 and pos + chunk >= block_end and self._h.image_type != TYPE_FIXED:
                    self.free_block(blk, BLOCK_ZERO)
                else:
                    self.write_at(pos, self._zview[:chunk])
                pos += chunk

    def free_block(self, blk: int, marker: int) -> None:
        """Unmap a block (marker FREE or ZERO); the last physical block moves into the hole."""
        with self._lock:
            e = self._map[blk]
            if e >= BLOCK_ZERO:
                # in a base image FREE and ZERO both read as zeros: nothing to change
                if e != marker and self._h.image_type in DIFF_TYPES:
                    self._note_write()
                    self._commit_entries({blk: marker})
                return
            self._note_write()
            last = self._h.c_blocks_allocated - 1
            off_blocks = self._h.off_blocks
            # 1. unmap: from here the block reads as discarded; slot e is an unused hole
            self._map[blk] = marker
            self._owner[e] = -1
            self._committer.ordered([("vdi.free.unmap", off_blocks + 4 * blk, _ENTRY.pack(marker))])
            if e != last and self._owner[last] >= 0:
                # 2. the last slot's data into the hole (unused until 3), 3. its owner follows it
                moved = self._owner[last]
                self._copy_slot(last, e, "vdi.free.copy")
                self._map[moved] = e
                self._owner[e] = moved
                self._owner[last] = -1
                self._committer.ordered([("vdi.free.remap", off_blocks + 4 * moved, _ENTRY.pack(e))])
            # 4. the now unused last slot leaves the count, 5. and the file
            self._owner.pop()
            self._h = self._h.with_(c_blocks_allocated=last).upgraded()
            self._committer.ordered([("vdi.free.header", PRE_HEADER_SIZE, self._h.pack())])
            crashpoint.hit("vdi.free.trim")
            self._trim_file()

    def _trim_file(self) -> None:
        end = self._h.off_data + self._h.c_blocks_allocated * self._stride
        if self._file_size > end:
            os.ftruncate(self._fd, end)
            self._file_size = end

    def flush(self) -> None:
        if self.read_only:
            return
        with self._lock:
            if self._modified and not self._keep_modify_uuid:
                self._modified = False
                self._h = self._h.with_(uuid_modify=uuid.uuid4()).upgraded()
                pwrite_all(self._fd, self._h.pack(), PRE_HEADER_SIZE)
            os.fdatasync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                if not self.read_only:
                    self.flush()
            finally:
                self._closed = True
                if self._committer is not None:
                    self._committer.close()
                os.close(self._fd)
                self._fd = -1           # a reused descriptor number must never be read by mistake
                if self.parent is not None and self.owns_parent:
                    self.parent.close()

    def __enter__(self) -> VdiImage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<VdiImage {self.path!r} {self.variant} size={self.size} uuid={self.uuid}>"
