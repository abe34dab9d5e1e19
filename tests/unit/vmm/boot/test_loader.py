"""The boot loader: bzImage zero page, vmlinux PVH start info and 64-bit entry, flat binaries."""

import struct

import pytest

from vmm.boot import loader
from vmm.boot.layout import CMDLINE_ADDR, ZERO_PAGE, E820Entry, e820_map
from vmm.memory import GuestMemory

MB = 1 << 20


def fake_bzimage(payload: bytes = b"\x90" * 4096, version: int = 0x020F, init_size: int = 0x10000) -> bytes:
    setup_sects = 4
    img = bytearray((setup_sects + 1) * 512)
    img[0x1F1] = setup_sects
    img[0x201] = 0x6A                                      # header ends at 0x26C
    img[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", img, 0x206, version)
    img[0x211] = 0x01                                      # LOADED_HIGH
    struct.pack_into("<I", img, 0x214, 0x100000)
    struct.pack_into("<I", img, 0x22C, 0x7FFFFFFF)         # initrd_addr_max
    struct.pack_into("<I", img, 0x238, 2047)               # cmdline_size
    struct.pack_into("<I", img, 0x260, init_size)
    return bytes(img) + payload


def test_bzimage_zero_page_and_entry_state():
    mem = GuestMemory(64 * MB)
    initrd = b"INITRD" * 1000
    bi = loader.load(mem, fake_bzimage(), initrd, "console=ttyS0 quiet", rsdp=0xE0000)
    assert bi.kind == "bzImage" and bi.entry == 0x100000
    assert mem.read(0x100000, 4) == b"\x90" * 4
    zp = mem.read(ZERO_PAGE, 4096)
    assert zp[0x202:0x206] == b"HdrS" and zp[0x210] == 0xFF and zp[0x211] & 0x81 == 0x81
    cmd_ptr, = struct.unpack_from("<I", zp, 0x228)
    assert cmd_ptr == CMDLINE_ADDR and mem.read(CMDLINE_ADDR, 20) == b"console=ttyS0 quiet\0"
    rd_addr, rd_size = struct.unpack_from("<II", zp, 0x218)
    assert rd_size == len(initrd) and mem.read(rd_addr, len(initrd)) == initrd and rd_addr % 4096 == 0
    assert rd_addr + rd_size <= 64 * MB
    assert struct.unpack_from("<Q", zp, 0x070)[0] == 0xE0000
    n = zp[0x1E8]
    entries = [struct.unpack_from("<QQI", zp, 0x2D0 + 20 * i) for i in range(n)]
    assert (0, 0x9FC00, 1) in entries and (0x100000, 63 * MB, 1) in entries
    st = bi.state
    assert st.gpr["rsi"] == ZERO_PAGE and st.cr0 & 1 and not st.cr0 & (1 << 31)
    assert st.seg["cs"].selector == 0x10 and st.seg["ds"].selector == 0x18
    gdt = mem.read(st.gdt[0], st.gdt[1] + 1)
    assert gdt[0x10:0x18] == bytes.fromhex("ffff0000009bcf00")


def test_bzimage_errors():
    mem = GuestMemory(16 * MB)
    with pytest.raises(loader.BootError, match="too old"):
        loader.load(mem, fake_bzimage(version=0x0204))
    with pytest.raises(loader.BootError, match="low RAM"):
        loader.load(mem, fake_bzimage(init_size=32 * MB))
    with pytest.raises(loader.BootError, match="command line"):
        loader.load(mem, fake_bzimage(), cmdline="x" * 5000)


def fake_elf(pvh: bool) -> bytes:
    """ELF64 with one PT_LOAD at paddr 16 MiB (vaddr in the kernel map) and maybe a PVH note."""
    code = b"\xf4" * 64
    note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", 0x1000010) if pvh else b""
    phnum = 2 if pvh else 1
    phoff, data_off = 64, 64 + 56 * phnum
    hdr = bytearray(64)
    hdr[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HHIQQQIHHHHHH", hdr, 0x10, 2, 0x3E, 1, 0xFFFFFFFF81000008, phoff, 0, 0, 64, 56, phnum,
                     64, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 1, 5, data_off, 0xFFFFFFFF81000000, 0x1000000, len(code), len(code) + 32,
                     0x1000)
    if pvh:
        ph += struct.pack("<IIQQQQQQ", 4, 4, data_off + len(code), 0, 0, len(note), len(note), 4)
    return bytes(hdr) + ph + code + note


def test_vmlinux_pvh_start_info():
    mem = GuestMemory(64 * MB)
    bi = loader.load(mem, fake_elf(True), b"RD" * 100, "root=x")
    assert bi.kind == "vmlinux-pvh" and bi.entry == 0x1000010 and bi.state.gpr["rbx"] == ZERO_PAGE
    magic, version, _flags, nr_modules, modlist, cmdline, rsdp, memmap, nmem, _ = struct.unpack(
        "<IIIIQQQQII", mem.read(ZERO_PAGE, 56))
    assert (magic, version, nr_modules, rsdp) == (0x336EC578, 1, 1, 0)
    assert mem.read(cmdline, 7) == b"root=x\0"
    paddr, size = struct.unpack("<QQ", mem.read(modlist, 16))
    assert size == 200 and mem.read(paddr, 4) == b"RDRD"
    types = [struct.unpack_from("<QQI", mem.read(memmap + 24 * i, 24))[2] for i in range(nmem)]
    assert types.count(1) == 2
    assert mem.read(0x1000000, 64) == b"\xf4" * 64 and mem.read(0x1000040, 32) == bytes(32)


def test_vmlinux_64bit_entry_without_pvh_note():
    mem = GuestMemory(64 * MB)
    bi = loader.load(mem, fake_elf(False), None, "")
    assert bi.kind == "vmlinux-64" and bi.entry == 0x1000008
    st = bi.state
    assert st.efer & (1 << 10) and st.cr0 & (1 << 31) and st.cr4 & (1 << 5) and st.gpr["rsi"] == ZERO_PAGE
    pde0 = mem.read_u64(st.cr3 + 0x2000)
    assert pde0 == 0x83                                    # 2 MiB identity page


def test_flat_binary_real_mode():
    mem = GuestMemory(16 * MB)
    bi = loader.load(mem, b"\xeb\xfe")
    assert bi.kind == "flat" and mem.read(0x7C00, 2) == b"\xeb\xfe"
    st = bi.state
    assert st.gpr["rip"] == 0x7C00 and st.gpr["rdx"] == 0x80 and st.seg["cs"].base == 0 and not st.cr0 & 1
    with pytest.raises(loader.BootError):
        loader.load(mem, b"\0" * 0x99000)
    with pytest.raises(loader.BootError, match="initrd"):
        loader.load(mem, b"\xf4", b"rd")


def test_e820_map_carves_holes():
    entries = e820_map([(0, 32 * MB)], [E820Entry(0x1F00000, 0x100000, 3)])
    ram = [(e.addr, e.size) for e in entries if e.type == 1]
    assert ram == [(0, 0x9FC00), (0x100000, 0x1F00000 - 0x100000)]
    assert any(e.type == 3 and e.addr == 0x1F00000 for e in entries)
