"""QEMU's firmware configuration interface (fw_cfg), the channel SeaBIOS reads the VM from.

Why fw_cfg and not SeaBIOS's own tables: with it the firmware takes the RAM map, the CPU
count, the boot order and, above all, the ACPI tables and SMBIOS (DMI) strings the VMM
makes itself, so a guest sees VirtualBox's platform ("innotek GmbH" / "VirtualBox") and the
VMM's own DSDT, MADT and FADT rather than SeaBIOS's generic ones.

Register device, 2 bytes (PC: 0x510): offset 0 is the 16-bit selector (write), offset 1 the
data port (8-bit reads walk the selected item; past its end they read 0).  Only the
traditional interface (ID bit 0): no DMA, no writes.

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


@dataclass
class FwCfgState:
    selector: int = 0
    offset: int = 0


class FwCfg:
    def __init__(self):
        self._items: dict[int, _Item] = {}
        self._files: list[tuple[str, int]] = []
        self._selector = 0
        self._offset = 0
        self._current = b""
        self.add(SIGNATURE, b"QEMU")
        self.add(ID, struct.pack("<I", FEATURE_TRADITIONAL))

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
            out.append(struct.pack(">IHH", self._items[key].size, key, 0) + name.encode().ljust(FILE_NAME_MAX, b"\0"))
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
        return 0 if size in (1, 2, 4) else 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0 and size == 2:
            self._select(value)

    # -- saved state -----------------------------------------------------------------------------
    def get_state(self) -> FwCfgState:
        return FwCfgState(self._selector, self._offset)

    def set_state(self, state: FwCfgState) -> None:
        self._select(state.selector)
        self._offset = max(0, min(int(state.offset), len(self._current)))
