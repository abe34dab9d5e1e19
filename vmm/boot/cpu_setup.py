"""Initial CPU states for the boot entries: real mode, flat 32-bit protected mode, long mode.

The GDT written here matches the selectors of the Linux boot protocol (__BOOT_CS = 0x10,
__BOOT_DS = 0x18), so a guest that reloads its segment registers from it gets the same
descriptors the state already holds.
"""

from __future__ import annotations

import struct

from vmm.boot.layout import GDT_ADDR, PAGE_TABLES
from vmm.engine import CpuState, Segment
from vmm.memory import GuestMemory

# VMX-style attribute words (type | S<<4 | DPL<<5 | P<<7 | L<<13 | DB<<14 | G<<15)
CODE32 = 0xC09B
DATA32 = 0xC093
CODE64 = 0xA09B
REAL_CODE = 0x009B
REAL_DATA = 0x0093
TSS_BUSY = 0x008B
LDT = 0x0082

CR0_PE = 1
CR0_ET = 1 << 4
CR0_PG = 1 << 31
CR4_PAE = 1 << 5
EFER_LME = 1 << 8
EFER_LMA = 1 << 10


def _descriptor(base: int, limit: int, attr: int) -> bytes:
    """An 8-byte GDT descriptor from base, 20-bit limit and the attribute word."""
    lo = (limit & 0xFFFF) | ((base & 0xFFFF) << 16)
    hi = ((base >> 16) & 0xFF) | ((attr & 0xFF) << 8) | (((limit >> 16) & 0xF) << 16)
    hi |= ((attr >> 12) & 0xF) << 20 | (base & 0xFF000000)
    return struct.pack("<II", lo, hi)


def write_gdt(memory: GuestMemory, code_attr: int) -> tuple[int, int]:
    entries = [b"\0" * 8, b"\0" * 8, _descriptor(0, 0xFFFFF, code_attr), _descriptor(0, 0xFFFFF, DATA32)]
    memory.write(GDT_ADDR, b"".join(entries))
    return GDT_ADDR, len(entries) * 8 - 1


def _flat(selector: int, attr: int) -> Segment:
    return Segment(selector, 0, 0xFFFFFFFF, attr)


def real_mode(cs: int, ip: int, sp: int) -> CpuState:
    s = CpuState()
    s.gpr = {r: 0 for r in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12",
                            "r13", "r14", "r15")}
    s.gpr.update(rip=ip, rsp=sp, rflags=0x2)
    s.seg = {n: Segment(0, 0, 0xFFFF, REAL_DATA) for n in ("ds", "es", "fs", "gs", "ss")}
    s.seg["cs"] = Segment(cs, cs << 4, 0xFFFF, REAL_CODE)
    s.seg["tr"] = Segment(0, 0, 0xFFFF, TSS_BUSY)
    s.seg["ldtr"] = Segment(0, 0, 0xFFFF, LDT)
    s.gdt, s.idt = (0, 0xFFFF), (0, 0x3FF)
    s.cr0, s.cr3, s.cr4, s.efer = CR0_ET, 0, 0, 0
    return s


def protected_mode_32(memory: GuestMemory, eip: int, **gprs: int) -> CpuState:
    """Flat 32-bit protected mode, paging off, interrupts off (Linux 32-bit and PVH entries)."""
    s = CpuState()
    s.gpr = {r: 0 for r in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
                            "r12", "r13", "r14", "r15")}
    s.gpr.update(rip=eip, rflags=0x2, **gprs)
    s.seg = {n: _flat(0x18, DATA32) for n in ("ds", "es", "fs", "gs", "ss")}
    s.seg["cs"] = _flat(0x10, CODE32)
    s.seg["tr"] = Segment(0, 0, 0x67, TSS_BUSY)
    s.seg["ldtr"] = Segment(0, 0, 0xFFFF, LDT)
    s.gdt = write_gdt(memory, CODE32)
    s.idt = (0, 0)
    s.cr0, s.cr3, s.cr4, s.efer = CR0_PE | CR0_ET, 0, 0, 0
    return s


def identity_page_tables(memory: GuestMemory) -> int:
    """PML4 -> PDPT -> 4 page directories of 2 MiB pages mapping the first 4 GiB 1:1."""
    pml4, pdpt, pd = PAGE_TABLES, PAGE_TABLES + 0x1000, PAGE_TABLES + 0x2000
    memory.write(pml4, struct.pack("<Q", pdpt | 0x3) + bytes(4088))
    memory.write(pdpt, b"".join(struct.pack("<Q", (pd + i * 0x1000) | 0x3) for i in range(4)) + bytes(4064))
    memory.write(pd, b"".join(struct.pack("<Q", (i << 21) | 0x83) for i in range(2048)))
    return pml4


def long_mode_64(memory: GuestMemory, rip: int, **gprs: int) -> CpuState:
    """64-bit mode with the first 4 GiB identity-mapped (Linux 64-bit boot protocol)."""
    s = protected_mode_32(memory, rip, **gprs)
    s.seg["cs"] = _flat(0x10, CODE64)
    s.gdt = write_gdt(memory, CODE64)
    s.cr3 = identity_page_tables(memory)
    s.cr4 = CR4_PAE
    s.cr0 = CR0_PE | CR0_ET | CR0_PG
    s.efer = EFER_LME | EFER_LMA
    return s


def power_on() -> CpuState:
    """The x86 reset state: real mode, CS=F000 with base FFFF0000, IP=FFF0 (the reset vector at
    4 GiB - 16, in the firmware ROM); EDX holds the processor signature (family 6)."""
    s = real_mode(0xF000, 0xFFF0, 0)
    s.seg["cs"] = Segment(0xF000, 0xFFFF_0000, 0xFFFF, REAL_CODE)
    s.gpr["rdx"] = 0x600
    s.cr0 = 0x6000_0000 | CR0_ET
    return s
