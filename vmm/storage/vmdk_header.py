"""The binary parts of a VMDK hosted sparse extent: the 512-byte header ('KDMV'), the stream
markers of streamOptimized extents, and the checks that keep a hostile file from steering us.

Layout as VMware's "Virtual Disk Format 1.1" specifies it and VirtualBox's VMDK.cpp reads it
(SparseExtentHeader, VMDKMARKER). All sizes in the header are in 512-byte sectors.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from vmm.storage.image import DiskImageError

SECTOR = 512
MAGIC = b"KDMV"                 # 'VMDK' as a little-endian 32-bit number
_HEADER = struct.Struct("<4sIIQQQQIQQQB4sH433x")
assert _HEADER.size == SECTOR

FLAG_VALID_NEWLINE = 1 << 0     # the newline test characters below are meaningful
FLAG_REDUNDANT_GT = 1 << 1      # a redundant grain directory and tables exist
FLAG_ZERO_GTE = 1 << 2          # grain table entry 1 means "reads as zeros"
FLAG_COMPRESSED = 1 << 16       # grains are compressed (streamOptimized)
FLAG_MARKERS = 1 << 17          # the extent has stream markers
KNOWN_FLAGS = FLAG_VALID_NEWLINE | FLAG_REDUNDANT_GT | FLAG_ZERO_GTE | FLAG_COMPRESSED | FLAG_MARKERS

COMPRESS_NONE = 0
COMPRESS_DEFLATE = 1
GD_AT_END = 0xFFFFFFFFFFFFFFFF  # streamOptimized: the directory's place is in the footer
NEWLINE_CHARS = b"\n \r\n"      # singleEndLine, nonEndLine, doubleEndLine1, doubleEndLine2

# stream markers: numSectors (u64), size (u32), then type (u32) when size == 0
MARKER = struct.Struct("<QII")
MARKER_EOS = 0
MARKER_GT = 1
MARKER_GD = 2
MARKER_FOOTER = 3
GRAIN_MARKER = struct.Struct("<QI")     # lba (sectors), compressed size (bytes), then the data

DEFAULT_GRAIN_SECTORS = 128             # 64 KiB grains
GT_ENTRIES = 512                        # grain table entries per table
DESCRIPTOR_SECTORS = 20                 # room VirtualBox and qemu leave for an embedded descriptor

# Limits against hostile files (VirtualBox refuses the same kind of values in vmdkValidateHeader).
MAX_CAPACITY_SECTORS = 1 << 41          # 1 PiB
MAX_GRAIN_SECTORS = 1 << 11             # 1 MiB grains
MAX_DESCRIPTOR_SECTORS = 1 << 11        # 1 MiB of descriptor text
MAX_GD_ENTRIES = 1 << 24


@dataclass(frozen=True)
class SparseHeader:
    version: int
    flags: int
    capacity: int           # sectors
    grain_size: int         # sectors
    descriptor_offset: int  # sectors (0: no embedded descriptor)
    descriptor_size: int    # sectors
    gtes_per_gt: int
    rgd_offset: int         # sectors
    gd_offset: int          # sectors
    overhead: int           # sectors of metadata before the first grain
    unclean_shutdown: int
    newline_chars: bytes
    compress_algorithm: int

    @property
    def compressed(self) -> bool:
        return bool(self.flags & FLAG_COMPRESSED)

    @property
    def markers(self) -> bool:
        return bool(self.flags & FLAG_MARKERS)

    @property
    def grain_bytes(self) -> int:
        return self.grain_size * SECTOR

    @property
    def gt_coverage(self) -> int:
        """Sectors of the disk one grain table covers."""
        return self.gtes_per_gt * self.grain_size

    @property
    def gd_entries(self) -> int:
        return -(-self.capacity // self.gt_coverage)

    @property
    def gt_sectors(self) -> int:
        return -(-self.gtes_per_gt * 4 // SECTOR)

    @property
    def gd_sectors(self) -> int:
        return -(-self.gd_entries * 4 // SECTOR)

    def pack(self) -> bytes:
        return _HEADER.pack(MAGIC, self.version, self.flags, self.capacity, self.grain_size,
                            self.descriptor_offset, self.descriptor_size, self.gtes_per_gt, self.rgd_offset,
                            self.gd_offset, self.overhead, self.unclean_shutdown, self.newline_chars,
                            self.compress_algorithm)

    def with_(self, **changes) -> SparseHeader:
        return replace(self, **changes)


def has_magic(raw: bytes) -> bool:
    return raw[:4] == MAGIC


def parse_header(raw: bytes, path: str) -> SparseHeader:
    """Unpack and validate a sparse extent header (not yet against the file size)."""
    if len(raw) < SECTOR or not has_magic(raw):
        raise DiskImageError(f"{path}: VMDK: not a sparse extent (no 'KDMV' header)")
    (_, version, flags, capacity, grain, desc_off, desc_size, gtes, rgd, gd, overhead, unclean, nl,
     compress) = _HEADER.unpack_from(raw)
    h = SparseHeader(version, flags, capacity, grain, desc_off, desc_size, gtes, rgd, gd, overhead, unclean,
                     nl, compress)
    if version not in (1, 2, 3):
        raise DiskImageError(f"{path}: VMDK: unsupported sparse extent version {version}")
    if flags & FLAG_VALID_NEWLINE and nl != NEWLINE_CHARS:
        raise DiskImageError(f"{path}: VMDK: the header's newline test characters are corrupted "
                             "(the file was probably transferred in text mode)")
    if flags & ~KNOWN_FLAGS & 0xFFFF:
        raise DiskImageError(f"{path}: VMDK: unknown header flags {flags:#x}")
    if grain < 8 or grain > MAX_GRAIN_SECTORS or grain & (grain - 1):
        raise DiskImageError(f"{path}: VMDK: invalid grain size of {grain} sectors")
    if capacity == 0 or capacity > MAX_CAPACITY_SECTORS:
        raise DiskImageError(f"{path}: VMDK: invalid capacity of {capacity} sectors")
    if gtes != GT_ENTRIES:
        raise DiskImageError(f"{path}: VMDK: unsupported grain table size of {gtes} entries")
    if h.gd_entries > MAX_GD_ENTRIES:
        raise DiskImageError(f"{path}: VMDK: the grain directory would have {h.gd_entries} entries")
    if desc_size > MAX_DESCRIPTOR_SECTORS or (desc_size and not desc_off):
        raise DiskImageError(f"{path}: VMDK: invalid embedded descriptor ({desc_size} sectors at {desc_off})")
    if flags & FLAG_COMPRESSED and compress != COMPRESS_DEFLATE:
        raise DiskImageError(f"{path}: VMDK: unsupported grain compression {compress}")
    return h


def new_header(capacity: int, stream: bool = False, grain: int = DEFAULT_GRAIN_SECTORS,
               embedded_descriptor: bool = True) -> SparseHeader:
    """A header for a new extent of `capacity` sectors (metadata offsets filled in by the layout)."""
    flags = FLAG_VALID_NEWLINE
    if stream:
        flags |= FLAG_COMPRESSED | FLAG_MARKERS
    else:
        flags |= FLAG_REDUNDANT_GT
    return SparseHeader(version=3 if stream else 1, flags=flags, capacity=capacity, grain_size=grain,
                        descriptor_offset=1 if embedded_descriptor else 0,
                        descriptor_size=DESCRIPTOR_SECTORS if embedded_descriptor else 0,
                        gtes_per_gt=GT_ENTRIES, rgd_offset=0, gd_offset=0, overhead=0, unclean_shutdown=0,
                        newline_chars=NEWLINE_CHARS, compress_algorithm=COMPRESS_DEFLATE if stream else 0)


def pack_marker(num_sectors: int, size: int, mtype: int) -> bytes:
    return MARKER.pack(num_sectors, size, mtype).ljust(SECTOR, b"\0")
