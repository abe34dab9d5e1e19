"""QEMU's firmware configuration interface (fw_cfg), the channel SeaBIOS reads the VM from.

Why fw_cfg and not SeaBIOS's own tables: with it the firmware takes the RAM map, the CPU
count, the boot order and, above all, the ACPI tables and SMBIOS (DMI) strings the VMM
makes itself, so a guest sees VirtualBox's platform ("innotek GmbH" / "VirtualBox") and the
VMM's own DSDT, MADT and FADT rather than SeaBIOS's generic ones.

Register device, 12 bytes (PC: 0x510): offset 0 is the 16-bit selector (write), offset 1 the
data port (8-bit reads walk the selected item; past its end they read 0), offsets 4-11 the
DMA address register (big-endian; writing its low half at offset 8 starts the transfer; reads
give the "QEMU CFG" signature).  A DMA descriptor in guest memory (be32 control, be32 length,
be64 address) may select an item, skip or read bytes; writes are refused (error bit).  DMA
keeps the firmware from reading files with `rep insb`, which is also far slower.

Items are keyed by number; files (key >= FILE_FIRST) are also listed in the directory at
FILE_DIR by name.  An item may be a callable with a declared size, made when selected (the
ACPI tables need what the firmware programmed into the chipset first); its result is padded
or cut to the declared size.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

SIGNATURE = 0x0000
ID = 0x0001
UUID = 0x0002
RAM_SIZE = 0x0003
NB_CPUS = 0x0005
NUMA = 0x000D
BOOT_MENU = 0x000E
MAX_CPUS = 0x000F
FILE_DIR = 0x0019
FILE_FIRST = 0x0020
FEATURE_TRADITIONAL = 1
FEATURE_DMA = 2
DMA_SIGNATURE = 0x51454D5520434647          # "QEMU CFG"
DMA_ERROR, DMA_READ, DMA_SKIP, DMA_SELECT, DMA_WRITE = 0x01, 0x02, 0x04, 0x08, 0x10
DMA_MAX_LENGTH = 64 << 20
FILE_NAME_MAX = 56
MAX_FILES = 0x100


@dataclass
class _Item:
    size: int
    data: bytes | None = None
    make: Callable[[], bytes] | None = None

    def content(self) -> bytes:
        data = self.data if self.make is None else self.make()
        return data[:self.size].ljust(self.size, b"\0")


def _swap32(v: int) -> int:
    return int.from_bytes((v & 0xFFFF_FFFF).to_bytes(4, "little"), "big")


@dataclass
class FwCfgState:
    selector: int = 0
    offset: int = 0


class FwCfg:
    def __init__(self, memory=None):
        """memory: guest RAM for the DMA interface (None: traditional interface only)."""
        self.memory = memory
        self._dma_high = 0
        self._items: dict[int, _Item] = {}
        self._files: list[tuple[str, int]] = []
        self._selector = 0
        self._offset = 0
        self._current = b""
        self.add(SIGNATURE, b"QEMU")
        self.add(ID, struct.pack("<I", FEATURE_TRADITIONAL | (FEATURE_DMA if memory is not None else 0)))

    # -- contents (VM builder) -------------------------------------------------------------------
    def add(self, key: int, data: bytes) -> None:
        self._items[key] = _Item(len(data), data=bytes(data))

    def add_file(self, name: str, data: bytes | None = None, size: int | None = None,
                 make: Callable[[], bytes] | None = None) -> int:
        raw = name.encode()
        if not raw or len(raw) >= FILE_NAME_MAX:
            raise ValueError(f"fw_cfg file name {name!r} is empty or too long")
        if any(n == name for n, _ in self._files):
            raise ValueError(f"fw_cfg file {name!r} exists")
        if len(self._files) >= MAX_FILES:
            raise ValueError("too many fw_cfg files")
        key = FILE_FIRST + len(self._files)
        if make is not None:
            if size is None:
                raise ValueError("a generated fw_cfg file needs a declared size")
            self._items[key] = _Item(size, make=make)
        else:
            self._items[key] = _Item(len(data or b""), data=bytes(data or b""))
        self._files.append((name, key))
        self._items[FILE_DIR] = _Item(0, data=b"")
        directory = self._directory()
        self._items[FILE_DIR] = _Item(len(directory), data=directory)
        return key

    def _directory(self) -> bytes:
        out = [struct.pack(">I", len(self._files))]
        for name, key in sorted(self._files):
            out.append(struct.pack(">IHH", self._items[key].size, key, 0)
                       + name.encode().ljust(FILE_NAME_MAX, b"\0"))
        return b"".join(out)

    def file_names(self) -> list[str]:
        return [n for n, _ in self._files]

    def item(self, key: int) -> bytes | None:
        it = self._items.get(key)
        return None if it is None else it.content()

    # -- register device ---------------------------------------------------------------------------
    def _select(self, key: int) -> None:
        self._selector = key & 0xFFFF
        self._offset = 0
        self._current = self.item(self._selector) or b""

    def read(self, offset: int, size: int) -> int:
        if offset == 1 and size == 1:
            if self._offset < len(self._current):
                b = self._current[self._offset]
                self._offset += 1
                return b
            return 0
        if self.memory is not None and 4 <= offset and offset + size <= 12 and size in (1, 2, 4):
            sig = DMA_SIGNATURE.to_bytes(8, "big")
            return int.from_bytes(sig[offset - 4:offset - 4 + size], "big")
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0 and size == 2:
            self._select(value)
        elif self.memory is not None and offset == 4 and size == 4:
            self._dma_high = _swap32(value)
        elif self.memory is not None and offset == 8 and size == 4:
            addr = (self._dma_high << 32) | _swap32(value)
            self._dma_high = 0
            self._dma(addr)

    def _dma(self, addr: int) -> None:
        mem = self.memory
        if not mem.contains(addr, 16):
            return
        control, length, target = struct.unpack(">IIQ", mem.read(addr, 16))
        if control & DMA_SELECT:
            self._select(control >> 16)
        status = 0
        if control & DMA_WRITE:
            status = DMA_ERROR
        elif control & (DMA_READ | DMA_SKIP):
            length = min(length, DMA_MAX_LENGTH)
            chunk = self._current[self._offset:self._offset + length]
            if control & DMA_READ:
                data = chunk.ljust(length, b"\0")
                if mem.contains(target, length):
                    mem.write(target, data)
                else:
                    status = DMA_ERROR
            self._offset = min(len(self._current), self._offset + length)
        mem.write(addr, struct.pack(">I", status))

    # -- saved state -----------------------------------------------------------------------------
    def get_state(self) -> FwCfgState:
        return FwCfgState(self._selector, self._offset)

    def set_state(self, state: FwCfgState) -> None:
        self._select(state.selector)
        self._offset = max(0, min(int(state.offset), len(self._current)))
