"""Port-I/O and MMIO buses: where the VM builder's placement table puts devices.

A device is a plain class with `read(offset, size) -> int` and
`write(offset, size, value)` over its own register space; it never knows its base
address.  Unclaimed reads return all-ones, unclaimed writes are dropped, as on a PC.

A device whose whole range behaves as plain memory (a frame buffer) may also offer
`direct_ram()`: the buffer behind the range, which an engine may map into the guest so that
loads and stores reach it without a call per access.  Engines learn of such ranges through
`add_listener`.
"""

from __future__ import annotations

import bisect
from typing import Protocol


class RegisterDevice(Protocol):
    def read(self, offset: int, size: int) -> int: ...
    def write(self, offset: int, size: int, value: int) -> None: ...


class _Nobody:
    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        pass


_NOBODY = _Nobody()


class Bus:
    def __init__(self, name: str):
        self.name = name
        self._starts: list[int] = []
        self._ranges: list[tuple[int, int, RegisterDevice]] = []   # (start, length, device)
        self._cache: dict[int, tuple[int, RegisterDevice] | None] = {}
        # the range of the last hit: runs of accesses to one device (a frame buffer, a ring of
        # registers) skip the lookup
        self._last: tuple[int, int, RegisterDevice] = (0, 0, _NOBODY)
        self._listeners: list = []

    def register(self, start: int, length: int, device: RegisterDevice) -> None:
        end = start + length
        for s, ln, _ in self._ranges:
            if start < s + ln and s < end:
                raise ValueError(f"{self.name}: range {start:#x}+{length:#x} overlaps {s:#x}+{ln:#x}")
        i = bisect.bisect(self._starts, start)
        self._starts.insert(i, start)
        self._ranges.insert(i, (start, length, device))
        self._cache.clear()
        self._last = (0, 0, _NOBODY)
        for fn in self._listeners:
            fn(start, length, device, True)

    def unregister(self, device: RegisterDevice) -> None:
        gone = [r for r in self._ranges if r[2] is device]
        keep = [r for r in self._ranges if r[2] is not device]
        self._ranges = keep
        self._starts = [r[0] for r in keep]
        self._cache.clear()
        self._last = (0, 0, _NOBODY)
        for start, length, dev in gone:
            for fn in self._listeners:
                fn(start, length, dev, False)

    def add_listener(self, fn) -> None:
        """fn(start, length, device, added) after every register and unregister, on that thread."""
        self._listeners.append(fn)

    def remove_listener(self, fn) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def ranges(self) -> list[tuple[int, int, RegisterDevice]]:
        """(start, length, device) of every registration, in address order."""
        return list(self._ranges)
    def lookup(self, addr: int) -> tuple[int, RegisterDevice] | None:
        hit = self._cache.get(addr, False)
        if hit is not False:
            return hit
        i = bisect.bisect_right(self._starts, addr) - 1
        res = None
        if i >= 0:
            s, ln, dev = self._ranges[i]
            if addr < s + ln:
                res = (s, dev)
                self._last = (s, s + ln, dev)
        if len(self._cache) < 4096:
            self._cache[addr] = res
        return res

    def read(self, addr: int, size: int) -> int:
        start, end, dev = self._last
        if start <= addr < end:
            return dev.read(addr - start, size)
        hit = self.lookup(addr)
        if hit is None:
            return (1 << (8 * size)) - 1
        return hit[1].read(addr - hit[0], size)

    def write(self, addr: int, size: int, value: int) -> None:
        start, end, dev = self._last
        if start <= addr < end:
            dev.write(addr - start, size, value)
            return
        hit = self.lookup(addr)
        if hit is not None:
            hit[1].write(addr - hit[0], size, value)

    # String I/O: a device whose register is a FIFO of a known length (an IDE data port during a
    # PIO block) may offer the units a REP INS would read next in one call. Both answer for the
    # units an engine may take in bulk; a device without the methods offers none.
    def string_room(self, addr: int, size: int) -> int:
        """How many units of `size` bytes the next string reads of `addr` may take in one call."""
        hit = self.lookup(addr)
        room = getattr(hit[1], "string_room", None) if hit is not None else None
        return room(addr - hit[0], size) if room is not None else 0

    def read_string(self, addr: int, size: int, count: int) -> bytes:
        """Up to `count` units (no more than string_room() said), exactly as `count` reads would
        return them one by one."""
        hit = self.lookup(addr)
        read = getattr(hit[1], "read_string", None) if hit is not None else None
        return read(addr - hit[0], size, count) if read is not None else b""
