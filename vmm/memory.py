"""PGM: guest-physical RAM as one shared anonymous mapping.

Both engines map the same pages (unicorn via mem_map_ptr, KVM via a memory slot) and
every device reaches guest RAM only through the bounds-checked read/write here, so a
guest-supplied address can never touch host memory outside the mapping.
"""

from __future__ import annotations

import ctypes
import mmap
import weakref
from collections.abc import Callable

# RAM above this address is placed at 4 GiB so the PCI/MMIO hole below 4 GiB stays free.
LOW_RAM_LIMIT = 0xE000_0000
HIGH_RAM_BASE = 0x1_0000_0000


class GuestMemoryError(Exception):
    """A guest-physical access outside RAM."""


_BY_MAPPING: weakref.WeakValueDictionary[int, GuestMemory] = weakref.WeakValueDictionary()


class GuestMemory:
    """Guest RAM.  `write_listeners` hear of every write made here or through DMA views
    (`notify_dma`): an engine that caches translated guest code drops what was overwritten."""

    def __init__(self, size: int):
        if size <= 0 or size % 4096:
            raise ValueError("guest RAM size must be a positive multiple of 4 KiB")
        self.size = size
        self.mmap = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._view = memoryview(self.mmap)
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self.mmap))
        low = min(size, LOW_RAM_LIMIT)
        # (guest physical base, length, offset in the mapping)
        self.regions: list[tuple[int, int, int]] = [(0, low, 0)]
        if size > low:
            self.regions.append((HIGH_RAM_BASE, size - low, low))
        self.write_listeners: list[Callable[[int, int], None]] = []
        _BY_MAPPING[id(self.mmap)] = self

    def gpa_of(self, view: memoryview) -> int | None:
        """The guest-physical address a view into this RAM starts at (None if it is not one)."""
        try:
            host = ctypes.addressof(ctypes.c_char.from_buffer(view))
        except (TypeError, ValueError):
            return None
        off = host - self.address
        for base, rlen, roff in self.regions:
            if roff <= off < roff + rlen:
                return base + off - roff
        return None

    def notify_written(self, gpa: int, length: int) -> None:
        for listener in self.write_listeners:
            listener(gpa, length)

    def _offset(self, gpa: int, length: int) -> int:
        if length < 0:
            raise GuestMemoryError(f"negative length {length}")
        for base, rlen, off in self.regions:
            if base <= gpa and gpa + length <= base + rlen:
                return off + (gpa - base)
        raise GuestMemoryError(f"guest access {gpa:#x}+{length:#x} outside RAM")

    def contains(self, gpa: int, length: int = 1) -> bool:
        try:
            self._offset(gpa, length)
            return True
        except GuestMemoryError:
            return False

    def read(self, gpa: int, length: int) -> bytes:
        off = self._offset(gpa, length)
        return bytes(self._view[off:off + length])

    def view(self, gpa: int, length: int) -> memoryview:
        """A zero-copy window (for DMA into/out of disk images)."""
        off = self._offset(gpa, length)
        return self._view[off:off + length]

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        off = self._offset(gpa, len(data))
        self._view[off:off + len(data)] = data
        if self.write_listeners:
            self.notify_written(gpa, len(data))

    def read_u8(self, gpa: int) -> int:
        return self._view[self._offset(gpa, 1)]

    def read_u16(self, gpa: int) -> int:
        return int.from_bytes(self.read(gpa, 2), "little")

    def read_u32(self, gpa: int) -> int:
        return int.from_bytes(self.read(gpa, 4), "little")

    def read_u64(self, gpa: int) -> int:
        return int.from_bytes(self.read(gpa, 8), "little")

    def write_u16(self, gpa: int, v: int) -> None:
        self.write(gpa, (v & 0xFFFF).to_bytes(2, "little"))

    def write_u32(self, gpa: int, v: int) -> None:
        self.write(gpa, (v & 0xFFFF_FFFF).to_bytes(4, "little"))

    def write_u64(self, gpa: int, v: int) -> None:
        self.write(gpa, (v & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little"))

    def close(self) -> None:
        self._view.release()
        self.mmap.close()


def notify_dma(views) -> None:
    """Device DMA wrote into these views of guest RAM (disk reads): tell the RAM's listeners."""
    for v in views:
        mem = _BY_MAPPING.get(id(v.obj)) if isinstance(v, memoryview) else None
        if mem is not None and mem.write_listeners and len(v):
            gpa = mem.gpa_of(v)
            if gpa is not None:
                mem.notify_written(gpa, len(v))
