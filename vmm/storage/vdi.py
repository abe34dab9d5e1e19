"""A VDI image behind the DiskImage protocol: block map lookups, allocation, diff chains, discard.

This is the guest's hot path (AHCI / virtio-scsi call it from the vCPU thread), so a request that
hits allocated blocks is one bounds check, one map lookup and one pread/pwrite. Allocation follows
VirtualBox: new blocks are appended at index cBlocksAllocated, the data goes to the file before the
map entry and header that point at it (see committer.py), an all-zero full-block write to an
unallocated block only marks it ZERO, and a partial write into an unallocated block is completed
from the parent (or zeros) so the block is whole.
"""

from __future__ import annotations

import os
import re
import struct
import threading
import uuid
from array import array
from collections.abc import Callable

from vmm.storage.committer import Committer
from vmm.storage.image import DiskImage, DiskImageError
from vmm.storage.locking import open_image_file
from vmm.storage.vdi_header import (
    BLOCK_FREE,
    BLOCK_ZERO,
    DIFF_TYPES,
    MAX_BLOCKS,
    NULL_UUID,
    PRE_HEADER_SIZE,
    SECTOR,
    TYPE_DIFF,
    TYPE_FIXED,
    TYPE_NORMAL,
    VdiHeader,
    parse_header,
)

_ENTRY = struct.Struct("<I")
_UNUSED_RUN = re.compile(rb"(?:[\xfe\xff]\xff\xff\xff)*")     # FREE or ZERO entries (little-endian)
_SCAN = 4096
_FREE_SCAN = b"\xff" * _SCAN
_ZERO_SCAN = b"\xfe\xff\xff\xff" * (_SCAN // 4)
_HEADER_READ = 4096


def _pread_into(fd: int, view: memoryview, off: int, path: str) -> None:
    while view:
        n = os.preadv(fd, [view], off)
        if n <= 0:
            raise DiskImageError(f"{path}: read beyond the end of the file at offset {off}")
        view = view[n:]
        off += n


def _pwrite_all(fd: int, data, off: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, off)
        view = view[n:]
        off += n


def _is_zero(view: memoryview, zeros: bytes) -> bool:
    if view[0] or view[-1]:
        return False
    return bytes(view) == zeros[: len(view)]


class VdiImage:
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
        self._committer = None if read_only else Committer(fd)
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
        fd = open_image_file(path, read_only)
        try:
            file_size = os.fstat(fd).st_size
            raw = os.pread(fd, _HEADER_READ, 0)
            header = parse_header(raw, file_size, path)
            block_map = _load_map(fd, header, file_size, path)
            owner = _index_map(block_map, header, file_size, path)
            parent = None
            if header.image_type in DIFF_TYPES and not detached:
                if parent_opener is None:
                    raise DiskImageError(f"{path}: differencing image but no way to find its parent")
                parent = parent_opener(header, path)
            img = cls(path, fd, header, block_map, owner, file_size, read_only, parent)
        except BaseException:
            os.close(fd)
            raise
        return img

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
                if e < BLOCK_ZERO and os.preadv(self._fd, (mv,), self._data_off + e * self._stride + within) == n:
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
                    _pread_into(self._fd, mv[pos:pos + chunk], self._data_off + e * self._stride + within,
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
        own = min(self.size, _next_used_block(self._map, offset >> self._shift) << self._shift)
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
                    _pwrite_all(self._fd, mv[pos:pos + chunk], self._data_off + e * self._stride + within)
                else:
                    self._write_unallocated(blk, within, mv[pos:pos + chunk], e)
                pos += chunk

    def _write_unallocated(self, blk: int, within: int, piece: memoryview, entry: int) -> None:
        bs = self._bs
        zero_background = entry == BLOCK_ZERO or self.parent is None
        if len(piece) == bs:
            if _is_zero(piece, self._zeros):
                if entry == BLOCK_FREE:     # as VirtualBox: no data block, just a ZERO entry
                    self._commit_entries({blk: BLOCK_ZERO})
                return
            self._allocate(blk, piece, 0)
        elif zero_background:
            if _is_zero(piece, self._zeros):
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
        os.ftruncate(self._fd, end)
        self._file_size = end
        _pwrite_all(self._fd, data, self._data_off + phys * self._stride + within)
        self._h = self._h.with_(c_blocks_allocated=phys + 1)
        self._owner.append(blk)
        self._commit_entries({blk: phys})

    def _commit_entries(self, entries: dict[int, int]) -> None:
        """Update map entries in memory and on disk (map first, then the header), as one commit."""
        writes = []
        for blk, value in sorted(entries.items()):
            self._map[blk] = value
            writes.append((self._h.off_blocks + 4 * blk, _ENTRY.pack(value)))
        self._h = self._h.upgraded()
        writes.append((PRE_HEADER_SIZE, self._h.pack()))
        self._committer.commit(writes)

    def _note_write(self) -> None:
        """VirtualBox's modified flag: a fresh modification UUID at the first write and at each flush."""
        if self._first_write and not self._keep_modify_uuid:
            self._first_write = False
            self._h = self._h.with_(uuid_modify=uuid.uuid4()).upgraded()
            _pwrite_all(self._fd, self._h.pack(), PRE_HEADER_SIZE)
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
            changes = {blk: marker}
            if e != last and self._owner[last] >= 0:
                moved = self._owner[last]
                buf = bytearray(self._stride)
                _pread_into(self._fd, memoryview(buf), self._h.off_data + last * self._stride, self.path)
                _pwrite_all(self._fd, buf, self._h.off_data + e * self._stride)
                changes[moved] = e
                self._owner[e] = moved
            elif e != last:
                self._owner[e] = -1
            self._owner.pop()
            self._h = self._h.with_(c_blocks_allocated=last)
            self._commit_entries(changes)
            self._trim_file()

    # ---- block-level operations for clone / merge / compact -----------------------------------

    def disable_modify_uuid_update(self) -> None:
        """Keep the modification UUID (VD_IMAGE_MODIFIED_DISABLE_UUID_UPDATE): for writes that do not
        change what the image reads as, e.g. the target of a forward merge."""
        self._keep_modify_uuid = True

    def put_block(self, blk: int, data) -> None:
        """Set a whole block's own content (len == block size); all zeros become a ZERO entry."""
        view = memoryview(data).cast("B")
        if len(view) != self._bs:
            raise DiskImageError(f"{self.path}: put_block needs exactly {self._bs} bytes")
        if self.read_only:
            raise DiskImageError(f"{self.path}: image is opened read-only")
        with self._lock:
            e = self._map[blk]
            if _is_zero(view, self._zeros) and self._h.image_type != TYPE_FIXED:
                self.free_block(blk, BLOCK_ZERO)
                return
            self._note_write()
            if e < BLOCK_ZERO:
                _pwrite_all(self._fd, view, self._data_off + e * self._stride)
            else:
                self._allocate(blk, view, 0)

    def set_linkage(self, parent_uuid: uuid.UUID | None, parent_modify_uuid: uuid.UUID | None) -> None:
        """Point a diff image at another parent; with no parent it becomes a normal base image."""
        if self.read_only:
            raise DiskImageError(f"{self.path}: image is opened read-only")
        with self._lock:
            if parent_uuid is None:
                h = self._h.with_(image_type=TYPE_NORMAL, uuid_linkage=NULL_UUID, uuid_parent_modify=NULL_UUID)
            else:
                h = self._h.with_(image_type=TYPE_DIFF if self._h.image_type not in DIFF_TYPES
                                  else self._h.image_type,
                                  uuid_linkage=parent_uuid, uuid_parent_modify=parent_modify_uuid or NULL_UUID)
            self._h = h.upgraded()
            _pwrite_all(self._fd, self._h.pack(), PRE_HEADER_SIZE)

    def compact(self, progress: Callable[[float], None] | None = None) -> int:
        """Drop all-zero blocks (they become ZERO entries, as VirtualBox's compact does; in a diff
        a FREE entry would expose the parent) and shrink the file. Returns the blocks released."""
        if self.read_only:
            raise DiskImageError(f"{self.path}: image is opened read-only")
        if self._h.image_type == TYPE_FIXED:
            raise DiskImageError(f"{self.path}: compacting a fixed-size image is not supported")
        released = 0
        buf = bytearray(self._bs)
        view = memoryview(buf)
        with self._lock:
            total = self._h.c_blocks
            for blk in range(total):
                e = self._map[blk]
                if e < BLOCK_ZERO:
                    _pread_into(self._fd, view, self._data_off + e * self._stride, self.path)
                    if buf == self._zeros:
                        self.free_block(blk, BLOCK_ZERO)
                        released += 1
                if progress and (blk % 64 == 63 or blk == total - 1):
                    progress((blk + 1) / total)
            self._trim_file()
        return released

    def grow(self, new_size: int) -> None:
        """Enlarge the virtual disk; moves the first data blocks to the end when the map must grow."""
        if self.read_only:
            raise DiskImageError(f"{self.path}: image is opened read-only")
        if new_size % SECTOR:
            raise DiskImageError(f"{self.path}: the new size must be a multiple of {SECTOR} bytes")
        if new_size < self.size:
            raise DiskImageError(f"{self.path}: shrinking a VDI image is not supported")
        if new_size == self.size:
            return
        if self._h.major == 0:
            raise DiskImageError(f"{self.path}: resizing an old (v0) VDI image is not supported")
        with self._lock:
            self._note_write()
            self._grow_locked(new_size)
            self._set_geometry()

    def _grow_locked(self, new_size: int) -> None:
        h, stride = self._h, self._stride
        new_c = -(-new_size // h.cb_block)
        if new_c > MAX_BLOCKS:
            raise DiskImageError(f"{self.path}: {new_size} bytes is too large for a VDI image")
        self._zero_tail_of_last_block()
        alloc = h.c_blocks_allocated
        new_map = array("I", self._map)
        new_map.extend([BLOCK_FREE] * (new_c - h.c_blocks))
        owner = array("i", self._owner)
        off_data = h.off_data
        need = h.off_blocks + 4 * new_c
        if need > off_data:
            k = -(-(need - off_data) // stride)
            base = max(alloc, k)
            for p in range(min(k, alloc)):      # data first: copies at the end of the file
                if owner[p] >= 0:
                    self._copy_phys(p, base + p)
            for v, e in enumerate(new_map):
                if e < BLOCK_ZERO:
                    new_map[v] = e - k if e >= k else base - k + e
            owner = array("i", [-1]) * alloc
            for v, e in enumerate(new_map):
                if e < BLOCK_ZERO:
                    owner[e] = v
            off_data += k * stride
            map_writes = [(h.off_blocks, new_map.tobytes())]
        else:
            map_writes = [(h.off_blocks + 4 * h.c_blocks, new_map[h.c_blocks:].tobytes())]
        if h.image_type == TYPE_FIXED:      # a fixed image stays fully allocated
            for v in range(h.c_blocks, new_c):
                new_map[v] = len(owner)
                owner.append(v)
            end = off_data + len(owner) * stride
            if self._file_size < end:
                os.ftruncate(self._fd, end)
                os.posix_fallocate(self._fd, off_data, end - off_data)
                self._file_size = end
            map_writes = [(h.off_blocks, new_map.tobytes())]
        if struct.pack("=I", 1) != struct.pack("<I", 1):
            raise DiskImageError("big-endian hosts are not supported for resizing")
        self._h = h.with_(cb_disk=new_size, c_blocks=new_c, off_data=off_data,
                          c_blocks_allocated=len(owner)).upgraded()
        self._map, self._owner = new_map, owner
        self._committer.commit(map_writes + [(PRE_HEADER_SIZE, self._h.pack())])
        self._trim_file()

    def _copy_phys(self, src: int, dst: int) -> None:
        buf = bytearray(self._stride)
        _pread_into(self._fd, memoryview(buf), self._h.off_data + src * self._stride, self.path)
        _pwrite_all(self._fd, buf, self._h.off_data + dst * self._stride)
        self._file_size = max(self._file_size, self._h.off_data + (dst + 1) * self._stride)

    def _zero_tail_of_last_block(self) -> None:
        """Bytes past the old end inside the last block must read as zeros once the disk grows."""
        within = self.size & self._mask
        if not within:
            return
        blk = self.size >> self._shift
        e = self._map[blk]
        if e < BLOCK_ZERO:
            _pwrite_all(self._fd, self._zview[: self._bs - within], self._data_off + e * self._stride + within)

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
                _pwrite_all(self._fd, self._h.pack(), PRE_HEADER_SIZE)
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
                if self.parent is not None and self.owns_parent:
                    self.parent.close()

    def __enter__(self) -> VdiImage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<VdiImage {self.path!r} {self.variant} size={self.size} uuid={self.uuid}>"


def _load_map(fd: int, h: VdiHeader, file_size: int, path: str) -> array:
    raw = os.pread(fd, 4 * h.c_blocks, h.off_blocks)
    if len(raw) != 4 * h.c_blocks:
        raise DiskImageError(f"{path}: invalid VDI image: block map is truncated")
    bmap = array("I")
    bmap.frombytes(raw)
    if bmap.itemsize != 4:
        raise DiskImageError("platform has no 32-bit array type")
    if struct.pack("=I", 1) != struct.pack("<I", 1):
        bmap.byteswap()
    return bmap


def _index_map(bmap: array, h: VdiHeader, file_size: int, path: str) -> array:
    """Check the block map (entries in range, no data block used twice, all inside the file) and
    return the reverse index physical block -> virtual block (-1: unused slot)."""
    owner = array("i", [-1]) * h.c_blocks_allocated
    top = -1
    raw = memoryview(bmap).cast("B")
    per = _SCAN // 4
    for start in range(0, len(bmap), per):
        piece = raw[4 * start:4 * (start + per)].tobytes()
        if piece == _FREE_SCAN[:len(piece)] or piece == _ZERO_SCAN[:len(piece)]:
            continue                        # 1024 unallocated entries at once (sparse disks)
        for v in range(start, min(start + per, len(bmap))):
            e = bmap[v]
            if e < BLOCK_ZERO:
                if e >= h.c_blocks_allocated:
                    raise DiskImageError(f"{path}: invalid VDI image: block map entry {e} is beyond the "
                                         f"{h.c_blocks_allocated} allocated blocks")
                if owner[e] >= 0:
                    raise DiskImageError(f"{path}: invalid VDI image: data block {e} is used twice in the "
                                         f"block map")
                owner[e] = v
                if e > top:
                    top = e
    if top >= 0 and h.off_data + (top + 1) * h.stride > file_size:
        raise DiskImageError(f"{path}: invalid VDI image: allocated blocks extend beyond the end of the file")
    return owner


def _next_used_block(bmap: array, blk: int) -> int:
    """Index of the first block >= blk with a data block (len(bmap) if none), scanning 4 KiB of map
    at a time: runs of FREE or ZERO entries are skipped with one comparison."""
    raw = memoryview(bmap).cast("B")
    pos, end = 4 * blk, len(raw)
    while pos < end:
        stop = min(end, (pos // _SCAN + 1) * _SCAN)
        piece = raw[pos:stop].tobytes()
        n = stop - pos
        if piece != _FREE_SCAN[:n] and piece != _ZERO_SCAN[:n]:
            run = _UNUSED_RUN.match(piece).end()
            if run < n:
                return (pos + run) // 4
        pos = stop
    return len(bmap)
