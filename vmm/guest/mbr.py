"""A PC master boot record: boot code, disk signature and the four primary partition entries.

The bootable guest disks carry a classic MBR so the BIOS (INT 19h) loads sector 0 and the
boot code there chains to the active partition.  Written here rather than with sfdisk so the
layout is exactly the same on every build and the tests can read it back.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SECTOR = 512
BOOT_CODE_SIZE = 440            # the part of sector 0 before the disk signature
SIGNATURE_OFFSET = 440          # 32-bit disk signature (Windows' and Linux's PARTUUID prefix)
TABLE_OFFSET = 446              # four 16-byte entries
ENTRY_SIZE = 16
BOOT_SIGNATURE = b"\x55\xaa"    # bytes 510-511 of a bootable sector
ACTIVE = 0x80

TYPE_FAT16_LBA = 0x0E
TYPE_FAT32_LBA = 0x0C
TYPE_LINUX = 0x83

# The geometry a BIOS reports for a large disk (LBA-assisted translation): 255 heads, 63 sectors.
HEADS = 255
SECTORS_PER_TRACK = 63
CHS_MAX = (1023, 254, 63)


class MbrError(ValueError):
    """A partition that does not fit the disk or the MBR's 32-bit fields."""


@dataclass(frozen=True)
class Partition:
    start_lba: int
    sectors: int
    type_id: int
    active: bool = False

    @property
    def end_lba(self) -> int:
        return self.start_lba + self.sectors


def chs(lba: int) -> bytes:
    """The packed 3-byte CHS address of an LBA (the maximum when beyond cylinder 1023)."""
    cyl, rem = divmod(lba, HEADS * SECTORS_PER_TRACK)
    head, sec = divmod(rem, SECTORS_PER_TRACK)
    sec += 1
    if cyl > CHS_MAX[0]:
        cyl, head, sec = CHS_MAX
    return bytes((head, ((cyl >> 2) & 0xC0) | sec, cyl & 0xFF))


def build_mbr(boot_code: bytes, partitions: list[Partition], disk_signature: int,
              disk_sectors: int) -> bytes:
    """Sector 0 of a disk of `disk_sectors` sectors."""
    if len(boot_code) > BOOT_CODE_SIZE:
        raise MbrError(f"boot code is {len(boot_code)} bytes; an MBR holds {BOOT_CODE_SIZE}")
    if len(partitions) > 4:
        raise MbrError("an MBR holds at most four primary partitions")
    out = bytearray(SECTOR)
    out[:len(boot_code)] = boot_code
    struct.pack_into("<I", out, SIGNATURE_OFFSET, disk_signature & 0xFFFFFFFF)
    previous_end = 1
    for i, p in enumerate(sorted(partitions, key=lambda q: q.start_lba)):
        if p.sectors <= 0 or p.start_lba < previous_end or p.end_lba > disk_sectors:
            raise MbrError(f"partition {i + 1} ({p.start_lba}+{p.sectors}) overlaps or leaves the disk")
        if p.end_lba > 0xFFFFFFFF:
            raise MbrError("partition beyond 2 TiB cannot be described by an MBR")
        previous_end = p.end_lba
        off = TABLE_OFFSET + i * ENTRY_SIZE
        out[off] = ACTIVE if p.active else 0
        out[off + 1:off + 4] = chs(p.start_lba)
        out[off + 4] = p.type_id
        out[off + 5:off + 8] = chs(p.end_lba - 1)
        struct.pack_into("<II", out, off + 8, p.start_lba, p.sectors)
    out[510:512] = BOOT_SIGNATURE
    return bytes(out)


def parse_mbr(sector: bytes) -> tuple[int, list[Partition]]:
    """(disk signature, used partition entries) of sector 0; raises MbrError when it has no 55AA."""
    if len(sector) < SECTOR or sector[510:512] != BOOT_SIGNATURE:
        raise MbrError("no MBR boot signature (55AA)")
    signature, = struct.unpack_from("<I", sector, SIGNATURE_OFFSET)
    parts = []
    for i in range(4):
        off = TABLE_OFFSET + i * ENTRY_SIZE
        start, count = struct.unpack_from("<II", sector, off + 8)
        if sector[off + 4] and count:
            parts.append(Partition(start, count, sector[off + 4], sector[off] == ACTIVE))
    return signature, parts
