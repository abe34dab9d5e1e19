"""The VDI pre-header and header: byte layout, validation and serialisation.

VirtualBox's VDI (VDICore.h) has three header shapes we must read: the old v0 header, the plain
v1.1 header of 384 bytes (what QEMU writes) and the v1.1 "plus" header of 400 bytes with LCHS
geometry (what VirtualBox writes and what we create). Every field of a header read from disk is
validated here so the I/O layer can trust the numbers (no huge allocations, nothing outside the file).
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, replace

from vmm.storage.image import DiskImageError

SIGNATURE = 0xBEDA107F
VERSION_1_1 = 0x00010001
PRE_HEADER_SIZE = 72
HEADER_V1_SIZE = 384
HEADER_V1PLUS_SIZE = 400
HEADER_V0_SIZE = 348
ORACLE_TEXT = b"<<< Oracle VirtualBox Disk Image >>>\n".ljust(64, b"\0")

TYPE_NORMAL, TYPE_FIXED, TYPE_UNDO, TYPE_DIFF = 1, 2, 3, 4
DIFF_TYPES = (TYPE_UNDO, TYPE_DIFF)  # images whose FREE blocks read through to a parent
FLAG_ZERO_EXPAND = 0x1           # VD_VDI_IMAGE_FLAGS_ZERO_EXPAND (0x100) as stored (>> 8)
KNOWN_FLAGS = FLAG_ZERO_EXPAND

BLOCK_FREE = 0xFFFFFFFF
BLOCK_ZERO = 0xFFFFFFFE
DEFAULT_BLOCK_SIZE = 1 << 20
DATA_ALIGN = 1 << 20
SECTOR = 512

# Sanity limits that keep a hostile header from making us allocate gigabytes.
MAX_BLOCK_SIZE = 64 << 20
MAX_BLOCKS = 1 << 26             # 64 Mi map entries (256 MiB map), 64 TiB with 1 MiB blocks
MAX_COMMENT = 256
NULL_UUID = uuid.UUID(int=0)

_PRE = struct.Struct("<64sII")
_V1 = struct.Struct("<III256sII4IIQIIII16s16s16s16s")
_LCHS = struct.Struct("<4I")
_V0 = struct.Struct("<II256s4IQIII16s16s16s")
assert _V1.size == HEADER_V1_SIZE and _V0.size == HEADER_V0_SIZE


@dataclass(frozen=True)
class VdiHeader:
    """One image's header as numbers; `pack()` gives the bytes at offset 72."""

    version: int
    cb_header: int
    image_type: int
    flags: int
    comment: bytes
    off_blocks: int
    off_data: int
    legacy_geometry: tuple[int, int, int, int]
    dummy: int
    cb_disk: int
    cb_block: int
    cb_block_extra: int
    c_blocks: int
    c_blocks_allocated: int
    uuid_create: uuid.UUID
    uuid_modify: uuid.UUID
    uuid_linkage: uuid.UUID
    uuid_parent_modify: uuid.UUID
    lchs_geometry: tuple[int, int, int, int] | None
    pre_text: bytes = ORACLE_TEXT

    @property
    def major(self) -> int:
        return self.version >> 16

    @property
    def stride(self) -> int:
        """Bytes one data block takes in the file."""
        return self.cb_block + self.cb_block_extra

    def with_(self, **changes) -> VdiHeader:
        return replace(self, **changes)

    def pack(self) -> bytes:
        """The header bytes that live at offset PRE_HEADER_SIZE (size depends on the version)."""
        if self.major == 0:
            return _V0.pack(self.image_type, self.flags, self.comment, *self.legacy_geometry,
                            self.cb_disk, self.cb_block, self.c_blocks, self.c_blocks_allocated,
                            self.uuid_create.bytes_le, self.uuid_modify.bytes_le,
                            self.uuid_linkage.bytes_le)
        body = _V1.pack(self.cb_header, self.image_type, self.flags, self.comment, self.off_blocks,
                        self.off_data, *self.legacy_geometry, self.dummy, self.cb_disk, self.cb_block,
                        self.cb_block_extra, self.c_blocks, self.c_blocks_allocated,
                        self.uuid_create.bytes_le, self.uuid_modify.bytes_le,
                        self.uuid_linkage.bytes_le, self.uuid_parent_modify.bytes_le)
        if self.cb_header >= HEADER_V1PLUS_SIZE:
            body += _LCHS.pack(*(self.lchs_geometry or (0, 0, 0, SECTOR)))
        return body

    def pack_pre_header(self) -> bytes:
        return _PRE.pack(self.pre_text[:64], SIGNATURE, self.version)

    def upgraded(self) -> VdiHeader:
        """A writable 384-byte v1.1 header becomes the 400-byte one, as VirtualBox does, if it fits."""
        if (self.major == 1 and self.cb_header == HEADER_V1_SIZE
                and self.off_blocks >= PRE_HEADER_SIZE + HEADER_V1PLUS_SIZE):
            return replace(self, cb_header=HEADER_V1PLUS_SIZE, lchs_geometry=(0, 0, 0, SECTOR))
        return self


def new_header(size: int, *, fixed: bool, diff: bool, block_size: int = DEFAULT_BLOCK_SIZE,
               image_uuid: uuid.UUID | None = None, parent_uuid: uuid.UUID = NULL_UUID,
               parent_modify_uuid: uuid.UUID = NULL_UUID) -> VdiHeader:
    """The header VirtualBox writes for a new image: 400-byte header, map and data aligned to 1 MiB."""
    if size <= 0 or size % SECTOR:
        raise DiskImageError(f"VDI size must be a positive multiple of {SECTOR} bytes, not {size}")
    if block_size < SECTOR or block_size & (block_size - 1) or block_size > MAX_BLOCK_SIZE:
        raise DiskImageError(f"invalid VDI block size {block_size}")
    c_blocks = -(-size // block_size)
    if c_blocks > MAX_BLOCKS:
        raise DiskImageError(f"VDI size {size} is too large")
    off_blocks = _align(PRE_HEADER_SIZE + HEADER_V1PLUS_SIZE, DATA_ALIGN)
    off_data = _align(off_blocks + 4 * c_blocks, DATA_ALIGN)
    image_type = TYPE_DIFF if diff else (TYPE_FIXED if fixed else TYPE_NORMAL)
    return VdiHeader(
        version=VERSION_1_1, cb_header=HEADER_V1PLUS_SIZE, image_type=image_type, flags=0,
        comment=bytes(MAX_COMMENT), off_blocks=off_blocks, off_data=off_data,
        legacy_geometry=(0, 0, 0, SECTOR), dummy=0, cb_disk=size, cb_block=block_size,
        cb_block_extra=0, c_blocks=c_blocks, c_blocks_allocated=c_blocks if fixed else 0,
        uuid_create=image_uuid or uuid.uuid4(), uuid_modify=uuid.uuid4(), uuid_linkage=parent_uuid,
        uuid_parent_modify=parent_modify_uuid, lchs_geometry=(0, 0, 0, SECTOR))


def has_signature(first: bytes) -> bool:
    return len(first) >= PRE_HEADER_SIZE and struct.unpack_from("<I", first, 64)[0] == SIGNATURE


def parse_header(raw: bytes, file_size: int, where: str) -> VdiHeader:
    """Decode and validate the first bytes of a VDI file (at least 472 bytes, or the whole file)."""
    def bad(msg: str) -> DiskImageError:
        return DiskImageError(f"{where}: invalid VDI image: {msg}")

    if len(raw) < PRE_HEADER_SIZE:
        raise bad("file too short for a VDI pre-header")
    text, sig, version = _PRE.unpack_from(raw, 0)
    if sig != SIGNATURE:
        raise bad(f"bad signature {sig:#010x}")
    major = version >> 16
    if major == 0:
        hdr = _parse_v0(raw, version, text, bad)
    elif major == 1:
        hdr = _parse_v1(raw, version, text, bad)
    else:
        raise bad(f"unsupported version {major}.{version & 0xFFFF}")
    _validate(hdr, file_size, bad)
    return hdr


def _parse_v0(raw: bytes, version: int, text: bytes, bad) -> VdiHeader:
    if len(raw) < PRE_HEADER_SIZE + HEADER_V0_SIZE:
        raise bad("file too short for a v0 header")
    (itype, flags, comment, g0, g1, g2, g3, cb_disk, cb_block, c_blocks, c_alloc,
     u_create, u_modify, u_link) = _V0.unpack_from(raw, PRE_HEADER_SIZE)
    off_blocks = PRE_HEADER_SIZE + HEADER_V0_SIZE
    return VdiHeader(
        version=version, cb_header=HEADER_V0_SIZE, image_type=itype, flags=flags, comment=comment,
        off_blocks=off_blocks, off_data=off_blocks + 4 * c_blocks, legacy_geometry=(g0, g1, g2, g3),
        dummy=0, cb_disk=cb_disk, cb_block=cb_block, cb_block_extra=0, c_blocks=c_blocks,
        c_blocks_allocated=c_alloc, uuid_create=uuid.UUID(bytes_le=u_create),
        uuid_modify=uuid.UUID(bytes_le=u_modify), uuid_linkage=uuid.UUID(bytes_le=u_link),
        uuid_parent_modify=NULL_UUID, lchs_geometry=None, pre_text=text)


def _parse_v1(raw: bytes, version: int, text: bytes, bad) -> VdiHeader:
    if len(raw) < PRE_HEADER_SIZE + HEADER_V1_SIZE:
        raise bad("file too short for a v1 header")
    (cb_header, itype, flags, comment, off_blocks, off_data, g0, g1, g2, g3, dummy, cb_disk, cb_block,
     cb_extra, c_blocks, c_alloc, u_create, u_modify, u_link, u_pmod) = _V1.unpack_from(raw, PRE_HEADER_SIZE)
    if cb_header < HEADER_V1_SIZE:
        raise bad(f"header size {cb_header} is smaller than {HEADER_V1_SIZE}")
    lchs = None
    if cb_header >= HEADER_V1PLUS_SIZE:
        if len(raw) < PRE_HEADER_SIZE + HEADER_V1PLUS_SIZE:
            raise bad("file too short for a v1.1 header with geometry")
        lchs = _LCHS.unpack_from(raw, PRE_HEADER_SIZE + HEADER_V1_SIZE)
        if lchs[3] != SECTOR:
            raise bad(f"LCHS sector size {lchs[3]} is not {SECTOR}")
    return VdiHeader(
        version=version, cb_header=cb_header, image_type=itype, flags=flags, comment=comment,
        off_blocks=off_blocks, off_data=off_data, legacy_geometry=(g0, g1, g2, g3), dummy=dummy,
        cb_disk=cb_disk, cb_block=cb_block, cb_block_extra=cb_extra, c_blocks=c_blocks,
        c_blocks_allocated=c_alloc, uuid_create=uuid.UUID(bytes_le=u_create),
        uuid_modify=uuid.UUID(bytes_le=u_modify), uuid_linkage=uuid.UUID(bytes_le=u_link),
        uuid_parent_modify=uuid.UUID(bytes_le=u_pmod), lchs_geometry=lchs, pre_text=text)


def _validate(h: VdiHeader, file_size: int, bad) -> None:
    if h.image_type not in (TYPE_NORMAL, TYPE_FIXED, TYPE_UNDO, TYPE_DIFF):
        raise bad(f"unknown image type {h.image_type}")
    if h.flags & ~KNOWN_FLAGS:
        raise bad(f"unknown image flags {h.flags:#x}")
    if h.major == 1:
        if h.off_blocks < PRE_HEADER_SIZE + h.cb_header:
            raise bad(f"block map offset {h.off_blocks:#x} overlaps the header")
        if h.cb_header > h.off_blocks:
            raise bad(f"header size {h.cb_header} is larger than the space before the block map")
    if h.cb_block < SECTOR or h.cb_block & (h.cb_block - 1):
        raise bad(f"block size {h.cb_block} is not a power of two >= {SECTOR}")
    if h.cb_block > MAX_BLOCK_SIZE:
        raise bad(f"block size {h.cb_block} is larger than {MAX_BLOCK_SIZE}")
    if h.cb_block_extra and (h.cb_block_extra & (h.cb_block_extra - 1) or h.cb_block_extra > h.cb_block):
        raise bad(f"block extra size {h.cb_block_extra} is not a power of two <= the block size")
    if h.cb_disk < SECTOR:
        raise bad(f"disk size {h.cb_disk} is too small")
    if h.c_blocks == 0 or h.c_blocks > MAX_BLOCKS:
        raise bad(f"block count {h.c_blocks} is out of range")
    if h.c_blocks * h.cb_block < h.cb_disk:
        raise bad(f"{h.c_blocks} blocks of {h.cb_block} bytes cannot hold {h.cb_disk} bytes")
    if h.c_blocks_allocated > h.c_blocks:
        raise bad(f"allocated block count {h.c_blocks_allocated} exceeds block count {h.c_blocks}")
    if h.off_data < h.off_blocks + 4 * h.c_blocks:
        raise bad(f"data offset {h.off_data:#x} overlaps the block map")
    if h.off_blocks + 4 * h.c_blocks > file_size:
        raise bad("block map extends beyond the end of the file")
    if h.uuid_create == NULL_UUID:
        raise bad("image UUID is null")
    if h.uuid_modify == NULL_UUID and h.major == 1:
        raise bad("modification UUID is null")
    if h.image_type in DIFF_TYPES and h.uuid_linkage == NULL_UUID:
        raise bad("differencing image without a parent UUID")
    if h.image_type not in DIFF_TYPES and h.uuid_linkage != NULL_UUID:
        raise bad("non-differencing image with a parent UUID")


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to
