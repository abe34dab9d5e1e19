"""HM's guest-physical map as KVM memory slots: RAM, the VGA hole, the PAM windows, the firmware ROM.

Slots: 0 = RAM below the VGA hole, 1 = RAM from 1 MiB to the top of low RAM, 2 = RAM above
4 GiB, 3 = the firmware image read-only at 4 GiB minus its size, 4.. = one per PAM window
(vmm.physmap) that is backed by memory: RAM read/write, RAM read-only, or the firmware's low
alias read-only.  KVM turns a store into a read-only slot, and any access where no slot is,
into an MMIO exit; EM hands those to the MMIO bus, where vmm.physmap drops the store or puts
it into RAM (write-RAM mode) and undecoded segments read as all-ones.  Windows change on the
vCPU thread between runs (a PAM write is an I/O exit), so slots are replaced with no vCPU
inside KVM_RUN.
"""

from __future__ import annotations

import ctypes

from vmm.hm import abi
from vmm.hm.kvm import ioctl
from vmm.memory import GuestMemory
from vmm.physmap import LEGACY_END, READ_RAM, READ_ROM, VGA_HOLE_START, Window

KVM_MEM_READONLY = 1 << 1
SLOT_LOW, SLOT_MID, SLOT_HIGH, SLOT_ROM, SLOT_WINDOWS = 0, 1, 2, 3, 4


def base_slots(memory: GuestMemory, firmware) -> list[tuple[int, int, int, int, int]]:
    """(slot, flags, guest address, size, host address) of the fixed slots."""
    out = []
    for base, length, offset in memory.regions:
        host = memory.address + offset
        if base == 0:
            out.append((SLOT_LOW, 0, 0, VGA_HOLE_START, host))
            if length > LEGACY_END:
                out.append((SLOT_MID, 0, LEGACY_END, length - LEGACY_END, host + LEGACY_END))
        else:
            out.append((SLOT_HIGH, 0, base, length, host))
    if firmware is not None:
        out.append((SLOT_ROM, KVM_MEM_READONLY, firmware.base, firmware.size, firmware.address))
    return out


def window_slots(
    memory: GuestMemory, firmware, windows: list[Window]
) -> list[tuple[int, int, int, int, int]]:
    out = []
    for i, w in enumerate(windows):
        if w.read == READ_RAM:
            out.append((SLOT_WINDOWS + i, 0 if w.write_ram else KVM_MEM_READONLY, w.start, w.size,
                        memory.address + w.start))
        elif w.read == READ_ROM and firmware is not None:
            out.append((SLOT_WINDOWS + i, KVM_MEM_READONLY, w.start, w.size, firmware.address + w.rom_offset))
    return out


class HmPhysMap:
    def __init__(self, vm_fd: int, memory: GuestMemory, firmware, windows: list[Window], readonly_ok: bool):
        needs_readonly = firmware is not None or any(w.read != READ_RAM or not w.write_ram for w in windows)
        if needs_readonly and not readonly_ok:
            raise ValueError("/dev/kvm lacks KVM_CAP_READONLY_MEM, needed for the firmware ROM and PAM")
        self.fd = vm_fd
        self.memory = memory
        self.firmware = firmware
        self._windows: list[tuple[int, int, int, int, int]] = []
        for slot in base_slots(memory, firmware):
            self._set(*slot)
        self.set_windows(windows)

    def _set(self, slot: int, flags: int, gpa: int, size: int, host: int) -> None:
        region = abi.KvmUserspaceMemoryRegion(slot, flags, gpa, size, host)
        ioctl(self.fd, abi.KVM_SET_USER_MEMORY_REGION, ctypes.addressof(region), "KVM_SET_USER_MEMORY_REGION")

    def set_windows(self, windows: list[Window]) -> None:
        new = window_slots(self.memory, self.firmware, windows)
        for slot, _flags, gpa, _size, _host in self._windows:
            if not any(s == (slot, _flags, gpa, _size, _host) for s in new):
                self._set(slot, 0, gpa, 0, 0)                 # size 0 deletes the slot
        for s in new:
            if s not in self._windows:
                self._set(*s)
        self._windows = new
