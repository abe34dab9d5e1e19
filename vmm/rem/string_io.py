"""REP INS in bulk on REM: the rest of a device's PIO block in one call, not one hook per unit.

A boot loader that reads a CD or an IDE disk through the BIOS (SeaBIOS's ATA and ATAPI drivers,
which ISOLINUX and GRUB call) moves every sector with `rep insw`: one IN per two bytes, and on
REM each IN is a trip from translated code into Python. When the IN being hooked belongs to a
REP INS that the vCPU would simply repeat, `bulk_rep_ins` reads the following units of the
device's current block in one call (Bus.read_string), stores them where those repetitions would
have stored them, and advances (E)DI and (E)CX past them; unicorn's helper then completes the
hooked unit itself (its store at the old (E)DI, (E)DI + size, (E)CX - 1), so the guest ends with
the same memory and registers as after the unit-by-unit loop.

Taken only where that equivalence is plain: DF clear, paging off (the destination is physical),
(E)DI not wrapping and within ES's limit, the whole destination in RAM outside the legacy VGA and
ROM window (0xA0000-0xFFFFF, where stores may hit MMIO or read-only shadow RAM). The device keeps
the last unit of each block for the ordinary path, so its end-of-block work (next sector,
status, interrupt) runs exactly as before. The stores go through GuestMemory.write, whose write
listener drops translated code in those pages as for a device's DMA.
"""

from __future__ import annotations

from collections.abc import Callable

from vmm.bus import Bus
from vmm.memory import GuestMemory
from vmm.rem.qemu_cpu import CR0_PG, HF_CS32, OFF_CR, OFF_DF, OFF_EIP, OFF_REGS, R_CS, R_ES, QemuCpu

DESC_E = 1 << 10                # expand-down data segment (valid offsets lie above the limit)
LEGACY_HOLE = (0xA0000, 0x100000)
REG_RCX, REG_RDI = OFF_REGS + 8 * 1, OFF_REGS + 8 * 7
_REP = (0xF2, 0xF3)             # both repeat INS
_SKIPPED = frozenset((0xF0, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65))     # LOCK, segment overrides
INSN_MAX = 15


def _decode(code: bytes, cs32: bool) -> tuple[bool, int, bool, bool] | None:
    """(rep, opcode, 32-bit operand, 32-bit address) of the instruction, or None."""
    rep, op32, addr32 = False, cs32, cs32
    for b in code:
        if b in _REP:
            rep = True
        elif b == 0x66:
            op32 = not cs32
        elif b == 0x67:
            addr32 = not cs32
        elif b not in _SKIPPED:
            return rep, b, op32, addr32
    return None


def bulk_rep_ins(cpu: QemuCpu, fetch: Callable[[int, int], bytes | None], bus: Bus, memory: GuestMemory,
                 port: int, size: int) -> int:
    """Called from the IN hook after the hooked unit was read; returns the units moved in bulk."""
    room = bus.string_room(port, size)
    if room <= 0 or cpu.u64(OFF_CR) & CR0_PG or cpu.u32(OFF_DF) != 1:
        return 0
    code = fetch(cpu.segment(R_CS)[1] + cpu.u64(OFF_EIP), INSN_MAX)
    insn = _decode(code, bool(cpu.hflags & HF_CS32)) if code else None
    if insn is None:
        return 0
    rep, opcode, op32, addr32 = insn
    if not rep or opcode not in (0x6C, 0x6D) or size != (1 if opcode == 0x6C else 4 if op32 else 2):
        return 0
    mask = 0xFFFF_FFFF if addr32 else 0xFFFF
    rcx, rdi = cpu.u64(REG_RCX), cpu.u64(REG_RDI)
    count, di = rcx & mask, rdi & mask
    first = di + size               # where the unit after the hooked one goes
    n = min(room, count - 1, (mask + 1 - first) // size)
    _sel, es_base, es_limit, es_flags = cpu.segment(R_ES)
    if first > es_limit or es_flags & DESC_E:
        return 0
    n = min(n, (es_limit - first + 1) // size)
    if n <= 0:
        return 0
    gpa, length = (es_base + first) & 0xFFFF_FFFF, n * size
    if gpa < LEGACY_HOLE[1] and gpa + length > LEGACY_HOLE[0] or not memory.contains(gpa, length):
        return 0
    data = bus.read_string(port, size, n)
    n = len(data) // size
    if n <= 0:
        return 0
    memory.write(gpa, data[:n * size])
    keep = 0 if addr32 else ~mask & 0xFFFF_FFFF_FFFF_FFFF
    cpu.set_u64(REG_RCX, (rcx & keep) | ((count - n) & mask))
    cpu.set_u64(REG_RDI, (rdi & keep) | ((di + n * size) & mask))
    return n
