"""Operations that change a VDI's layout or own blocks wholesale (grow, compact, put_block,
re-linking): used by clone, merge and resize, never by the guest's I/O path. A mixin of VdiImage,
kept apart so vdi.py stays about reading and writing."""

from __future__ import annotations

import os
import struct
import uuid
from array import array
from collections.abc import Callable

from settings import crashpoint
from vmm.storage.blockio import is_zero, pread_into, pwrite_all
from vmm.storage.image import DiskImageError
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
)


class VdiLayoutOps:
    """Needs VdiImage's state (_h, _map, _owner, _lock, _committer, ...)."""

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
            if is_zero(view, self._zeros) and self._h.image_type != TYPE_FIXED:
                self.free_block(blk, BLOCK_ZERO)
                return
            self._note_write()
            if e < BLOCK_ZERO:
                pwrite_all(self._fd, view, self._data_off + e * self._stride)
            else:
                self._allocate(blk, view, 0)

    def set_linkage(self, parent_uuid: uuid.UUID | None, parent_modify_uuid: uuid.UUID | None) -> None:
        """Point a diff image at another parent; with no parent it becomes a normal base image."""
        if self.read_only:
            raise DiskImageError(f"{self.path}: image is opened read-only")
        with self._lock:
            if parent_uuid is None:
                h = self._h.with_(image_type=TYPE_NORMAL, uuid_linkage=NULL_UUID,
                                  uuid_parent_modify=NULL_UUID)
            else:
                h = self._h.with_(image_type=TYPE_DIFF if self._h.image_type not in DIFF_TYPES
                                  else self._h.image_type,
                                  uuid_linkage=parent_uuid,
                                  uuid_parent_modify=parent_modify_uuid or NULL_UUID)
            self._h = h.upgraded()
            pwrite_all(self._fd, self._h.pack(), PRE_HEADER_SIZE)

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
                    pread_into(self._fd, view, self._data_off + e * self._stride, self.path)
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
        self._committer.atomic(map_writes + [(PRE_HEADER_SIZE, self._h.pack())])
        self._trim_file()

    def _copy_phys(self, src: int, dst: int) -> None:
        buf = bytearray(self._stride)
        pread_into(self._fd, memoryview(buf), self._h.off_data + src * self._stride, self.path)
        crashpoint.hit("vdi.grow.copy")     # before the commit: only a tail nothing points at yet
        pwrite_all(self._fd, buf, self._h.off_data + dst * self._stride)
        self._file_size = max(self._file_size, self._h.off_data + (dst + 1) * self._stride)

    def _zero_tail_of_last_block(self) -> None:
        """Bytes past the old end inside the last block must read as zeros once the disk grows."""
        within = self.size & self._mask
        if not within:
            return
        blk = self.size >> self._shift
        e = self._map[blk]
        if e < BLOCK_ZERO:
            pwrite_all(self._fd, self._zview[: self._bs - within], self._data_off + e * self._stride + within)
