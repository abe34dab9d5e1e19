"""Turn the machine's network adapters into PCI NICs on the host bridge (for the VM builder).

The VM's slot table says where adapter N sits (VirtualBox, ConsoleImpl2.cpp: adapter 1 at
00:03.0, adapters 2-4 at 00:08.0-00:0a.0, adapters 5-8 at 00:10.0-00:13.0); `pci_line(slot)`
gives the slot's INTA through the chipset's interrupt router and the IRQ it is routed to, written
into the function's interrupt line as a BIOS would.  The backends come from the caller.
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
               clock: Clock, pci_line: Callable[[int], tuple[IrqLine, int]], slots: dict[int, int],
               wake: Callable[[], None] | None = None,
               taps: list[Callable[[bytes], None] | None] | None = None) -> list[PlacedNic]:
    placed = []
    for i, (spec, backend) in enumerate(zip(specs, backends, strict=True)):
        if spec.adapter_type not in SUPPORTED:
            raise ValueError(f"network adapter {spec.adapter + 1}: type {spec.adapter_type} is not emulated "
                             "(use 82540EM, 82543GC, 82545EM or virtio: modifyvm --nic-type<N>)")
        slot = slots.get(spec.adapter)
        if slot is None:
            raise ValueError(f"network adapter {spec.adapter + 1}: only {len(slots)} adapters have PCI slots")
        if bridge.function_at(slot) is not None:
            raise ValueError(f"network adapter {spec.adapter + 1}: PCI slot {slot} is taken")
        line, irq_no = pci_line(slot)
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
