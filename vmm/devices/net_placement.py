"""Turn the machine's network adapters into PCI NICs on the host bridge (for the VM builder).

VirtualBox's slots (ConsoleImpl2.cpp): adapter 1 at 00:03.0, adapters 2-4 at 00:08.0-00:0a.0,
adapters 5-8 at 00:10.0-00:13.0.  Each NIC gets an ISA IRQ (shared with others if need be),
written into its interrupt line as a BIOS would, and its backend from the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vmm.devices.base import IrqLine
from vmm.devices.net.e1000 import E1000
from vmm.devices.net.e1000_regs import CHIPS
from vmm.devices.net.virtio_net import VirtioNet
from vmm.devices.pci import PciFunction, PciHostBridge
from vmm.devices.virtio.pci import VirtioPciTransport
from vmm.memory import GuestMemory
from vmm.net.frame import NetBackend
from vmm.tm import Clock

SUPPORTED = tuple(CHIPS) + ("Virtio",)


def nic_slot(adapter: int) -> int:
    """VirtualBox's PCI device number for network adapter `adapter` (0-based)."""
    if adapter == 0:
        return 3
    if adapter <= 3:
        return 8 + adapter - 1
    if adapter <= 7:
        return 16 + adapter - 4
    raise ValueError(f"network adapter {adapter + 1}: only 8 adapters have PCI slots on PIIX3")


@dataclass
class NicSpec:
    adapter: int                     # 0-based slot of the machine's adapter
    adapter_type: str                # NetworkAdapterType name (I82540EM, Virtio, ...)
    mac: bytes
    cable_connected: bool = True
    extra: dict = field(default_factory=dict)


@dataclass
class PlacedNic:
    spec: NicSpec
    device: PciFunction              # the PCI function (the e1000, or the virtio transport)
    model: object                    # what has set_link(): the E1000 or the VirtioNet
    backend: NetBackend
    slot: int
    irq: int


def place_nics(specs: list[NicSpec], backends: list[NetBackend], memory: GuestMemory, bridge: PciHostBridge,
               clock: Clock, irq_line: Callable[[int], IrqLine], irqs: tuple[int, ...],
               wake: Callable[[], None] | None = None,
               taps: list[Callable[[bytes], None] | None] | None = None) -> list[PlacedNic]:
    placed = []
    for i, (spec, backend) in enumerate(zip(specs, backends, strict=True)):
        if spec.adapter_type not in SUPPORTED:
            raise ValueError(f"network adapter {spec.adapter + 1}: type {spec.adapter_type} is not emulated "
                             "(use 82540EM, 82543GC, 82545EM or virtio: modifyvm --nic-type<N>)")
        slot = nic_slot(spec.adapter)
        if bridge.function_at(slot) is not None:
            raise ValueError(f"network adapter {spec.adapter + 1}: PCI slot {slot} is taken")
        irq_no = irqs[(i + 1) % len(irqs)]
        line = irq_line(irq_no)
        tap = taps[i] if taps else None
        if spec.adapter_type == "Virtio":
            model = VirtioNet(spec.mac, backend, clock, spec.cable_connected, wake=wake, tap=tap)
            dev: PciFunction = VirtioPciTransport(model, memory, irq=line)
        else:
            dev = model = E1000(memory, spec.mac, backend, clock, irq=line, chip=spec.adapter_type,
                                link_up=spec.cable_connected, wake=wake, tap=tap)
        dev.interrupt_line = irq_no
        bridge.add_function(dev, slot)
        placed.append(PlacedNic(spec, dev, model, backend, slot, irq_no))
    return placed
