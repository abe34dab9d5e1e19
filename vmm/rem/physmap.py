"""REM's guest-physical map in unicorn: RAM, the VGA hole, the PAM windows, MMIO, the firmware ROM.

Layout below 4 GiB: RAM 0-0xA0000, MMIO 0xA0000-0xC0000 (VGA), one mapping per PAM window
0xC0000-0x100000 (vmm.physmap), RAM up to the top of low RAM, MMIO up to the firmware, the
firmware image read-only at 4 GiB minus its size (or MMIO to 4 GiB without firmware).

unicorn has no ROM that ignores stores: a store to a page mapped without write permission
calls UC_HOOK_MEM_WRITE_PROT before it happens; "handled" lets it happen anyway, "not
handled" ends the run with UC_ERR_WRITE_PROT at the start of the instruction, nothing
stored.  So the hook hands the store to the MMIO bus (where vmm.physmap drops it or puts it
into RAM for a write-RAM window) and declines; REM then runs that one instruction with the
range made writable (`step_over_store`) and puts the old bytes back, so the instruction's
other effects happen and the guest never reads its own stray store.  Changing a window
drops the translated code of its range.

The hook covers only the ranges that can be read-only (the PAM windows and the firmware ROM):
the patched library keeps every store to a page inside a memory hook's range on its slow path,
so one hook over all of guest-physical memory would make every guest store a helper call.

A device range on the MMIO bus that offers `direct_ram()` (the VBE frame buffer's BAR) is
mapped onto that buffer while it is registered, so the guest's drawing costs no call into
Python per store; when the range moves or goes, its place turns back into MMIO.  The bus
changes while the guest programs a BAR, inside its port access: the mapping follows at the
start of the next run (`apply_direct`), since changing unicorn's map under the running block
corrupts it, and it follows the bus's state then, so a BAR sized and put back (all-ones
written, then the old address) costs no remapping.  Until then accesses to the new place reach
the device through MMIO, and the old place may still show the buffer.
"""

from __future__ import annotations

import ctypes
import mmap

from unicorn import UC_HOOK_MEM_WRITE_PROT, UC_PROT_ALL, UC_PROT_EXEC, UC_PROT_READ

from vmm.memory import GuestMemory
from vmm.physmap import LEGACY_END, LEGACY_START, READ_RAM, READ_ROM, VGA_HOLE_START, Window, windows_for

FOUR_GIB = 1 << 32
_RO = UC_PROT_READ | UC_PROT_EXEC


class RemPhysMap:
    def __init__(self, uc, memory: GuestMemory, firmware, windows: list[Window] | None,
                 mmio_read, mmio_write):
        self.uc = uc
        self.memory = memory
        self.firmware = firmware
        self._mmio_read = mmio_read
        self._mmio_write = mmio_write
        self._callbacks = []
        self._ones = mmap.mmap(-1, LEGACY_END - LEGACY_START)
        self._ones.write(b"\xff" * len(self._ones))
        self._ones_addr = ctypes.addressof(ctypes.c_char.from_buffer(self._ones))
        self._mapped: list[tuple[int, int, int]] = []       # legacy windows: (start, size, host address)
        self._pending: tuple[int, int] | None = None         # a declined store: (address, size)
        self._ranges: list[tuple[int, int, int]] = []        # every pointer mapping: (start, size, host)
        self._direct: dict[int, tuple[int, object]] = {}     # direct device ranges: start -> (size, pin)
        self._mmio_span = (0, 0)                             # the MMIO range below the firmware
        self._pieces: list[tuple[int, int]] = []             # its MMIO mappings now: (start, end)
        self._watched = None
        self._stale = False
        alias = firmware.alias_offset if firmware is not None else None
        self.windows = windows or windows_for(bytes(7), alias)
        self._map()

    # -- setup ---------------------------------------------------------------------------------
    def _ptr(self, start: int, size: int, host: int, perms: int) -> None:
        self.uc.mem_map_ptr(start, size, perms, host)
        self._ranges.append((start, size, host))

    def _io(self, start: int, end: int) -> None:
        def read(uc, offset, size, _data, base=start):
            return self._mmio_read(base + offset, size)

        def write(uc, offset, size, value, _data, base=start):
            self._mmio_write(base + offset, size, value)
        self._callbacks += [read, write]
        self.uc.mmio_map(start, end - start, read, None, write, None)

    def _map(self) -> None:
        mem = self.memory
        top_low = 0
        for base, length, offset in mem.regions:
            host = mem.address + offset
            if base == 0:
                self._ptr(0, VGA_HOLE_START, host, UC_PROT_ALL)
                if length > LEGACY_END:
                    self._ptr(LEGACY_END, length - LEGACY_END, host + LEGACY_END, UC_PROT_ALL)
            else:
                self._ptr(base, length, host, UC_PROT_ALL)
            if base < FOUR_GIB:
                top_low = max(top_low, base + length)
        self._io(VGA_HOLE_START, LEGACY_START)
        self._map_windows(self.windows)
        fw = self.firmware
        end = fw.base if fw is not None else FOUR_GIB
        if top_low < end:
            self._io(top_low, end)
            self._mmio_span = (top_low, end)
            self._pieces = [(top_low, end)]
        self.mmio_base = top_low
        if fw is not None:
            self._ptr(fw.base, fw.size, fw.address, _RO)

    def _host(self, w: Window) -> int:
        if w.read == READ_RAM:
            return self.memory.address + w.start
        if w.read == READ_ROM:
            return self.firmware.address + w.rom_offset
        return self._ones_addr + (w.start - LEGACY_START)

    def _map_windows(self, windows: list[Window]) -> None:
        for w in windows:
            host = self._host(w)
            perms = UC_PROT_ALL if w.read == READ_RAM and w.write_ram else _RO
            self.uc.mem_map_ptr(w.start, w.size, perms, host)
            self._mapped.append((w.start, w.size, host))

    # -- PAM changes (vCPU thread, possibly inside a port hook) ----------------------------------
    def set_windows(self, windows: list[Window]) -> None:
        uc = self.uc
        uc.ctl_remove_cache(LEGACY_START, LEGACY_END)
        for start, size, _ in self._mapped:
            uc.mem_unmap(start, size)
        self._mapped = []
        self.windows = list(windows)
        self._map_windows(self.windows)
        uc.ctl_remove_cache(LEGACY_START, LEGACY_END)     # (unmapping flushed the TLB entries)

    # -- device memory mapped directly (vCPU thread, possibly inside a port hook) ------------------
    def watch(self, bus) -> None:
        """Map the direct-capable ranges `bus` has now and follow its changes."""
        self._watched = bus
        self._stale = True
        self.apply_direct()
        bus.add_listener(self.bus_changed)

    def unwatch(self) -> None:
        if self._watched is not None:
            self._watched.remove_listener(self.bus_changed)
            self._watched = None

    def bus_changed(self, start: int, length: int, device, added: bool) -> None:
        """Any thread: a direct-capable range came or went; the next run follows the bus."""
        if getattr(device, "direct_ram", None) is not None:
            self._stale = True

    @property
    def direct_pending(self) -> bool:
        return self._stale

    @property
    def direct_ranges(self) -> list[tuple[int, int]]:
        """(start, length) of the device ranges mapped into the guest now."""
        return sorted((s, n) for s, (n, _pin) in self._direct.items())

    def apply_direct(self) -> None:
        """vCPU thread, between runs: map what the bus has now, unmap what it no longer has."""
        if not self._stale or self._watched is None:
            return
        self._stale = False
        want = {(s, n): d for s, n, d in self._watched.ranges() if getattr(d, "direct_ram", None) is not None}
        for start, (length, _pin) in list(self._direct.items()):
            if (start, length) not in want:
                self._unmap_direct(start, length)
        for (start, length), device in want.items():
            if start not in self._direct:
                self._map_direct(start, length, device.direct_ram)

    def _map_direct(self, start: int, length: int, offer) -> None:
        lo, hi = self._mmio_span
        if start & 0xFFF or length & 0xFFF or not lo <= start < start + length <= hi:
            return                      # outside plain MMIO space: stays a device range
        end = start + length
        piece = next((p for p in self._pieces if p[0] <= start and end <= p[1]), None)
        buf = offer()
        if piece is None or buf is None or len(buf) < length:
            return
        pin = ctypes.c_char.from_buffer(buf)        # the buffer cannot move or shrink while mapped
        # whole MMIO mappings are unmapped and made anew around the hole (unicorn's own split
        # would hand the right part's callbacks offsets from a new base)
        self.uc.mem_unmap(piece[0], piece[1] - piece[0])
        self._pieces.remove(piece)
        for lo, hi in ((piece[0], start), (end, piece[1])):
            if lo < hi:
                self._io(lo, hi)
                self._pieces.append((lo, hi))
        self.uc.mem_map_ptr(start, length, UC_PROT_ALL, ctypes.addressof(pin))
        self._direct[start] = (length, pin)

    def _unmap_direct(self, start: int, length: int) -> None:
        mapped = self._direct.get(start)
        if mapped is None or mapped[0] != length:
            return
        del self._direct[start]
        end = start + length
        self.uc.mem_unmap(start, length)
        # MMIO again, merged with the MMIO mappings on either side
        lo, hi = start, end
        for p in [p for p in self._pieces if p[1] == start or p[0] == end]:
            self.uc.mem_unmap(p[0], p[1] - p[0])
            self._pieces.remove(p)
            lo, hi = min(lo, p[0]), max(hi, p[1])
        self._io(lo, hi)
        self._pieces.append((lo, hi))

    # -- stores into read-only pages -------------------------------------------------------------
    def read_only_spans(self) -> list[tuple[int, int]]:
        """The guest-physical ranges (first, last address) that may be mapped read-only: the PAM
        windows (whatever they map now) and the firmware ROM."""
        spans = [(LEGACY_START, LEGACY_END - 1)]
        if self.firmware is not None:
            spans.append((self.firmware.base, self.firmware.base + self.firmware.size - 1))
        return spans

    def add_write_prot_hooks(self) -> list:
        """Hook stores into the read-only ranges (only there: see the module docstring)."""
        return [self.uc.hook_add(UC_HOOK_MEM_WRITE_PROT, self.on_write_prot, None, first, last)
                for first, last in self.read_only_spans()]

    def _range_of(self, addr: int, size: int) -> tuple[int, int, int] | None:
        for start, length, host in self._mapped + self._ranges:
            if start <= addr and addr + size <= start + length:
                return start, length, host
        return None

    def on_write_prot(self, uc, _access, addr, size, value, _data) -> bool:
        if self._range_of(addr, size) is None:
            return False
        self._pending = (addr, size)
        self._mmio_write(addr, size, value & ((1 << (8 * size)) - 1))
        return False

    @property
    def store_pending(self) -> bool:
        return self._pending is not None

    def step_over_store(self, rip: int) -> None:
        """Run the instruction at `rip` whose store was declined, with its target writable, then put
        the target's bytes back and protect it again (a UcError from the step propagates)."""
        addr, size = self._pending
        self._pending = None
        start, length, host = self._range_of(addr, size)
        old = ctypes.string_at(host + addr - start, size)
        uc = self.uc
        uc.mem_protect(start, length, UC_PROT_ALL)
        try:
            uc.emu_start(rip, 0, 0, 1)
        finally:
            ctypes.memmove(host + addr - start, old, size)
            uc.mem_protect(start, length, _RO)
            uc.ctl_remove_cache(addr & ~0xFFF, (addr + size + 0xFFF) & ~0xFFF)
