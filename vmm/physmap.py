"""The PC's memory map below 1 MiB that the chipset switches: PAM segments over the BIOS area.

On a PC the range 0xC0000-0xFFFFF is either ROM (the BIOS, option ROM space) or shadow RAM,
chosen per segment by the host bridge's PAM registers (i440FX config 0x59-0x5F): PAM0's high
nibble covers 0xF0000-0xFFFFF, PAM1-6 cover 0xC0000-0xEFFFF in 16 KiB halves.  Each
nibble's bits 0-1: 0 = off (reads and writes go to the ROM / PCI), 1 = read RAM (writes to
the ROM side, i.e. dropped), 2 = write RAM (reads from the ROM side), 3 = RAM read/write.

`LegacyMemoryMap` turns the PAM bytes into windows that an engine maps (RAM pages, the
firmware's low alias, or all-ones where no ROM decodes), and is the register device on the
MMIO bus for the guest writes an engine cannot map (into a read-only window): it drops them
or, in write-RAM mode, stores them into RAM.  0xA0000-0xBFFFF is the VGA hole, never RAM.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vmm.memory import GuestMemory

VGA_HOLE_START = 0xA0000
LEGACY_START = 0xC0000
LEGACY_END = 0x100000
ROM_ALIAS_START = 0xE0000        # the firmware's last 128 KiB shows here when PAM says "off"

PAM_OFF, PAM_READ, PAM_WRITE, PAM_RW = 0, 1, 2, 3
PAM_REGISTERS = 7                # PAM0..PAM6

READ_RAM, READ_ROM, READ_ONES = "ram", "rom", "ones"


@dataclass(frozen=True)
class Window:
    start: int
    size: int
    read: str          # READ_RAM, READ_ROM (offset into the firmware image) or READ_ONES
    rom_offset: int    # for READ_ROM
    write_ram: bool    # guest stores land in RAM (else they are dropped)

    @property
    def mode(self) -> str:
        return {(True, True): "rw", (True, False): "ro"}.get((self.read == READ_RAM, self.write_ram),
                                                          "wo" if self.write_ram else "rom")


def segments() -> list[tuple[int, int, int, int]]:
    """(start, size, PAM register index, nibble shift) for the 13 switchable segments."""
    out = [(LEGACY_START + i * 0x4000, 0x4000, 1 + i // 2, 4 * (i % 2)) for i in range(12)]
    out.append((0xF0000, 0x10000, 0, 4))
    return out


def windows_for(pam: bytes | list[int], rom_alias_offset: int | None) -> list[Window]:
    """The windows for PAM0..PAM6; `rom_alias_offset` is where the image's last 128 KiB start
    (None: no firmware, off segments read all-ones)."""
    out = []
    for start, size, reg, shift in segments():
        mode = (pam[reg] >> shift) & 3
        if start >= ROM_ALIAS_START and rom_alias_offset is not None:
            rom_read, rom_off = READ_ROM, rom_alias_offset + start - ROM_ALIAS_START
        else:
            rom_read, rom_off = READ_ONES, 0
        read_ram = mode & PAM_READ
        out.append(Window(start, size, READ_RAM if read_ram else rom_read, 0 if read_ram else rom_off,
                          bool(mode & PAM_WRITE)))
    return out


class LegacyMemoryMap:
    """The current PAM windows; tells the engine when they change and takes unmapped writes."""

    def __init__(self, memory: GuestMemory, rom_alias_offset: int | None,
                 on_change: Callable[[list[Window]], None] | None = None):
        self.memory = memory
        self.rom_alias_offset = rom_alias_offset
        self.on_change = on_change
        self.pam = bytes(PAM_REGISTERS)
        self.windows = windows_for(self.pam, rom_alias_offset)

    def set_pam(self, pam: bytes) -> None:
        pam = bytes(pam[:PAM_REGISTERS])
        if pam == self.pam:
            return
        self.pam = pam
        new = windows_for(pam, self.rom_alias_offset)
        changed = new != self.windows
        self.windows = new
        if changed and self.on_change is not None:
            self.on_change(new)

    def _window(self, addr: int) -> Window | None:
        for w in self.windows:
            if w.start <= addr < w.start + w.size:
                return w
        return None

    # register device over LEGACY_START..LEGACY_END (offsets from LEGACY_START)
    def read(self, offset: int, size: int) -> int:
        """Reads an engine did not map: the all-ones of an undecoded segment, else memory."""
        addr = LEGACY_START + offset
        w = self._window(addr)
        if w is None or w.read != READ_RAM or not self.memory.contains(addr, size):
            return (1 << (8 * size)) - 1
        return int.from_bytes(self.memory.read(addr, size), "little")

    def write(self, offset: int, size: int, value: int) -> None:
        addr = LEGACY_START + offset
        if size not in (1, 2, 4, 8) or addr + size > LEGACY_END:
            return
        w = self._window(addr)
        if w is not None and w.write_ram and self.memory.contains(addr, size):
            self.memory.write(addr, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))
