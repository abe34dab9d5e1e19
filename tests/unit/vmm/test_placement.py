"""The VM builder's placement table and the interrupt wiring agree: every ISA device raises the IRQ
its row of `PLACEMENT` (or `COM_PORTS`, or the ACPI SCI) names, every PCI function sits at its
`PCI_SLOTS` address and raises the IRQ written into its interrupt line register, which is also the
IRQ the ACPI _PRT gives that slot.  A machine is built (REM, a one-instruction kernel), not run."""

from __future__ import annotations

import pytest

from vmm import vm as vm_module
from vmm.cfgm import CfgNode
from vmm.devices.pci import INTERRUPT_PIN
from vmm.vm import ACPI_SCI_IRQ, COM_PORTS, PCI_SLOTS, PLACEMENT, Machine

pytestmark = pytest.mark.timeout(120)

STORAGE = [("SATA", "IntelAhci"), ("VirtioSCSI", "VirtioSCSI"), ("IDE", "PIIX4")]
NICS = {0: "I82540EM", 1: "Virtio", 4: "I82545EM"}      # adapter -> type: slots 00:03, 00:08, 00:10


def _config(kernel) -> CfgNode:
    cfg = CfgNode()
    cfg.set("RamSize", 16 << 20)
    cfg.set("Engine", "rem")
    cfg.set("Boot/Kernel", str(kernel))
    for slot in range(4):
        cfg.set(f"Devices/serial/{slot}/Enabled", True)
    for i, (name, kind) in enumerate(STORAGE):
        cfg.set(f"Devices/storage/{i}/Name", name)
        cfg.set(f"Devices/storage/{i}/Type", kind)
        cfg.set(f"Devices/storage/{i}/PortCount", 1)
    for adapter, kind in NICS.items():
        cfg.set(f"Devices/net/{adapter}/AdapterType", kind)
        cfg.set(f"Devices/net/{adapter}/MAC", f"0800270000{adapter:02x}")
        cfg.set(f"Devices/net/{adapter}/Attachment", "Null")
    return cfg


@pytest.fixture
def machine(tmp_path):
    kernel = tmp_path / "hlt.bin"
    kernel.write_bytes(b"\xf4")                              # hlt
    m = Machine(_config(kernel))
    yield m
    m.close()


def _isa_level(m: Machine, irq: int) -> bool:
    """The level of ISA IRQ `irq` at the 8259A pair's inputs."""
    chip = m.pic._chips[irq >> 3]
    return bool(chip.s.lines >> (irq & 7) & 1)


def _raises(m: Machine, line, irq: int) -> bool:
    """Raising `line` drives ISA IRQ `irq` and nothing else; lowering it lets IRQ `irq` go."""
    before = [_isa_level(m, n) for n in range(16)]
    assert not before[irq], f"IRQ {irq} is already asserted"
    line.raise_()
    after = [_isa_level(m, n) for n in range(16)]
    line.lower()
    changed = [n for n in range(16) if after[n] != before[n]]
    return changed == [irq] and not _isa_level(m, irq)


def _isa_lines(m: Machine) -> dict[str, list]:
    """The interrupt lines of the devices that the placement table gives an IRQ."""
    return {"pit": [m.pit._ch[0].irq], "kbc.data": [m.kbc.irq1], "kbc.command": [m.kbc.irq12],
            "rtc": [m.rtc.irq]}


def test_every_isa_irq_of_the_placement_table_is_the_devices_wiring(machine):
    with_irq = {name: irq for name, _base, _span, irq in PLACEMENT if irq is not None}
    lines = _isa_lines(machine)
    assert set(lines) == set(with_irq), "a row of PLACEMENT with an IRQ needs its device's line here"
    for name, irq in with_irq.items():
        for line in lines[name]:
            assert _raises(machine, line, irq), f"{name}: its line does not raise IRQ {irq}"


def test_com_ports_and_the_sci_raise_the_irqs_the_tables_name(machine):
    assert len(machine.uarts) == len(COM_PORTS)
    for slot, (uart, (base, irq)) in enumerate(zip(machine.uarts, COM_PORTS, strict=True)):
        assert f"{f'uart{slot}':<12} I/O {base:#06x}-{base + 7:#06x} IRQ {irq}" in machine.placed
        assert _raises(machine, uart.irq, irq), f"COM{slot + 1}: its line does not raise IRQ {irq}"
    assert machine.pm_function.interrupt_line == ACPI_SCI_IRQ
    assert _raises(machine, machine.acpi.sci, ACPI_SCI_IRQ)


def test_the_table_drives_the_wiring(monkeypatch, tmp_path):
    """Moving a device's IRQ in the table moves its wiring: nothing else names the number."""
    moved = [(n, b, s, 5 if n == "rtc" else irq) for n, b, s, irq in PLACEMENT]
    monkeypatch.setattr(vm_module, "PLACEMENT", moved)
    kernel = tmp_path / "hlt.bin"
    kernel.write_bytes(b"\xf4")
    m = Machine(_config(kernel))
    try:
        assert "rtc          I/O 0x0070-0x0073 IRQ 5" in m.placed
        assert _raises(m, m.rtc.irq, 5)
    finally:
        m.close()


def test_pci_functions_sit_in_their_slots(machine):
    pci = machine.pci
    expected = {"host": type(machine.host_bridge), "isa": type(machine.isa_bridge),
                "acpi": type(machine.pm_function),
                "vmmdev": type(machine.vmmdev)}
    for name, cls in expected.items():
        assert type(pci.function_at(*PCI_SLOTS[name])) is cls, name
    by_type = {pc.controller_type: pc for pc in machine.storage}
    assert pci.function_at(*PCI_SLOTS["ahci"]) is by_type["IntelAhci"].device
    assert pci.function_at(*PCI_SLOTS["virtio-scsi"]) is by_type["VirtioSCSI"].device
    assert pci.function_at(*PCI_SLOTS["ide"]) is by_type["PIIX4"].device
    assert pci.function_at(*PCI_SLOTS["vga"]) is machine.vga_function
    for nic in machine.nics:
        assert pci.function_at(*PCI_SLOTS[f"nic{nic.spec.adapter}"]) is nic.device
    placed = set(pci.functions)
    assert placed <= set(PCI_SLOTS.values()), (
        f"functions outside the slot table: {placed - set(PCI_SLOTS.values())}"
    )


def test_pci_intx_reaches_the_irq_in_the_interrupt_line_and_the_prt(machine):
    prt = {(slot, pin): irq for slot, pin, irq in machine._pci_irq_routes()}
    legacy = {PCI_SLOTS["ide"], PCI_SLOTS["acpi"]}      # IRQ 14/15 and the SCI, checked above
    checked = 0
    for (slot, fn), dev in sorted(machine.pci.functions.items()):
        if dev.config[INTERRUPT_PIN] == 0 or (slot, fn) in legacy:
            continue
        irq = dev.interrupt_line
        assert prt.get((slot, 0)) == irq, (
            f"00:{slot:02x}.{fn}: _PRT says {prt.get((slot, 0))}, the device {irq}"
        )
        assert _raises(machine, dev.irq, irq), f"00:{slot:02x}.{fn}: INTA does not raise IRQ {irq}"
        checked += 1
    assert checked == 1 + 2 + len(NICS)                  # VMMDev, AHCI, virtio-scsi, the NICs
