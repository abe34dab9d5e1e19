"""The PIIX3 PCI-to-ISA bridge (PCI 00:01.0) and its PCI interrupt router.

PCI devices raise INTA#-INTD#; on the PIIX3 board those pins are wired, rotated by slot, to
the four PIRQ lines (PIRQ = (slot + pin - 1) mod 4, the usual swizzle), and config registers
0x60-0x63 route PIRQA-D to an ISA IRQ (bits 0-3; bit 7 set = not routed).  The firmware
programs those registers and the ELCR (level-triggered IRQs, ports 0x4D0/0x4D1: the PIC's
own register, vmm.devices.pic); the guest may re-route them (Linux's PCI IRQ router does).

`PciIrqRouter.line(slot, pin)` is the IrqLine a PCI device model raises: the PIRQ's level is
the OR of its devices, and the ISA IRQ it is routed to follows every register change.  An
I/O APIC can listen to the PIRQ levels themselves through `pirq_listeners`.
"""

from __future__ import annotations

from collections.abc import Callable

from vmm.devices.base import IrqLine
from vmm.devices.pci import HEADER_TYPE, PciFunction

DEVICE_PIIX3_ISA = 0x7000
PIRQ_ROUTE = 0x60              # PIRQRC[A-D], 0x60-0x63
PIRQ_COUNT = 4
ROUTE_DISABLED = 0x80
# IRQs a PIRQ may be routed to (0-2, 8 and 13 are reserved on a PC)
ROUTABLE_IRQS = frozenset({3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15})
# registers after the header a firmware writes and reads back (TOM, MBIRQ, APIC base, ...)
_PLAIN_REGS = range(0x40, 0x100)


def pirq_of(slot: int, pin: int) -> int:
    """PIRQ index (0 = A) an INTx pin (1 = INTA) of a device in `slot` is wired to."""
    return (slot + pin - 1) & 3


class PciIrqRouter:
    def __init__(self, isa_line: Callable[[int], IrqLine]):
        self._isa_line = isa_line
        self._isa: dict[int, IrqLine] = {}
        self.routes = [ROUTE_DISABLED] * PIRQ_COUNT
        self._sources: list[dict[int, bool]] = [{} for _ in range(PIRQ_COUNT)]
        self.levels = [False] * PIRQ_COUNT
        self.pirq_listeners: list[Callable[[int, bool], None]] = []
        self._driving: list[int | None] = [None] * PIRQ_COUNT   # ISA IRQ each PIRQ drives now

    def line(self, slot: int, pin: int = 1) -> IrqLine:
        if not 1 <= pin <= 4:
            raise ValueError("INTx pin must be 1..4")
        pirq = pirq_of(slot, pin)
        sources = self._sources[pirq]
        key = len(sources)
        sources[key] = False

        def sink(level: bool) -> None:
            sources[key] = level
            self._update(pirq)
        return IrqLine(sink)

    def target(self, pirq: int) -> int | None:
        route = self.routes[pirq]
        if route & ROUTE_DISABLED or (route & 0x0F) not in ROUTABLE_IRQS:
            return None
        return route & 0x0F

    def set_route(self, pirq: int, value: int) -> None:
        self.routes[pirq] = value & 0x8F
        self._update(pirq, rewire=True)

    def _isa_irq(self, irq: int) -> IrqLine:
        line = self._isa.get(irq)
        if line is None:
            line = self._isa[irq] = self._isa_line(irq)
        return line

    def _update(self, pirq: int, rewire: bool = False) -> None:
        level = any(self._sources[pirq].values())
        changed = level != self.levels[pirq]
        self.levels[pirq] = level
        target = self.target(pirq)
        old = self._driving[pirq]
        if old is not None and old != target:
            self._isa_irq(old).set_level(False)
        self._driving[pirq] = target
        if target is not None:
            self._isa_irq(target).set_level(level)
        if changed:
            for listener in self.pirq_listeners:
                listener(pirq, level)


class Piix3Isa(PciFunction):
    """The bridge's configuration space; PIRQ route registers go to the router."""

    def __init__(self, router: PciIrqRouter):
        super().__init__(vendor_id=0x8086, device_id=DEVICE_PIIX3_ISA, class_code=0x060100)
        self.config[HEADER_TYPE] = 0x80          # multi-function: IDE (and more) at 00:01.x
        self.router = router
        for off in _PLAIN_REGS:
            self._wmask[off] = 0xFF
        self._put_routes([ROUTE_DISABLED] * PIRQ_COUNT)

    def _put_routes(self, routes: list[int]) -> None:
        for i, v in enumerate(routes):
            self.config[PIRQ_ROUTE + i] = v & 0x8F
            self.router.set_route(i, v)

    def config_write(self, offset: int, size: int, value: int) -> None:
        super().config_write(offset, size, value)
        for i in range(size):
            off = offset + i
            if PIRQ_ROUTE <= off < PIRQ_ROUTE + PIRQ_COUNT and 0 <= off < 256:
                byte = ((value >> (8 * i)) & 0x8F) if size in (1, 2, 4) and offset + size <= 256 else None
                if byte is not None:
                    self.config[off] = byte
                    self.router.set_route(off - PIRQ_ROUTE, byte)

    def set_routes(self, irqs: list[int | None]) -> None:
        """What a BIOS leaves behind (the --boot-kernel path): PIRQA-D to these IRQs (None = off)."""
        self._put_routes([ROUTE_DISABLED if irq is None else irq for irq in irqs])

    def set_state(self, state) -> None:
        super().set_state(state)
        for i in range(PIRQ_COUNT):
            self.router.set_route(i, self.config[PIRQ_ROUTE + i])
