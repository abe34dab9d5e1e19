"""HGCM call parameters: decode a guest's HGCMFunctionParameter32/64 array into values and
buffers, and write the service's answers back (VirtualBox's VMMDev.h / VMMDevHGCM.cpp layout).

Buffers arrive as physical page lists (what Linux's vboxguest turns every linear buffer into);
each list is checked to lie inside the request, each page inside guest RAM, before one byte is
copied.  A malformed parameter raises `HgcmParmError` carrying the VERR_* the guest gets.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from vmm.devices import vmmdev_types as T
from vmm.memory import GuestMemory, GuestMemoryError

PAGE_SIZE = 4096
MAX_PARM_BYTES = 64 << 20          # one buffer parameter
MAX_CALL_BYTES = 128 << 20         # all buffers of one call


class HgcmParmError(Exception):
    def __init__(self, rc: int, text: str):
        super().__init__(text)
        self.rc = rc


@dataclass
class HgcmParm:
    """One parameter as a service sees it: `value` for 32/64-bit ones, `data` for buffers.

    A service reads `data`, may overwrite it in place and sets `size` to the bytes it returns."""
    type: int
    value: int = 0
    data: bytearray | None = None
    direction: int = 0
    size: int = 0
    pages: list[int] = field(default_factory=list)
    first_offset: int = 0
    entry: int = 0                 # offset of the parameter entry in the request

    @property
    def is_buffer(self) -> bool:
        return self.data is not None


def entry_size(is64: bool) -> int:
    return 16 if is64 else 12


def _gather(mem: GuestMemory, pages: list[int], first: int, size: int) -> bytearray:
    out = bytearray(size)
    pos, off = 0, first
    for page in pages:
        if pos >= size:
            break
        n = min(PAGE_SIZE - off, size - pos)
        out[pos:pos + n] = mem.read(page + off, n)
        pos += n
        off = 0
    return out


def _scatter(mem: GuestMemory, pages: list[int], first: int, data: bytes | bytearray | memoryview) -> None:
    pos, off, size = 0, first, len(data)
    for page in pages:
        if pos >= size:
            break
        n = min(PAGE_SIZE - off, size - pos)
        mem.write(page + off, data[pos:pos + n])
        pos += n
        off = 0


def _page_list(
    mem: GuestMemory, req: bytes, offset: int, size: int, parms_end: int
) -> tuple[int, int, list[int]]:
    """(direction, offset in first page, page addresses) of the HGCMPageListInfo at `offset`."""
    if offset < parms_end or offset + 8 > len(req):
        raise HgcmParmError(T.VERR_INVALID_PARAMETER, f"page list at {offset} outside the request")
    flags, first, count = struct.unpack_from("<IHH", req, offset)
    if flags == 0 or flags & ~T.DIR_BOTH:
        raise HgcmParmError(T.VERR_INVALID_FLAGS, f"page list flags {flags:#x}")
    if first >= PAGE_SIZE:
        raise HgcmParmError(T.VERR_INVALID_PARAMETER, f"first page offset {first}")
    if count != (first + size + PAGE_SIZE - 1) // PAGE_SIZE:
        raise HgcmParmError(T.VERR_INVALID_PARAMETER, f"{count} pages for {size} bytes at offset {first}")
    if offset + 8 + 8 * count > len(req):
        raise HgcmParmError(T.VERR_INVALID_PARAMETER, "page list runs past the request")
    pages = list(struct.unpack_from(f"<{count}Q", req, offset + 8))
    for page in pages:
        if page & (PAGE_SIZE - 1) or not mem.contains(page, PAGE_SIZE):
            raise HgcmParmError(T.VERR_INVALID_PARAMETER, f"page {page:#x} not a page of guest RAM")
    return flags, first, pages


def decode(mem: GuestMemory, req: bytes, count: int, is64: bool) -> list[HgcmParm]:
    """The parameters of an HGCMCall request (`req`: the whole request as read from the guest)."""
    if count > T.HGCM_MAX_PARMS:
        raise HgcmParmError(T.VERR_INVALID_PARAMETER, f"{count} parameters (at most {T.HGCM_MAX_PARMS})")
    esize = entry_size(is64)
    parms_end = T.HGCM_CALL_SIZE + count * esize
    if parms_end > len(req):
        raise HgcmParmError(T.VERR_INVALID_PARAMETER, "parameters run past the request")
    total = 0
    out: list[HgcmParm] = []
    for i in range(count):
        at = T.HGCM_CALL_SIZE + i * esize
        ptype = struct.unpack_from("<I", req, at)[0]
        if ptype == T.PARM_32BIT:
            out.append(HgcmParm(ptype, value=struct.unpack_from("<I", req, at + 4)[0], entry=at))
            continue
        if ptype == T.PARM_64BIT:
            out.append(HgcmParm(ptype, value=struct.unpack_from("<Q", req, at + 4)[0], entry=at))
            continue
        size = struct.unpack_from("<I", req, at + 4)[0]
        if size > MAX_PARM_BYTES or total + size > MAX_CALL_BYTES:
            raise HgcmParmError(T.VERR_TOO_MUCH_DATA, f"parameter {i}: {size} bytes")
        total += size
        if ptype in T.LINADDR_TYPES:
            if size:
                # guest-virtual buffers would need the guest's page tables: only empty ones pass
                raise HgcmParmError(T.VERR_NOT_SUPPORTED, f"parameter {i}: linear address buffer")
            direction = {T.PARM_LINADDR_IN: T.DIR_TO_HOST, T.PARM_LINADDR_KERNEL_IN: T.DIR_TO_HOST,
                         T.PARM_LINADDR_OUT: T.DIR_FROM_HOST,
                         T.PARM_LINADDR_KERNEL_OUT: T.DIR_FROM_HOST}.get(ptype, T.DIR_BOTH)
            out.append(HgcmParm(ptype, data=bytearray(), direction=direction, entry=at))
            continue
        if ptype != T.PARM_PAGELIST:
            raise HgcmParmError(T.VERR_INVALID_PARAMETER, f"parameter {i}: type {ptype}")
        if size == 0:
            out.append(HgcmParm(ptype, data=bytearray(), direction=T.DIR_BOTH, entry=at))
            continue
        offset = struct.unpack_from("<I", req, at + 8)[0]
        direction, first, pages = _page_list(mem, req, offset, size, parms_end)
        try:
            data = _gather(mem, pages, first, size) if direction & T.DIR_TO_HOST else bytearray(size)
        except GuestMemoryError as e:
            raise HgcmParmError(T.VERR_INVALID_PARAMETER, str(e))
        out.append(HgcmParm(ptype, data=data, direction=direction, size=size, pages=pages,
                            first_offset=first, entry=at))
    return out


def write_back(mem: GuestMemory, gpa: int, parms: list[HgcmParm], is64: bool) -> None:
    """Values into the request's parameter entries, returned buffer bytes into the guest pages."""
    for p in parms:
        if p.type == T.PARM_32BIT:
            mem.write(gpa + p.entry + 4, struct.pack("<I", p.value & 0xFFFF_FFFF))
        elif p.type == T.PARM_64BIT:
            mem.write(gpa + p.entry + 4, struct.pack("<Q", p.value & 0xFFFF_FFFF_FFFF_FFFF))
        elif p.type == T.PARM_PAGELIST and p.pages:
            size = max(0, min(p.size, len(p.data)))
            if p.direction & T.DIR_FROM_HOST:
                _scatter(mem, p.pages, p.first_offset, memoryview(p.data)[:size])
            mem.write(gpa + p.entry + 4, struct.pack("<I", size))
