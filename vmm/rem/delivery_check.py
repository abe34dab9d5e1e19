"""Pre-flight check of an exception's IDT/IVT entry before REM lets QEMU deliver it.

QEMU reports a fault met while delivering an exception (bad IDT entry, IDT limit) by
longjmp-ing out of its delivery code.  REM calls that code from a Python hook, and a longjmp
across Python frames corrupts the interpreter.  So the entry is read and checked here first
(through the guest's page tables); a vector whose entry would fault escalates as the CPU
does — #GP, then #DF, then a triple fault (shutdown) — without entering QEMU's code.
What is checked: the IVT/IDT limit, and in protected/long mode the gate's present bit and
type.  Stack and code-segment faults during delivery are not pre-checked (a guest kernel
whose RSP0/IST or interrupt CS is broken can still crash the VM process).
"""

from __future__ import annotations

from vmm.memory import GuestMemory, GuestMemoryError

CR0_PE = 1
CR0_PG = 1 << 31
CR4_PAE = 1 << 5
EFER_LMA = 1 << 10
_GATES_32 = (5, 6, 7, 14, 15)      # task, 16-bit int/trap, 32-bit int/trap
_GATES_64 = (14, 15)


def translate(mem: GuestMemory, cr0: int, cr3: int, cr4: int, efer: int, linear: int) -> int | None:
    """Guest-physical address of a linear address (None when not mapped)."""
    if not cr0 & CR0_PG:
        return linear & 0xFFFF_FFFF
    try:
        if efer & EFER_LMA:
            table = cr3 & 0x000F_FFFF_FFFF_F000
            for level, shift in enumerate((39, 30, 21, 12)):
                entry = mem.read_u64(table + ((linear >> shift) & 0x1FF) * 8)
                if not entry & 1:
                    return None
                if level in (1, 2) and entry & 0x80:
                    mask = (1 << shift) - 1
                    return (entry & 0x000F_FFFF_FFFF_F000 & ~mask) | (linear & mask)
                table = entry & 0x000F_FFFF_FFFF_F000
            return table | (linear & 0xFFF)
        if cr4 & CR4_PAE:
            pdpte = mem.read_u64((cr3 & 0xFFFF_FFE0) + ((linear >> 30) & 3) * 8)
            if not pdpte & 1:
                return None
            pde = mem.read_u64((pdpte & 0x000F_FFFF_FFFF_F000) + ((linear >> 21) & 0x1FF) * 8)
            if not pde & 1:
                return None
            if pde & 0x80:
                return (pde & 0x000F_FFFF_FFE0_0000) | (linear & 0x1F_FFFF)
            pte = mem.read_u64((pde & 0x000F_FFFF_FFFF_F000) + ((linear >> 12) & 0x1FF) * 8)
            return (pte & 0x000F_FFFF_FFFF_F000) | (linear & 0xFFF) if pte & 1 else None
        pde = mem.read_u32((cr3 & 0xFFFF_F000) + ((linear >> 22) & 0x3FF) * 4)
        if not pde & 1:
            return None
        if pde & 0x80 and cr4 & 0x10:
            return (pde & 0xFFC0_0000) | (linear & 0x3F_FFFF)
        pte = mem.read_u32((pde & 0xFFFF_F000) + ((linear >> 12) & 0x3FF) * 4)
        return (pte & 0xFFFF_F000) | (linear & 0xFFF) if pte & 1 else None
    except GuestMemoryError:
        return None


def entry_ok(mem: GuestMemory, vector: int, cr0: int, cr3: int, cr4: int, efer: int,
             idt_base: int, idt_limit: int) -> bool:
    """True when delivering `vector` will find a usable IVT/IDT entry."""
    if not cr0 & CR0_PE:
        return vector * 4 + 3 <= idt_limit
    size = 16 if efer & EFER_LMA else 8
    if vector * size + size - 1 > idt_limit:
        return False
    phys = translate(mem, cr0, cr3, cr4, efer, idt_base + vector * size)
    if phys is None or (phys & 0xFFF) + 8 > 0x1000 or not mem.contains(phys, 8):
        return False
    attr = mem.read_u16(phys + 4)
    present = attr & 0x8000
    gate_type = (attr >> 8) & 0xF
    return bool(present) and gate_type in (_GATES_64 if size == 16 else _GATES_32)


def escalate(mem: GuestMemory, vector: int, *regs: int) -> int | None:
    """The vector to deliver instead of `vector` (itself, #GP, #DF), or None for a triple fault."""
    for v in (vector, 13, 8):
        if entry_ok(mem, v, *regs):
            return v
        if v == 8:
            return None
    return None
