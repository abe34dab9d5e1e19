"""Direct kernel boot: the Linux x86 boot protocol for bzImage and vmlinux, or a flat binary.

- bzImage ("HdrS" at 0x202): setup header copied into a zero page with the e820 map,
  command line and initrd; the protected-mode part loaded at 1 MiB and entered at
  code32_start in flat 32-bit mode with ESI = zero page.
- vmlinux ELF: PT_LOAD segments at their physical addresses; entered through the PVH
  note (XEN_ELFNOTE_PHYS32_ENTRY) in 32-bit mode with EBX = hvm_start_info, or, without
  that note, at the 64-bit entry with RSI = zero page and identity-mapped page tables.
- anything else: a flat binary at 0x7C00 entered in real mode at 0000:7C00, DL = 0x80.
Every size and address taken from the image is checked against guest RAM first.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from vmm.boot import cpu_setup
from vmm.boot.layout import (
    CMDLINE_ADDR,
    CMDLINE_MAX,
    E820_ACPI,
    FLAT_LOAD,
    KERNEL_ADDR,
    START_INFO_MEMMAP,
    START_INFO_MODLIST,
    ZERO_PAGE,
    E820Entry,
    e820_map,
)
from vmm.engine import CpuState
from vmm.memory import GuestMemory

XEN_ELFNOTE_PHYS32_ENTRY = 18
HVM_START_MAGIC = 0x336EC578
START_KERNEL_MAP = 0xFFFF_FFFF_8000_0000
MAX_E820 = 128


class BootError(Exception):
    """The kernel image, initrd or command line cannot be booted with this much RAM."""


@dataclass
class BootImage:
    kind: str                     # "bzImage", "vmlinux-pvh", "vmlinux-64", "flat"
    state: CpuState
    entry: int
    details: dict = field(default_factory=dict)


def _ram_regions(memory: GuestMemory) -> list[tuple[int, int]]:
    return [(base, length) for base, length, _ in memory.regions]


def _low_ram_end(memory: GuestMemory) -> int:
    return memory.regions[0][1]


def _place_initrd(memory: GuestMemory, initrd: bytes, kernel_end: int, limit: int) -> int:
    top = min(_low_ram_end(memory), limit + 1)
    addr = (top - len(initrd)) & ~0xFFF
    if addr < kernel_end:
        raise BootError(f"initrd ({len(initrd)} bytes) does not fit in guest RAM above the kernel")
    memory.write(addr, initrd)
    return addr


def _write_cmdline(memory: GuestMemory, cmdline: str, max_len: int) -> int:
    data = cmdline.encode()
    if len(data) > min(max_len, CMDLINE_MAX - 1):
        raise BootError(f"kernel command line longer than {min(max_len, CMDLINE_MAX - 1)} bytes")
    memory.write(CMDLINE_ADDR, data + b"\0")
    return CMDLINE_ADDR


def detect(image: bytes) -> str:
    if len(image) > 0x206 and image[0x202:0x206] == b"HdrS":
        return "bzImage"
    if image[:4] == b"\x7fELF":
        return "vmlinux"
    return "flat"


def load(memory: GuestMemory, image: bytes, initrd: bytes | None = None, cmdline: str = "",
         reserved: Sequence[E820Entry] = (), rsdp: int = 0) -> BootImage:
    """Put the image (and initrd, command line, boot tables) into guest RAM; return the entry state."""
    kind = detect(image)
    if kind == "bzImage":
        return _load_bzimage(memory, image, initrd, cmdline, list(reserved), rsdp)
    if kind == "vmlinux":
        return _load_elf(memory, image, initrd, cmdline, list(reserved), rsdp)
    if initrd:
        raise BootError("an initrd needs a Linux kernel (bzImage or vmlinux), not a flat binary")
    if len(image) == 0 or FLAT_LOAD + len(image) > _low_ram_end(memory) or FLAT_LOAD + len(image) > 0xA0000:
        raise BootError(f"flat binary of {len(image)} bytes does not fit between 0x7C00 and 0xA0000")
    memory.write(FLAT_LOAD, image)
    state = cpu_setup.real_mode(0, FLAT_LOAD, FLAT_LOAD)
    state.gpr["rdx"] = 0x80
    return BootImage("flat", state, FLAT_LOAD, {"size": len(image)})


# ---- boot_params ---------------------------------------------------------------------------

def _zero_page(memory: GuestMemory, header: bytes, cmdline_addr: int, initrd_addr: int, initrd_len: int,
               reserved: list[E820Entry], rsdp: int) -> None:
    zp = bytearray(4096)
    zp[0x1F1:0x1F1 + len(header)] = header
    zp[0x210] = 0xFF                                   # type_of_loader: undefined
    zp[0x211] |= 0x80                                  # loadflags: CAN_USE_HEAP
    struct.pack_into("<H", zp, 0x224, 0xFE00)          # heap_end_ptr
    struct.pack_into("<I", zp, 0x228, cmdline_addr)
    struct.pack_into("<II", zp, 0x218, initrd_addr & 0xFFFFFFFF, initrd_len & 0xFFFFFFFF)
    struct.pack_into("<II", zp, 0x0C0, initrd_addr >> 32, initrd_len >> 32)
    struct.pack_into("<Q", zp, 0x070, rsdp)            # acpi_rsdp_addr
    entries = e820_map(_ram_regions(memory), reserved)
    if len(entries) > MAX_E820:
        raise BootError("too many e820 entries")
    zp[0x1E8] = len(entries)
    for i, e in enumerate(entries):
        struct.pack_into("<QQI", zp, 0x2D0 + 20 * i, e.addr, e.size, e.type)
    memory.write(ZERO_PAGE, bytes(zp))


def _load_bzimage(memory: GuestMemory, image: bytes, initrd: bytes | None, cmdline: str,
                  reserved: list[E820Entry], rsdp: int) -> BootImage:
    version = struct.unpack_from("<H", image, 0x206)[0]
    if version < 0x020A:
        raise BootError(f"boot protocol {version >> 8}.{version & 0xFF} is too old (need 2.10+)")
    if not image[0x211] & 0x01:
        raise BootError("not a bzImage (loadflags.LOADED_HIGH clear)")
    setup_sects = image[0x1F1] or 4
    pm_offset = (setup_sects + 1) * 512
    kernel = image[pm_offset:]
    init_size = struct.unpack_from("<I", image, 0x260)[0]
    kernel_end = KERNEL_ADDR + max(len(kernel), init_size)
    if not kernel or kernel_end > _low_ram_end(memory):
        raise BootError(f"kernel needs {kernel_end:#x} bytes of low RAM; guest has {_low_ram_end(memory):#x}")
    memory.write(KERNEL_ADDR, kernel)
    header_end = 0x202 + image[0x201]
    header = image[0x1F1:min(header_end, len(image), 0x290)]
    cmdline_size = struct.unpack_from("<I", image, 0x238)[0] if version >= 0x0206 else 255
    cmd_addr = _write_cmdline(memory, cmdline, cmdline_size)
    initrd_addr = 0
    if initrd:
        limit = struct.unpack_from("<I", image, 0x22C)[0]
        initrd_addr = _place_initrd(memory, initrd, kernel_end, limit)
    _zero_page(memory, header, cmd_addr, initrd_addr, len(initrd or b""), reserved, rsdp)
    entry = struct.unpack_from("<I", image, 0x214)[0]
    if entry != KERNEL_ADDR:
        raise BootError(f"code32_start {entry:#x} is not the load address {KERNEL_ADDR:#x}")
    state = cpu_setup.protected_mode_32(memory, entry, rsi=ZERO_PAGE)
    return BootImage("bzImage", state, entry, {"protocol": f"{version >> 8}.{version & 0xFF}",
                                               "initrd_addr": initrd_addr, "kernel_size": len(kernel)})


# ---- ELF -----------------------------------------------------------------------------------

def _elf_segments(image: bytes):
    if image[4] != 2 or image[5] != 1 or struct.unpack_from("<H", image, 0x12)[0] != 0x3E:
        raise BootError("vmlinux is not a little-endian x86-64 ELF")
    phoff, = struct.unpack_from("<Q", image, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", image, 0x36)
    if phoff + phnum * phentsize > len(image) or phentsize < 56:
        raise BootError("vmlinux program headers are truncated")
    for i in range(phnum):
        yield struct.unpack_from("<IIQQQQQQ", image, phoff + i * phentsize)


def _pvh_entry(image: bytes) -> int | None:
    for p_type, _flags, off, _va, _pa, filesz, _memsz, _align in _elf_segments(image):
        if p_type != 4:                  # PT_NOTE
            continue
        pos, end = off, min(off + filesz, len(image))
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", image, pos)
            name = image[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            desc = pos + 12 + ((namesz + 3) & ~3)
            if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY and descsz >= 4:
                return struct.unpack_from("<I", image, desc)[0]
            pos = desc + ((descsz + 3) & ~3)
    return None


def _load_elf(memory: GuestMemory, image: bytes, initrd: bytes | None, cmdline: str,
              reserved: list[E820Entry], rsdp: int) -> BootImage:
    kernel_end = 0
    first: tuple[int, int] | None = None
    for p_type, _flags, off, vaddr, paddr, filesz, memsz, _align in _elf_segments(image):
        if p_type != 1:                  # PT_LOAD
            continue
        if filesz > memsz or off + filesz > len(image) or not memory.contains(paddr, max(memsz, 1)):
            raise BootError(f"vmlinux segment at {paddr:#x}+{memsz:#x} does not fit in guest RAM")
        memory.write(paddr, image[off:off + filesz])
        memory.write(paddr + filesz, bytes(memsz - filesz))
        kernel_end = max(kernel_end, paddr + memsz)
        first = first or (vaddr, paddr)
    if first is None:
        raise BootError("vmlinux has no loadable segment")
    cmd_addr = _write_cmdline(memory, cmdline, CMDLINE_MAX - 1)
    initrd_addr = _place_initrd(memory, initrd, kernel_end, 0xFFFF_FFFF) if initrd else 0
    pvh = _pvh_entry(image)
    if pvh is not None:
        _start_info(memory, cmd_addr, initrd_addr, len(initrd or b""), reserved, rsdp)
        state = cpu_setup.protected_mode_32(memory, pvh, rbx=ZERO_PAGE)
        return BootImage("vmlinux-pvh", state, pvh, {"initrd_addr": initrd_addr})
    # 64-bit entry: startup_64 is the ELF entry, translated to its physical address.
    entry_va, = struct.unpack_from("<Q", image, 0x18)
    vaddr, paddr = first
    entry = entry_va - vaddr + paddr if entry_va >= START_KERNEL_MAP else entry_va
    header = _fake_setup_header()
    _zero_page(memory, header, cmd_addr, initrd_addr, len(initrd or b""), reserved, rsdp)
    state = cpu_setup.long_mode_64(memory, entry, rsi=ZERO_PAGE)
    return BootImage("vmlinux-64", state, entry, {"initrd_addr": initrd_addr})


def _fake_setup_header() -> bytes:
    """A minimal setup header for the 64-bit entry of a vmlinux (no real-mode part exists)."""
    hdr = bytearray(0x290 - 0x1F1)
    struct.pack_into("<H", hdr, 0x1FE - 0x1F1, 0xAA55)
    hdr[0x202 - 0x1F1:0x206 - 0x1F1] = b"HdrS"
    struct.pack_into("<H", hdr, 0x206 - 0x1F1, 0x020F)
    hdr[0x211 - 0x1F1] = 0x01
    return bytes(hdr)


def _start_info(memory: GuestMemory, cmd_addr: int, initrd_addr: int, initrd_len: int,
                reserved: list[E820Entry], rsdp: int) -> None:
    entries = e820_map(_ram_regions(memory), reserved)
    memmap = b"".join(struct.pack("<QQII", e.addr, e.size, e.type, 0) for e in entries)
    if len(memmap) > START_INFO_MODLIST - START_INFO_MEMMAP:
        raise BootError("too many memory map entries for hvm_start_info")
    memory.write(START_INFO_MEMMAP, memmap)
    nr_modules = 0
    if initrd_len:
        memory.write(START_INFO_MODLIST, struct.pack("<QQQQ", initrd_addr, initrd_len, 0, 0))
        nr_modules = 1
    info = struct.pack("<IIIIQQQQII", HVM_START_MAGIC, 1, 0, nr_modules,
                       START_INFO_MODLIST if nr_modules else 0, cmd_addr, rsdp,
                       START_INFO_MEMMAP, len(entries), 0)
    memory.write(ZERO_PAGE, info)


__all__ = ["BootError", "BootImage", "E820_ACPI", "detect", "load"]
