"""The VDI block map: loading it, checking it against the header and the file, and finding the
next used entry quickly (runs of FREE/ZERO entries are skipped 1024 at a time)."""

from __future__ import annotations

import os
import re
import struct
from array import array

from vmm.storage.image import DiskImageError
from vmm.storage.vdi_header import BLOCK_ZERO, VdiHeader

_UNUSED_RUN = re.compile(rb"(?:[\xfe\xff]\xff\xff\xff)*")     # FREE or ZERO entries (little-endian)
_SCAN = 4096
_FREE_SCAN = b"\xff" * _SCAN
_ZERO_SCAN = b"\xfe\xff\xff\xff" * (_SCAN // 4)


def load_map(fd: int, h: VdiHeader, file_size: int, path: str) -> array:
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


def index_map(bmap: array, h: VdiHeader, file_size: int, path: str) -> array:
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


def next_used_block(bmap: array, blk: int) -> int:
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
