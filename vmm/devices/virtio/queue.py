"""Split virtqueue mechanics (virtio 1.x §2.7): descriptor chains, indirect tables, rings.

This layer knows nothing of the device or the transport.  It turns what the guest put in
the available ring into `Chain`s whose segments are already checked to lie in guest RAM,
and puts completions in the used ring.  Every guest-supplied index, address and length
is validated: a chain that points outside RAM, loops, or is too long is returned with
`error` set (the device answers it with an error status if it can); a ring whose indexes
make no sense raises `QueueBroken` (the transport then sets DEVICE_NEEDS_RESET).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from vmm.memory import GuestMemory, note_dma

DESC_F_NEXT = 1
DESC_F_WRITE = 2
DESC_F_INDIRECT = 4
AVAIL_F_NO_INTERRUPT = 1

MAX_QUEUE_SIZE = 32768
_DESC = struct.Struct("<QIHH")


class QueueBroken(Exception):
    """The driver corrupted the queue itself (not just one request)."""


class Segment(NamedTuple):
    gpa: int
    length: int


class Chain:
    """One request: the head index and its device-readable then device-writable segments."""

    __slots__ = ("head", "readable", "writable", "error", "_mem", "_ram")

    def __init__(self, mem: GuestMemory, head: int):
        self._mem = mem
        self._ram = _low_ram(mem)
        self.head = head
        self.readable: list[Segment] = []
        self.writable: list[Segment] = []
        self.error: str | None = None

    @property
    def readable_len(self) -> int:
        return sum(s.length for s in self.readable)

    @property
    def writable_len(self) -> int:
        return sum(s.length for s in self.writable)

    def _views(self, segs: list[Segment], offset: int, length: int | None) -> list[memoryview]:
        out: list[memoryview] = []
        remaining = length
        for s in segs:
            if remaining is not None and remaining <= 0:
                break
            if offset >= s.length:
                offset -= s.length
                continue
            n = s.length - offset
            if remaining is not None:
                n = min(n, remaining)
                remaining -= n
            gpa = s.gpa + offset
            if gpa + n <= len(self._ram):
                out.append(self._ram[gpa:gpa + n])
            else:
                out.append(self._mem.view(gpa, n))
            offset = 0
        return out

    def readable_views(self, offset: int = 0, length: int | None = None) -> list[memoryview]:
        """Zero-copy windows over the readable bytes [offset, offset+length)."""
        return self._views(self.readable, offset, length)

    def writable_views(self, offset: int = 0, length: int | None = None) -> list[memoryview]:
        return self._views(self.writable, offset, length)

    def read(self, offset: int, length: int) -> bytes:
        """Gather readable bytes (short if the chain has fewer)."""
        return b"".join(bytes(v) for v in self.readable_views(offset, length))

    def write(self, offset: int, data: bytes) -> int:
        """Scatter into the writable bytes from offset; returns how many fitted."""
        done = 0
        for v in self.writable_views(offset, len(data)):
            v[:] = data[done:done + len(v)]
            done += len(v)
            note_dma(v)
        return done


def _low_ram(mem: GuestMemory) -> memoryview:
    """A view of the RAM region at guest-physical 0: most buffers live there (fast slicing)."""
    base, length, _ = mem.regions[0]
    return mem.view(0, length) if base == 0 else memoryview(b"")


class Virtqueue:
    """Driver-side layout in guest RAM plus the device's private ring positions."""

    def __init__(self, mem: GuestMemory, size: int, desc: int, avail: int, used: int,
                 event_idx: bool = False):
        if not 1 <= size <= MAX_QUEUE_SIZE or size & (size - 1):
            raise QueueBroken(f"queue size {size} is not a power of two in 1..{MAX_QUEUE_SIZE}")
        self.mem = mem
        self.size = size
        self.desc = desc
        self.avail = avail
        self.used = used
        self.event_idx = event_idx
        for base, length, what in ((desc, 16 * size, "descriptor table"),
                                   (avail, 6 + 2 * size, "available ring"),
                                   (used, 6 + 8 * size, "used ring")):
            if not mem.contains(base, length):
                raise QueueBroken(f"{what} at {base:#x} is outside guest RAM")
        self.last_avail = 0
        self.used_idx = 0
        self._signalled_used = 0      # used index when we last decided about an interrupt

    # --- available side ----------------------------------------------------------------------
    def avail_idx(self) -> int:
        return self.mem.read_u16(self.avail + 2)

    def pending(self) -> int:
        n = (self.avail_idx() - self.last_avail) & 0xFFFF
        if n > self.size:
            raise QueueBroken(f"available index moved by {n} on a queue of {self.size}")
        return n

    def pop(self) -> Chain | None:
        if not self.pending():
            return None
        slot = self.last_avail % self.size
        head = self.mem.read_u16(self.avail + 4 + 2 * slot)
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        if self.event_idx:
            # avail_event: tell the driver to notify us when it goes past what we consumed.
            self.mem.write_u16(self.used + 4 + 8 * self.size, self.last_avail)
        if head >= self.size:
            raise QueueBroken(f"available ring names descriptor {head} on a queue of {self.size}")
        return self._walk(head)

    def _walk(self, head: int) -> Chain:
        # Views are taken per request, never kept: GuestMemory must stay closable.
        chain = Chain(self.mem, head)
        readable, writable = chain.readable, chain.writable
        contains = self.mem.contains
        ram_len = len(chain._ram)
        table = chain._ram[self.desc:self.desc + 16 * self.size] \
            if self.desc + 16 * self.size <= ram_len else self.mem.read(self.desc, 16 * self.size)
        table_len = self.size
        index = head
        seen = 0
        indirect = False
        while True:
            if index >= table_len:
                chain.error = f"descriptor index {index} beyond table of {table_len}"
                return chain
            seen += 1
            if seen > table_len:
                chain.error = "descriptor chain loops or is longer than its table"
                return chain
            addr, length, flags, nxt = _DESC.unpack_from(table, 16 * index)
            if flags & DESC_F_INDIRECT:
                if indirect:
                    chain.error = "nested indirect descriptor table"
                    return chain
                if flags & DESC_F_NEXT or readable or writable:
                    chain.error = "indirect descriptor combined with a chain"
                    return chain
                if length == 0 or length % 16 or length // 16 > MAX_QUEUE_SIZE:
                    chain.error = f"bad indirect table length {length}"
                    return chain
                if not contains(addr, length):
                    chain.error = f"indirect table {addr:#x}+{length:#x} outside guest RAM"
                    return chain
                # A private copy: the driver cannot change the table under our walk.
                table, table_len = memoryview(self.mem.read(addr, length)), length // 16
                index, seen, indirect = 0, 0, True
                continue
            if length:
                if addr + length > ram_len and not contains(addr, length):
                    chain.error = f"buffer {addr:#x}+{length:#x} outside guest RAM"
                    return chain
                if flags & DESC_F_WRITE:
                    segs = writable
                elif writable:
                    chain.error = "readable descriptor after a writable one"
                    return chain
                else:
                    segs = readable
                if segs and segs[-1].gpa + segs[-1].length == addr:
                    segs[-1] = Segment(segs[-1].gpa, segs[-1].length + length)
                else:
                    segs.append(Segment(addr, length))
            if not flags & DESC_F_NEXT:
                return chain
            index = nxt

    # --- used side -------------------------------------------------------------------------------
    def push(self, head: int, written: int) -> None:
        slot = self.used_idx % self.size
        elem = self.used + 4 + 8 * slot
        self.mem.write(elem, head.to_bytes(4, "little") + (written & 0xFFFF_FFFF).to_bytes(4, "little"))
        self.used_idx = (self.used_idx + 1) & 0xFFFF
        self.mem.write_u16(self.used + 2, self.used_idx)

    def should_notify(self) -> bool:
        """After one or more pushes: does the driver want an interrupt for them?"""
        old, new = self._signalled_used, self.used_idx
        self._signalled_used = new
        if old == new:
            return False
        if self.event_idx:
            used_event = self.mem.read_u16(self.avail + 4 + 2 * self.size)
            # vring_need_event: did new pass used_event since old?
            return ((new - used_event - 1) & 0xFFFF) < ((new - old) & 0xFFFF)
        return not self.mem.read_u16(self.avail) & AVAIL_F_NO_INTERRUPT

    # --- saved state -----------------------------------------------------------------------------
    def positions(self) -> tuple[int, int]:
        return self.last_avail, self.used_idx

    def restore_positions(self, last_avail: int, used_idx: int) -> None:
        self.last_avail = last_avail & 0xFFFF
        self.used_idx = used_idx & 0xFFFF
        self._signalled_used = self.used_idx
