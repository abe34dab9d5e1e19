"""Whole-CPU state transfer for REM: engine.CpuState <-> unicorn registers and QEMU's env.

Segment caches are written straight into QEMU's state (no descriptor-table lookups), so
boot code and saved state can load any mode — real, protected or long — in one step, as
a hardware VMM loads VMCS fields.  QEMU's attribute word is the descriptor's high dword;
CpuState keeps the VMX-style 16-bit form (`(flags >> 8) & 0xF0FF`).
"""

from __future__ import annotations

import struct

from unicorn import Uc
from unicorn.x86_const import (
    UC_X86_REG_CR0,
    UC_X86_REG_CR2,
    UC_X86_REG_CR3,
    UC_X86_REG_CR4,
    UC_X86_REG_EFLAGS,
    UC_X86_REG_FP0,
    UC_X86_REG_FPCW,
    UC_X86_REG_FPSW,
    UC_X86_REG_FPTAG,
    UC_X86_REG_GDTR,
    UC_X86_REG_IDTR,
    UC_X86_REG_MXCSR,
    UC_X86_REG_R8,
    UC_X86_REG_R9,
    UC_X86_REG_R10,
    UC_X86_REG_R11,
    UC_X86_REG_R12,
    UC_X86_REG_R13,
    UC_X86_REG_R14,
    UC_X86_REG_R15,
    UC_X86_REG_RAX,
    UC_X86_REG_RBP,
    UC_X86_REG_RBX,
    UC_X86_REG_RCX,
    UC_X86_REG_RDI,
    UC_X86_REG_RDX,
    UC_X86_REG_RIP,
    UC_X86_REG_RSI,
    UC_X86_REG_RSP,
    UC_X86_REG_XMM0,
)

from vmm.engine import CpuState, Segment
from vmm.rem.qemu_cpu import HF_LMA, OFF_LDT, OFF_TR, QemuCpu

OFF_EFER = 592
EFER_LMA = 1 << 10

GPRS = {
    "rax": UC_X86_REG_RAX, "rbx": UC_X86_REG_RBX, "rcx": UC_X86_REG_RCX, "rdx": UC_X86_REG_RDX,
    "rsi": UC_X86_REG_RSI, "rdi": UC_X86_REG_RDI, "rbp": UC_X86_REG_RBP, "rsp": UC_X86_REG_RSP,
    "r8": UC_X86_REG_R8, "r9": UC_X86_REG_R9, "r10": UC_X86_REG_R10, "r11": UC_X86_REG_R11,
    "r12": UC_X86_REG_R12, "r13": UC_X86_REG_R13, "r14": UC_X86_REG_R14, "r15": UC_X86_REG_R15,
    "rip": UC_X86_REG_RIP, "rflags": UC_X86_REG_EFLAGS,
}
SEGMENTS = ("es", "cs", "ss", "ds", "fs", "gs")
# MSRs carried in CpuState.msrs (syscall/sysenter, FS/GS bases, PAT)
STATE_MSRS = (0xC000_0081, 0xC000_0082, 0xC000_0083, 0xC000_0084, 0xC000_0100, 0xC000_0101, 0xC000_0102,
              0x174, 0x175, 0x176, 0x277)


def _to_attr(flags: int) -> int:
    return (flags >> 8) & 0xF0FF


def _from_attr(attr: int) -> int:
    return (attr & 0xF0FF) << 8


def read_state(uc: Uc, cpu: QemuCpu) -> CpuState:
    s = CpuState()
    s.gpr = {name: uc.reg_read(reg) for name, reg in GPRS.items()}
    for i, name in enumerate(SEGMENTS):
        sel, base, limit, flags = cpu.segment(i)
        s.seg[name] = Segment(sel, base, limit, _to_attr(flags))
    for name, off in (("ldtr", OFF_LDT), ("tr", OFF_TR)):
        sel, base, limit, flags = cpu.segment(off)
        s.seg[name] = Segment(sel, base, limit, _to_attr(flags))
    _, gbase, glimit, _ = uc.reg_read(UC_X86_REG_GDTR)
    _, ibase, ilimit, _ = uc.reg_read(UC_X86_REG_IDTR)
    s.gdt, s.idt = (gbase, glimit), (ibase, ilimit)
    s.cr0, s.cr2 = uc.reg_read(UC_X86_REG_CR0), uc.reg_read(UC_X86_REG_CR2)
    s.cr3, s.cr4 = uc.reg_read(UC_X86_REG_CR3), uc.reg_read(UC_X86_REG_CR4)
    s.efer = cpu.u64(OFF_EFER)
    s.msrs = {m: uc.msr_read(m) for m in STATE_MSRS}
    fpu = struct.pack("<HHH", uc.reg_read(UC_X86_REG_FPCW), uc.reg_read(UC_X86_REG_FPSW),
                      uc.reg_read(UC_X86_REG_FPTAG))
    fpu += struct.pack("<I", uc.reg_read(UC_X86_REG_MXCSR))
    for i in range(8):
        mant, exp = uc.reg_read(UC_X86_REG_FP0 + i)
        fpu += struct.pack("<QH", mant, exp)
    for i in range(16):
        fpu += uc.reg_read(UC_X86_REG_XMM0 + i).to_bytes(16, "little")
    s.fpu = fpu
    return s


def write_state(uc: Uc, cpu: QemuCpu, s: CpuState) -> None:
    for name, value in s.gpr.items():
        reg = GPRS.get(name)
        if reg is None:
            raise ValueError(f"unknown register {name!r} in CPU state")
        uc.reg_write(reg, value)
    cpu.set_u64(OFF_EFER, s.efer)
    uc.reg_write(UC_X86_REG_CR4, s.cr4)
    uc.reg_write(UC_X86_REG_CR3, s.cr3)
    uc.reg_write(UC_X86_REG_CR0, s.cr0)
    uc.reg_write(UC_X86_REG_CR2, s.cr2)
    cpu.set_u64(OFF_EFER, s.efer)
    cpu.hflags = (cpu.hflags & ~HF_LMA) | (HF_LMA if s.efer & EFER_LMA else 0)
    uc.reg_write(UC_X86_REG_GDTR, (0, s.gdt[0], s.gdt[1], 0))
    uc.reg_write(UC_X86_REG_IDTR, (0, s.idt[0], s.idt[1], 0))
    for i, name in enumerate(SEGMENTS):
        seg = s.seg.get(name, Segment())
        cpu.set_segment(i, seg.selector, seg.base, seg.limit, _from_attr(seg.flags))
    for name, off in (("ldtr", OFF_LDT), ("tr", OFF_TR)):
        seg = s.seg.get(name, Segment(0, 0, 0xFFFF, 0x8B if name == "tr" else 0x82))
        cpu.set_segment(off, seg.selector, seg.base, seg.limit, _from_attr(seg.flags))
    cpu.recompute_segment_hflags()
    for msr, value in s.msrs.items():
        uc.msr_write(msr, value)
    if s.fpu:
        fpcw, fpsw, fptag, mxcsr = struct.unpack_from("<HHHI", s.fpu, 0)
        uc.reg_write(UC_X86_REG_FPCW, fpcw)
        uc.reg_write(UC_X86_REG_FPSW, fpsw)
        uc.reg_write(UC_X86_REG_FPTAG, fptag)
        uc.reg_write(UC_X86_REG_MXCSR, mxcsr)
        pos = 10
        for i in range(8):
            mant, exp = struct.unpack_from("<QH", s.fpu, pos)
            uc.reg_write(UC_X86_REG_FP0 + i, (mant, exp))
            pos += 10
        for i in range(16):
            uc.reg_write(UC_X86_REG_XMM0 + i, int.from_bytes(s.fpu[pos:pos + 16], "little"))
            pos += 16
    uc.ctl_flush_tb()
