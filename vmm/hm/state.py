"""Conversions between the engine contract's CpuState and KVM's register structures.

Kept apart from the vCPU so saved state, DBGF and the mode-entry code share one mapping:
segment attributes use the contract's descriptor layout (type|S<<4|DPL<<5|P<<7|AVL<<12|
L<<13|DB<<14|G<<15) and the FPU blob is the 512-byte FXSAVE image.
"""

from __future__ import annotations

import struct

from vmm.engine import Segment
from vmm.hm import abi

# contract name -> kvm_sregs field
SEGMENTS = {"cs": "cs", "ds": "ds", "es": "es", "fs": "fs", "gs": "gs", "ss": "ss", "tr": "tr", "ldtr": "ldt"}

MSR_APIC_BASE = 0x1B
APIC_BASE_POWER_ON = 0xFEE0_0800      # xAPIC enabled at its default address
APIC_BASE_BSP = 1 << 8
FXSAVE_SIZE = 512


def segment_from_kvm(k: abi.KvmSegment) -> Segment:
    flags = ((k.type & 0xF) | (k.s & 1) << 4 | (k.dpl & 3) << 5 | (k.present & 1) << 7
             | (k.avl & 1) << 12 | (k.l & 1) << 13 | (k.db & 1) << 14 | (k.g & 1) << 15)
    if k.unusable:
        flags &= ~0x80      # an unusable segment is reported not-present
    return Segment(k.selector, k.base, k.limit, flags)


def segment_to_kvm(s: Segment, k: abi.KvmSegment) -> None:
    f = s.flags
    k.selector = s.selector & 0xFFFF
    k.base = s.base & 0xFFFF_FFFF_FFFF_FFFF
    k.limit = s.limit & 0xFFFF_FFFF
    k.type = f & 0xF
    k.s = (f >> 4) & 1
    k.dpl = (f >> 5) & 3
    k.present = (f >> 7) & 1
    k.avl = (f >> 12) & 1
    k.l = (f >> 13) & 1
    k.db = (f >> 14) & 1
    k.g = (f >> 15) & 1
    k.unusable = 0 if k.present else 1


def fpu_to_fxsave(f: abi.KvmFpu) -> bytes:
    head = struct.pack("<HHBBHQQII", f.fcw, f.fsw, f.ftwx, 0, f.last_opcode, f.last_ip, f.last_dp,
                       f.mxcsr, 0xFFFF)
    return head + bytes(f.fpr) + bytes(f.xmm) + bytes(FXSAVE_SIZE - len(head) - 128 - 256)


def fxsave_to_fpu(blob: bytes, f: abi.KvmFpu) -> None:
    if len(blob) < 32 + 128 + 256:
        raise ValueError(f"FPU state must be an FXSAVE image of {FXSAVE_SIZE} bytes, got {len(blob)}")
    fcw, fsw, ftwx, _, fop, fip, fdp, mxcsr, _ = struct.unpack_from("<HHBBHQQII", blob)
    f.fcw, f.fsw, f.ftwx, f.last_opcode, f.last_ip, f.last_dp, f.mxcsr = fcw, fsw, ftwx, fop, fip, fdp, mxcsr
    f.fpr[:] = blob[32:160]
    f.xmm[:] = blob[160:416]


def power_on_sregs(s: abi.KvmSregs) -> None:
    """The architectural reset state (SDM 9.1.1): CS F000:FFF0 with base FFFF0000, real mode."""
    for name in abi.SEGMENT_NAMES:
        seg = getattr(s, name)
        flags = 0x93
        selector, base = 0, 0
        if name == "cs":
            flags, selector, base = 0x9B, 0xF000, 0xFFFF0000
        elif name == "tr":
            flags = 0x8B
        elif name == "ldt":
            flags = 0x82
        segment_to_kvm(Segment(selector, base, 0xFFFF, flags), seg)
    s.gdt.base, s.gdt.limit = 0, 0xFFFF
    s.idt.base, s.idt.limit = 0, 0xFFFF
    s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer = 0x60000010, 0, 0, 0, 0, 0
    for i in range(4):
        s.interrupt_bitmap[i] = 0
