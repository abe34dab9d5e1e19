"""PCI host bridge and function: mechanism #1, BAR sizing/placement, command, INTx, capabilities."""

import pytest

from vmm.bus import Bus
from vmm.devices.base import IrqLine
from vmm.devices.pci import (
    BAR_IO,
    BAR_MEM32,
    PciFunction,
    PciHostBridge,
)


class Regs:
    def __init__(self):
        self.log = []

    def read(self, offset, size):
        self.log.append(("r", offset, size))
        return 0x1234 + offset

    def write(self, offset, size, value):
        self.log.append(("w", offset, size, value))


def make(irq=None):
    io, mmio = Bus("io"), Bus("mmio")
    bridge = PciHostBridge(io, mmio)
    io.register(0xCF8, 8, bridge)
    fn = PciFunction(0x8086, 0x2922, 0x010601, revision=2, interrupt_pin=1, irq=irq)
    io_regs, mem_regs = Regs(), Regs()
    fn.add_bar(4, 32, BAR_IO, io_regs)
    fn.add_bar(5, 0x1000, BAR_MEM32, mem_regs)
    bridge.add_function(fn, 3)
    return io, mmio, bridge, fn, io_regs, mem_regs


def cfg_read(io, slot, reg, size=4, func=0):
    io.write(0xCF8, 4, 0x8000_0000 | slot << 11 | func << 8 | (reg & 0xFC))
    return io.read(0xCFC + (reg & 3), size)


def cfg_write(io, slot, reg, value, size=4, func=0):
    io.write(0xCF8, 4, 0x8000_0000 | slot << 11 | func << 8 | (reg & 0xFC))
    io.write(0xCFC + (reg & 3), size, value)


def test_linux_type1_probe_and_host_bridge():
    io, *_ = make()
    io.write(0xCFB, 1, 0x01)          # Linux pci_check_type1 pokes this first
    io.write(0xCF8, 4, 0x8000_0000)
    assert io.read(0xCF8, 4) == 0x8000_0000
    assert cfg_read(io, 0, 0) == 0x1237_8086
    assert cfg_read(io, 0, 0x0A, 2) == 0x0600
    assert cfg_read(io, 3, 0) == 0x2922_8086
    assert cfg_read(io, 3, 0x08) == 0x0106_0102
    assert cfg_read(io, 7, 0) == 0xFFFF_FFFF          # empty slot
    io.write(0xCF8, 4, 0x0000_0000 | 3 << 11)            # enable bit clear
    assert io.read(0xCFC, 4) == 0xFFFF_FFFF


def test_bar_sizing_and_mapping_follow_command_register():
    io, mmio, _, fn, io_regs, mem_regs = make()
    cfg_write(io, 3, 0x20, 0xFFFF_FFFF)
    assert cfg_read(io, 3, 0x20) == 0xFFFF_FFE1        # 32-byte I/O BAR
    cfg_write(io, 3, 0x24, 0xFFFF_FFFF)
    assert cfg_read(io, 3, 0x24) == 0xFFFF_F000        # 4 KiB memory BAR
    assert cfg_read(io, 3, 0x10) == 0                 # unimplemented BAR
    cfg_write(io, 3, 0x10, 0xFFFF_FFFF)
    assert cfg_read(io, 3, 0x10) == 0
    cfg_write(io, 3, 0x20, 0xD000)
    cfg_write(io, 3, 0x24, 0xF000_0000)
    assert io.read(0xD004, 4) == 0xFFFF_FFFF            # decoding still off
    cfg_write(io, 3, 0x04, 0x0003, size=2)
    assert io.read(0xD004, 4) == 0x1234 + 4
    mmio.write(0xF000_0010, 4, 7)
    assert mem_regs.log[-1] == ("w", 0x10, 4, 7)
    # move the I/O BAR: the old window disappears
    cfg_write(io, 3, 0x20, 0xD100)
    assert io.read(0xD004, 4) == 0xFFFF_FFFF
    assert io.read(0xD104, 2) == 0x1234 + 4
    cfg_write(io, 3, 0x04, 0x0000, size=2)
    assert io.read(0xD104, 2) == 0xFFFF
    assert mmio.read(0xF000_0000, 4) == 0xFFFF_FFFF


def test_conflicting_bar_is_not_decoded_and_does_not_raise():
    io, _, _, fn, _, _ = make()
    cfg_write(io, 3, 0x20, 0xCE0)                     # overlaps 0xCF8 (the bridge itself)
    cfg_write(io, 3, 0x04, 0x0001, size=2)
    assert 4 in fn.bar_conflicts
    assert cfg_read(io, 0, 0) == 0x1237_8086          # bridge still works
    cfg_write(io, 3, 0x20, 0xD000)
    assert not fn.bar_conflicts and fn.bars[4].mapped_at == 0xD000


def test_intx_follows_request_and_disable_bit():
    line = IrqLine()
    io, _, _, fn, _, _ = make(line)
    fn.set_intx(True)
    assert line.level and cfg_read(io, 3, 0x06, 2) & 0x08
    cfg_write(io, 3, 0x04, 0x0400, size=2)             # INTx disable
    assert not line.level and cfg_read(io, 3, 0x06, 2) & 0x08
    cfg_write(io, 3, 0x04, 0x0000, size=2)
    assert line.level
    fn.set_intx(False)
    assert not line.level and not cfg_read(io, 3, 0x06, 2) & 0x08
    assert cfg_read(io, 3, 0x3D, 1) == 1
    cfg_write(io, 3, 0x3C, 11, size=1)
    assert fn.interrupt_line == 11


def test_read_only_fields_and_status_w1c():
    io, _, _, fn, _, _ = make()
    cfg_write(io, 3, 0x00, 0)
    assert cfg_read(io, 3, 0) == 0x2922_8086
    fn.config[0x07] = 0x20                            # pretend "received master abort"
    cfg_write(io, 3, 0x06, 0x2000, size=2)
    assert fn.config[0x07] == 0


def test_capability_list():
    fn = PciFunction(0x1AF4, 0x1048, 0x010000)
    a = fn.add_capability(0x09, b"\x10\x01\x00\x00")
    b = fn.add_capability(0x05, b"\x00" * 12)
    assert fn.config_read(0x06, 2) & 0x10
    assert fn.config_read(0x34, 1) == a
    assert fn.config_read(a, 1) == 0x09 and fn.config_read(a + 1, 1) == b
    assert fn.config_read(b + 1, 1) == 0
    assert fn.config_read(a + 2, 1) == 0x10
    with pytest.raises(ValueError):
        fn.add_capability(0x09, b"\x00" * 250)


def test_assign_resources_and_saved_state_roundtrip():
    io, mmio, bridge, fn, _, mem_regs = make()
    bridge.assign_resources()
    assert fn.bars[4].mapped_at == 0xC000 and fn.bars[5].mapped_at == 0xE000_0000
    assert fn.bus_master
    io.write(0xCF8, 4, 0x8000_1804)
    state, fstate = bridge.get_state(), fn.get_state()
    cfg_write(io, 3, 0x04, 0, size=2)
    io.write(0xCF8, 4, 0x8000_0000)
    assert fn.bars[5].mapped_at is None
    bridge.set_state(state)
    assert io.read(0xCF8, 4) == 0x8000_1804
    fn.set_state(fstate)
    assert fn.bars[5].mapped_at == 0xE000_0000
    mmio.read(0xE000_0008, 4)
    assert mem_regs.log[-1] == ("r", 8, 4)


def test_bad_declarations_rejected():
    fn = PciFunction(1, 2, 3)
    with pytest.raises(ValueError):
        fn.add_bar(0, 24, BAR_MEM32, Regs())
    with pytest.raises(ValueError):
        fn.add_bar(6, 16, BAR_MEM32, Regs())
    with pytest.raises(ValueError):
        PciFunction(1, 2, 3, interrupt_pin=5)
    bridge = PciHostBridge()
    with pytest.raises(ValueError):
        bridge.add_function(fn, 0)
