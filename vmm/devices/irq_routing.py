"""The PC's interrupt wiring: the 8259A pair, the local APIC per vCPU and the IO-APIC.

VirtualBox's PIIX3 machine (and its MADT) wires an ISA IRQ n to 8259A input n and, with the
IO-APIC on, to IO-APIC pin n -- except IRQ0 (the PIT), which reaches pin 2 (the MADT's interrupt
source override).  PCI INTx lines either share ISA IRQs (PIIX3 PIRQ routing: `line(irq)`) or go
to IO-APIC pins 16-23 (`gsi(n, level)` / `gsi_line(n)`).  The 8259A's output reaches the CPU
through LINT0 of the boot vCPU's local APIC (ExtINT, virtual wire) when there is one, else
directly.  `controller(vcpu)` is the InterruptController EM asks for the next vector.
"""

from __future__ import annotations

from collections.abc import Callable

from vmm.devices.apic import ApicBus, LocalApic
from vmm.devices.base import IrqLine
from vmm.devices.ioapic import IoApic
from vmm.devices.pic import PicPair
from vmm.tm import Clock

ISA_IRQS = 16
# ISA IRQ -> IO-APIC pin where it differs from the identity (the MADT says the same)
ISA_OVERRIDES = {0: 2}


def isa_to_gsi(irq: int) -> int:
    return ISA_OVERRIDES.get(irq, irq)


def pci_apic_gsi(slot: int, pin: int) -> int:
    """The IO-APIC pin of PCI device `slot`'s INTx (pin 0-3 = INTA-INTD) on bus 0 once the guest runs
    in APIC mode: VirtualBox's PIIX3 (DevPCI.cpp) sends it to pin 16 + ((pin + slot) & 7)."""
    if not (0 <= slot <= 31 and 0 <= pin <= 3):
        raise ValueError(f"bad PCI interrupt (slot {slot}, pin {pin})")
    return 16 + ((pin + slot) & 7)


class InterruptRouting:
    def __init__(self, pic: PicPair, clock: Clock, local_apic: bool = False, ioapic: bool = False,
                 cpu_count: int = 1):
        if ioapic and not local_apic:
            raise ValueError("the I/O APIC needs the local APIC")
        self.pic = pic
        self.apic_bus = ApicBus()
        self.lapics: list[LocalApic] = []
        if local_apic:
            for i in range(cpu_count):
                apic = LocalApic(clock, apic_id=i, bsp=i == 0, pic=pic if i == 0 else None)
                self.apic_bus.attach(apic)
                self.lapics.append(apic)
        # the IO-APIC's id follows the local APICs' (as in VirtualBox's MADT)
        self.ioapic = IoApic(self.apic_bus, ioapic_id=cpu_count) if ioapic else None
        self._isa: dict[int, dict[int, bool]] = {}
        self._gsi: dict[int, dict[int, bool]] = {}
        self._notify: Callable[[bool], None] | None = None
        pic.on_change = self._pic_changed

    # -- who EM asks and wakes -------------------------------------------------------------------------
    def controller(self, vcpu: int = 0):
        """The InterruptController of a vCPU: its local APIC, or the 8259A pair without one."""
        return self.lapics[vcpu] if self.lapics else self.pic

    def set_notify(self, callback: Callable[[bool], None]) -> None:
        """EM's interrupt_raised: called when an interrupt may have become pending."""
        self._notify = callback
        for apic in self.lapics:
            apic.on_change = callback

    def _pic_changed(self, level: bool) -> None:
        if self.lapics:
            self.lapics[0].pic_changed(level)
        elif self._notify is not None:
            self._notify(level)

    # -- inputs ------------------------------------------------------------------------------------------
    def line(self, irq: int) -> IrqLine:
        """One more source on ISA IRQ `irq` (lines are shared: the controllers see the OR)."""
        if not 0 <= irq < ISA_IRQS:
            raise ValueError(f"ISA IRQ {irq} out of range")
        sources = self._isa.setdefault(irq, {})
        key = len(sources)
        sources[key] = False
        gsi = isa_to_gsi(irq)

        def sink(level: bool) -> None:
            sources[key] = level
            asserted = any(sources.values())
            self.pic.set_irq(irq, asserted)
            if self.ioapic is not None:
                self.ioapic.set_irq(gsi, asserted)
        return IrqLine(sink)

    def gsi(self, n: int, level: bool) -> None:
        """An IO-APIC input driven directly (PCI INTx on pins 16-23); dropped with no IO-APIC."""
        if self.ioapic is not None:
            self.ioapic.set_irq(n, level)

    def gsi_line(self, n: int) -> IrqLine:
        """One more source on IO-APIC pin `n` (shared: the pin sees the OR)."""
        sources = self._gsi.setdefault(n, {})
        key = len(sources)
        sources[key] = False

        def sink(level: bool) -> None:
            sources[key] = level
            self.gsi(n, any(sources.values()))
        return IrqLine(sink)

    def msi(self, address: int, data: int) -> bool:
        """A device's MSI write (0xFEExxxxx); False when no local APIC took it."""
        return self.apic_bus.msi(address, data) if self.lapics else False

    # -- machine life ------------------------------------------------------------------------------------
    def firmware_setup(self) -> None:
        """The boot vCPU's APIC as a BIOS leaves it (direct kernel boot, which has no BIOS)."""
        if self.lapics:
            self.lapics[0].firmware_setup()

    def stateful(self) -> dict[str, object]:
        """Saved-state units (name -> device with get_state/set_state)."""
        units: dict[str, object] = {f"lapic{i}": a for i, a in enumerate(self.lapics)}
        if self.ioapic is not None:
            units["ioapic"] = self.ioapic
        return units
