"""The IO-APIC (82093AA as on VirtualBox's PIIX3 chipset, memory-mapped, PC: 0xFEC00000).

It turns interrupt input pins (GSIs 0-23) into messages on the APIC bus, as each pin's
redirection entry says.  Inputs come through `set_irq(pin, level)` (or `gsi_line(pin)`): the
platform wires ISA IRQs to it as the MADT's overrides say (IRQ0 -> pin 2) and PCI INTx to it
directly or through the PIIX3 PIRQ routing.  Levels are the logical "asserted" state of a line;
the polarity bit only tells the OS how the board is wired, as in VirtualBox's and QEMU's models.

Register window (VirtualBox's DevIoApic.cpp, the 82093AA datasheet):
    0x00 IOREGSEL (8 bits: index of the indirect register)     0x10 IOWIN (32-bit data)
Indirect registers: 0x00 ID (bits 24-27)  0x01 version (max. redirection entry 23 << 16 | 0x11)
    0x02 arbitration ID (RO)  0x10 + 2n / 0x11 + 2n redirection entry n, low / high dword.
Redirection entry: vector 0-7, delivery mode 8-10, logical destination 11, delivery status 12
(RO), polarity 13, remote IRR 14 (RO), level trigger 15, mask 16, destination 56-63.

Edge pins deliver on a rising edge; an edge that arrives while the pin is masked is kept and
delivered on unmask.  Level pins deliver while asserted and set remote IRR until the local APIC
broadcasts the EOI of their vector (`eoi(vector)`); a still-asserted line then delivers again.
Switching a pin to edge clears remote IRR (what Linux does to an 82093AA that has no EOI register).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmm.devices.apic import DM_EXTINT, DM_FIXED, DM_INIT, DM_LOWEST, DM_NMI, ApicBus
from vmm.devices.base import IrqLine

IOAPIC_BASE_DEFAULT = 0xFEC0_0000
IOAPIC_SPAN = 0x1000
PINS = 24
IOAPIC_VERSION = 0x11
REG_SELECT, REG_WINDOW = 0x00, 0x10
IDX_ID, IDX_VERSION, IDX_ARB, IDX_REDIR = 0x00, 0x01, 0x02, 0x10

RTE_MASKED = 1 << 16
RTE_LEVEL = 1 << 15
RTE_REMOTE_IRR = 1 << 14
RTE_POLARITY_LOW = 1 << 13
RTE_DELIVERY_STATUS = 1 << 12
RTE_LOGICAL = 1 << 11
RTE_RO = RTE_REMOTE_IRR | RTE_DELIVERY_STATUS
RTE_WRITABLE = 0xFF00_0000_0000_0000 | RTE_MASKED | RTE_LEVEL | RTE_POLARITY_LOW | RTE_LOGICAL | 0x7FF
_DELIVERABLE_MODES = (DM_FIXED, DM_LOWEST, DM_NMI, DM_INIT, DM_EXTINT)


@dataclass
class IoApicState:
    id: int = 0
    select: int = 0
    redir: list[int] = field(default_factory=lambda: [RTE_MASKED] * PINS)
    levels: int = 0                  # asserted input lines, one bit per pin
    edge_pending: int = 0            # edges seen while the pin was masked


class IoApic:
    def __init__(self, bus: ApicBus, ioapic_id: int = 0):
        self.bus = bus
        self.ioapic_id = ioapic_id
        self.s = IoApicState(id=ioapic_id << 24)
        bus.eoi_listeners.append(self.eoi)

    def reset(self) -> None:
        self.s = IoApicState(id=self.ioapic_id << 24)

    # -- inputs --------------------------------------------------------------------------------------
    def set_irq(self, pin: int, level: bool) -> None:
        if not 0 <= pin < PINS:
            return
        s = self.s
        bit = 1 << pin
        was = bool(s.levels & bit)
        s.levels = (s.levels | bit) if level else (s.levels & ~bit)
        rte = s.redir[pin]
        if rte & RTE_LEVEL:
            if level:
                self._service(pin)
        elif level and not was:
            if rte & RTE_MASKED:
                s.edge_pending |= bit
            else:
                self._send(pin)

    def gsi_line(self, pin: int) -> IrqLine:
        return IrqLine(lambda level: self.set_irq(pin, level))

    def _service(self, pin: int) -> None:
        """A level pin: deliver if asserted, unmasked and not waiting for its EOI."""
        s = self.s
        rte = s.redir[pin]
        if rte & (RTE_MASKED | RTE_REMOTE_IRR) or not s.levels & (1 << pin):
            return
        if self._send(pin) and (rte >> 8) & 7 in (DM_FIXED, DM_LOWEST):
            s.redir[pin] |= RTE_REMOTE_IRR

    def _send(self, pin: int) -> bool:
        rte = self.s.redir[pin]
        mode = (rte >> 8) & 7
        if mode not in _DELIVERABLE_MODES:
            return False                 # SMI, SIPI and the reserved modes go nowhere
        return self.bus.deliver((rte >> 56) & 0xFF, bool(rte & RTE_LOGICAL), mode, rte & 0xFF,
                                bool(rte & RTE_LEVEL))

    def eoi(self, vector: int) -> None:
        """A local APIC's EOI of a level-triggered vector, broadcast on the APIC bus."""
        s = self.s
        for pin in range(PINS):
            rte = s.redir[pin]
            if rte & RTE_REMOTE_IRR and rte & 0xFF == vector:
                s.redir[pin] = rte & ~RTE_REMOTE_IRR
                self._service(pin)

    # -- registers -------------------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if size not in (1, 2, 4, 8):
            return 0
        if offset == REG_SELECT:
            return self.s.select
        if REG_WINDOW <= offset < REG_WINDOW + 4:
            shift = 8 * (offset - REG_WINDOW)
            return (self._read_indirect(self.s.select) >> shift) & ((1 << (8 * min(size, 4))) - 1)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if size not in (1, 2, 4, 8):
            return
        if offset == REG_SELECT:
            self.s.select = value & 0xFF
        elif offset == REG_WINDOW and size == 4:
            self._write_indirect(self.s.select, value & 0xFFFF_FFFF)
        # other offsets, and partial window writes, are dropped

    def _read_indirect(self, index: int) -> int:
        s = self.s
        if index == IDX_ID:
            return s.id
        if index == IDX_VERSION:
            return ((PINS - 1) << 16) | IOAPIC_VERSION
        if index == IDX_ARB:
            return s.id
        pin, high = divmod(index - IDX_REDIR, 2)
        if index >= IDX_REDIR and pin < PINS:
            rte = s.redir[pin]
            return (rte >> 32) & 0xFFFF_FFFF if high else rte & 0xFFFF_FFFF
        return 0

    def _write_indirect(self, index: int, value: int) -> None:
        s = self.s
        if index == IDX_ID:
            s.id = value & 0x0F00_0000
            return
        pin, high = divmod(index - IDX_REDIR, 2)
        if index < IDX_REDIR or pin >= PINS:
            return                       # version, arbitration ID and unknown indexes: read-only
        old = s.redir[pin]
        if high:
            new = (old & 0xFFFF_FFFF) | (value << 32)
        else:
            new = (old & ~0xFFFF_FFFF) | value
        new = (new & RTE_WRITABLE) | (old & RTE_RO)
        if not new & RTE_LEVEL:
            new &= ~RTE_REMOTE_IRR
        s.redir[pin] = new
        bit = 1 << pin
        if new & RTE_MASKED:
            return
        if new & RTE_LEVEL:
            s.edge_pending &= ~bit
            self._service(pin)
        elif s.edge_pending & bit:
            s.edge_pending &= ~bit
            self._send(pin)

    # -- saved state -----------------------------------------------------------------------------------
    def get_state(self) -> IoApicState:
        return IoApicState(id=self.s.id, select=self.s.select, redir=list(self.s.redir), levels=self.s.levels,
                           edge_pending=self.s.edge_pending)

    def set_state(self, state: IoApicState) -> None:
        redir = [int(v) & 0xFFFF_FFFF_FFFF_FFFF for v in list(state.redir)[:PINS]]
        redir += [RTE_MASKED] * (PINS - len(redir))
        self.s = IoApicState(id=state.id & 0x0F00_0000, select=state.select & 0xFF, redir=redir,
                             levels=state.levels & ((1 << PINS) - 1),
                             edge_pending=state.edge_pending & ((1 << PINS) - 1))

