"""The PC's pair of 8259A programmable interrupt controllers (master + cascaded slave) and the ELCR.

EM asks this model which vector to inject (`has_interrupt()` / `acknowledge()`); devices raise
their lines through `set_irq(n, level)` or an `IrqLine` from `irq_line(n)`.  The register spaces
are three small sub-devices so the VM builder can place them like a PC chipset does:

    pic.master  2 bytes  (PC: 0x20)   offset 0 command/status (ICW1, OCW2, OCW3 / IRR, ISR, poll)
                                      offset 1 data (ICW2-4, OCW1 / IMR)
    pic.slave   2 bytes  (PC: 0xA0)   same layout, inputs IRQ8-15, cascaded on master IR2
    pic.elcr    2 bytes  (PC: 0x4D0)  edge/level control: offset 0 IRQ0-7, offset 1 IRQ8-15

Model notes: edge-triggered inputs latch IRR on a rising edge (the bit stays until acknowledged);
level-triggered inputs (ELCR bit or ICW1.LTIM) follow the line.  The cascade input (master IR2)
is the slave's INT output seen as a level.  Supported: ICW4 auto-EOI (and rotate-on-AEOI),
special fully nested mode, specific/non-specific/rotating EOI, set priority, special mask mode,
poll command, spurious IRQ7/IRQ15.  Every method runs on the thread that owns the devices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vmm.devices.base import IrqLine

# ELCR bits that may be set: IRQ0, 1, 2 (master) and IRQ8, 13 (slave) are always edge-triggered.
_ELCR_MASK = (0xF8, 0xDE)


def _best_table() -> tuple[tuple[int, ...], ...]:
    """[priority_add][mask] -> the IR with the highest priority in mask (8 if none)."""
    rows = []
    for pa in range(8):
        row = []
        for mask in range(256):
            best = 8
            for p in range(8):
                if mask & (1 << ((p + pa) & 7)):
                    best = (p + pa) & 7
                    break
            row.append(best)
        rows.append(tuple(row))
    return tuple(rows)


_BEST = _best_table()


@dataclass
class PicChipState:
    irr: int = 0
    isr: int = 0
    imr: int = 0
    lines: int = 0             # current input levels (edge detection)
    vector_base: int = 0
    priority_add: int = 0      # the IR with the highest priority
    init_step: int = 0         # 0 = operational, 1..3 = expecting ICW2..ICW4
    needs_icw4: bool = False
    single: bool = False
    level_mode: bool = False   # ICW1.LTIM
    auto_eoi: bool = False
    rotate_on_aeoi: bool = False
    special_fully_nested: bool = False
    special_mask: bool = False
    read_isr: bool = False
    poll: bool = False
    elcr: int = 0


@dataclass
class PicState:
    master: PicChipState = field(default_factory=PicChipState)
    slave: PicChipState = field(default_factory=PicChipState)


class _Chip:
    """One 8259A; the pair wires the cascade."""

    def __init__(self, pair: PicPair, is_master: bool):
        self._pair = pair
        self.is_master = is_master
        self.s = PicChipState()
        self.elcr_mask = _ELCR_MASK[0 if is_master else 1]

    # -- priority resolution --------------------------------------------------------------------
    def _priority(self, mask: int) -> int:
        """Priority level (0 = highest) of the best bit in mask, 8 if none."""
        ir = _BEST[self.s.priority_add][mask & 0xFF]
        return 8 if ir == 8 else (ir - self.s.priority_add) & 7

    def _effective_irr(self) -> int:
        irr = self.s.irr
        if self.is_master:
            irr = (irr & ~0x04) | (0x04 if self._pair._slave_int else 0)
        return irr

    def pending(self) -> int:
        """The IR number this chip would signal now, or -1."""
        s = self.s
        pa = s.priority_add
        ir = _BEST[pa][self._effective_irr() & ~s.imr & 0xFF]
        if ir == 8:
            return -1
        in_service = s.isr
        if in_service:
            if s.special_mask:
                in_service &= ~s.imr
            if s.special_fully_nested and self.is_master:
                in_service &= ~0x04     # a higher slave request may nest inside the slave's service
            best = _BEST[pa][in_service & 0xFF]
            if best != 8 and (best - pa) & 7 <= (ir - pa) & 7:
                return -1
        return ir

    # -- inputs ---------------------------------------------------------------------------------
    def set_input(self, n: int, level: bool) -> None:
        s = self.s
        bit = 1 << n
        if s.level_mode or (s.elcr & bit):
            if level:
                s.irr |= bit
                s.lines |= bit
            else:
                s.irr &= ~bit
                s.lines &= ~bit
        elif level:
            if not s.lines & bit:
                s.irr |= bit
            s.lines |= bit
        else:
            s.lines &= ~bit

    def ack(self, n: int) -> None:
        s = self.s
        bit = 1 << n
        if s.auto_eoi:
            if s.rotate_on_aeoi:
                s.priority_add = (n + 1) & 7
        else:
            s.isr |= bit
        if not (s.level_mode or (s.elcr & bit)):
            s.irr &= ~bit

    # -- registers ------------------------------------------------------------------------------
    def read(self, offset: int) -> int:
        s = self.s
        if s.poll:
            s.poll = False
            return self._pair._poll(self)
        if offset == 0:
            return (s.isr if s.read_isr else self._effective_irr()) & 0xFF
        return s.imr

    def write(self, offset: int, value: int) -> None:
        s = self.s
        if offset == 0:
            if value & 0x10:
                self._icw1(value)
            elif value & 0x08:
                self._ocw3(value)
            else:
                self._ocw2(value)
            return
        if s.init_step == 1:
            s.vector_base = value & 0xF8
            s.init_step = 3 if s.single else 2
            if s.init_step == 3 and not s.needs_icw4:
                s.init_step = 0
        elif s.init_step == 2:
            s.init_step = 3 if s.needs_icw4 else 0     # ICW3: cascade wiring is fixed on a PC
        elif s.init_step == 3:
            s.auto_eoi = bool(value & 0x02)
            s.special_fully_nested = bool(value & 0x10)
            s.init_step = 0
        else:
            s.imr = value

    def _icw1(self, value: int) -> None:
        s = self.s
        s.imr = 0
        s.isr = 0
        s.irr = 0
        s.lines = 0
        s.priority_add = 0
        s.special_mask = False
        s.read_isr = False
        s.poll = False
        s.auto_eoi = False
        s.rotate_on_aeoi = False
        s.special_fully_nested = False
        s.needs_icw4 = bool(value & 0x01)
        s.single = bool(value & 0x02)
        s.level_mode = bool(value & 0x08)
        s.init_step = 1

    def _ocw2(self, value: int) -> None:
        s = self.s
        cmd = value >> 5
        level = value & 7
        if cmd in (1, 5):                      # non-specific EOI (5: and rotate)
            p = self._priority(s.isr)
            if p != 8:
                n = (p + s.priority_add) & 7
                s.isr &= ~(1 << n)
                if cmd == 5:
                    s.priority_add = (n + 1) & 7
        elif cmd in (3, 7):                    # specific EOI (7: and rotate)
            s.isr &= ~(1 << level)
            if cmd == 7:
                s.priority_add = (level + 1) & 7
        elif cmd == 6:                         # set priority: `level` becomes the lowest
            s.priority_add = (level + 1) & 7
        elif cmd == 4:
            s.rotate_on_aeoi = True
        elif cmd == 0:
            s.rotate_on_aeoi = False

    def _ocw3(self, value: int) -> None:
        s = self.s
        if value & 0x40:
            s.special_mask = bool(value & 0x20)
        if value & 0x04:
            s.poll = True
        if value & 0x02:
            s.read_isr = bool(value & 0x01)


class _ChipPort:
    def __init__(self, pair: PicPair, chip: _Chip):
        self._pair = pair
        self._chip = chip

    def read(self, offset: int, size: int) -> int:
        if size != 1 or offset not in (0, 1):
            return (1 << (8 * size)) - 1 if size in (1, 2, 4) else 0xFF
        v = self._chip.read(offset)
        self._pair._update()
        return v

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 1 or offset not in (0, 1):
            return
        self._chip.write(offset, value & 0xFF)
        self._pair._update()


class _ElcrPort:
    def __init__(self, pair: PicPair):
        self._pair = pair

    def read(self, offset: int, size: int) -> int:
        chips = self._pair._chips
        if size not in (1, 2) or offset < 0 or offset + size > 2:
            return (1 << (8 * size)) - 1 if size in (1, 2, 4) else 0xFF
        v = 0
        for i in range(size):
            v |= chips[offset + i].s.elcr << (8 * i)
        return v

    def write(self, offset: int, size: int, value: int) -> None:
        if size not in (1, 2) or offset < 0 or offset + size > 2:
            return
        for i in range(size):
            chip = self._pair._chips[offset + i]
            chip.s.elcr = (value >> (8 * i)) & chip.elcr_mask
        self._pair._update()


class PicPair:
    """Master + slave 8259A.  `on_change(level)` is called when the INT output to the CPU changes."""

    def __init__(self, on_change: Callable[[bool], None] | None = None):
        self.on_change = on_change
        self._slave_int = False
        self._output = False
        self._m = _Chip(self, True)
        self._s = _Chip(self, False)
        self._chips = (self._m, self._s)
        self.master = _ChipPort(self, self._m)
        self.slave = _ChipPort(self, self._s)
        self.elcr = _ElcrPort(self)

    # -- EM interface ---------------------------------------------------------------------------
    def set_irq(self, n: int, level: bool) -> None:
        """Drive input IRQ n (0-15).  Master IR2 is the cascade: as on a PC/AT, the bus's IRQ2
        line arrives at IRQ9."""
        if not 0 <= n <= 15:
            raise ValueError(f"PIC: no input IRQ{n}")
        if n == 2:
            n = 9
        (self._m if n < 8 else self._s).set_input(n & 7, level)
        self._update()

    def irq_line(self, n: int) -> IrqLine:
        """An IrqLine wired to input n, for the device raising it."""
        if not 0 <= n <= 15:
            raise ValueError(f"PIC: no input IRQ{n}")
        return IrqLine(lambda level: self.set_irq(n, level))

    def has_interrupt(self) -> bool:
        return self._output

    def acknowledge(self) -> int:
        """The INTA cycle: the vector to deliver (spurious IRQ7/15 vectors when nothing is pending)."""
        m, sl = self._m, self._s
        n = m.pending()
        if n < 0:
            vector = m.s.vector_base + 7          # spurious master IRQ7
        elif n == 2:
            n2 = sl.pending()
            m.ack(2)
            if n2 < 0:
                vector = sl.s.vector_base + 7     # spurious slave IRQ15
            else:
                sl.ack(n2)
                vector = sl.s.vector_base + n2
        else:
            m.ack(n)
            vector = m.s.vector_base + n
        self._update()
        return vector

    # -- internals ------------------------------------------------------------------------------
    def _poll(self, chip: _Chip) -> int:
        """OCW3 poll: acknowledge the chip's best request without an INTA cycle."""
        n = chip.pending()
        if n < 0:
            return 0
        if chip.is_master and n == 2:
            n2 = self._s.pending()
            if n2 >= 0:
                self._s.ack(n2)
        chip.ack(n)
        self._update()
        return 0x80 | n

    def _update(self) -> None:
        self._slave_int = self._s.pending() >= 0
        out = self._m.pending() >= 0
        if out != self._output:
            self._output = out
            if self.on_change is not None:
                self.on_change(out)

    # -- saved state ----------------------------------------------------------------------------
    def get_state(self) -> PicState:
        return PicState(master=PicChipState(**vars(self._m.s)), slave=PicChipState(**vars(self._s.s)))

    def set_state(self, state: PicState) -> None:
        self._m.s = PicChipState(**vars(state.master))
        self._s.s = PicChipState(**vars(state.slave))
        self._m.s.elcr &= self._m.elcr_mask
        self._s.s.elcr &= self._s.elcr_mask
        self._output = False
        self._update()
