"""8259A pair: byte-level init scripts as Linux and a BIOS issue them."""

import pytest

from vmm.devices.pic import PicPair


def _init(pic, master_base=0x20, slave_base=0x28, icw4=0x01):
    pic.master.write(0, 1, 0x11)        # ICW1: edge, cascade, ICW4 needed
    pic.master.write(1, 1, master_base)  # ICW2
    pic.master.write(1, 1, 0x04)        # ICW3: slave on IR2
    pic.master.write(1, 1, icw4)        # ICW4
    pic.slave.write(0, 1, 0x11)
    pic.slave.write(1, 1, slave_base)
    pic.slave.write(1, 1, 0x02)
    pic.slave.write(1, 1, icw4)
    pic.master.write(1, 1, 0x00)        # OCW1: unmask all
    pic.slave.write(1, 1, 0x00)


def _eoi(pic, slave=False):
    if slave:
        pic.slave.write(0, 1, 0x20)
    pic.master.write(0, 1, 0x20)


def test_edge_irq_vector_and_eoi():
    changes = []
    pic = PicPair(on_change=changes.append)
    _init(pic)
    assert not pic.has_interrupt()
    pic.set_irq(4, True)
    assert pic.has_interrupt() and changes == [True]
    assert pic.acknowledge() == 0x24
    assert not pic.has_interrupt() and changes == [True, False]
    # ISR holds IR4; read it via OCW3
    pic.master.write(0, 1, 0x0B)
    assert pic.master.read(0, 1) == 0x10
    pic.master.write(0, 1, 0x0A)
    assert pic.master.read(0, 1) == 0x00       # IRR cleared by the INTA (edge mode)
    # line still high: no new edge, nothing pending after EOI
    _eoi(pic)
    assert not pic.has_interrupt()
    pic.set_irq(4, False)
    pic.set_irq(4, True)
    assert pic.acknowledge() == 0x24


def test_priority_and_nesting():
    pic = PicPair()
    _init(pic)
    pic.set_irq(3, True)
    pic.set_irq(1, True)
    assert pic.acknowledge() == 0x21           # IR1 beats IR3
    assert not pic.has_interrupt()             # IR3 blocked while IR1 in service
    pic.set_irq(0, True)
    assert pic.acknowledge() == 0x20           # higher priority nests
    _eoi(pic)                                  # non-specific EOI ends IR0 (highest in service)
    assert not pic.has_interrupt()
    _eoi(pic)
    assert pic.acknowledge() == 0x23


def test_cascade_priority_between_chips():
    pic = PicPair()
    _init(pic)
    pic.set_irq(14, True)
    pic.set_irq(5, True)
    assert pic.acknowledge() == 0x2E           # slave (via IR2) outranks master IR5
    assert not pic.has_interrupt()
    pic.set_irq(9, True)                       # lower than IR14 on the slave: not nested
    assert not pic.has_interrupt()
    _eoi(pic, slave=True)
    assert pic.acknowledge() == 0x29
    _eoi(pic, slave=True)
    assert pic.acknowledge() == 0x25
    # slave ISR read back
    pic.slave.write(0, 1, 0x0B)
    assert pic.slave.read(0, 1) == 0


def test_mask_and_spurious():
    pic = PicPair()
    _init(pic)
    pic.master.write(1, 1, 0x01)                # mask IR0
    assert pic.master.read(1, 1) == 0x01
    pic.set_irq(0, True)
    assert not pic.has_interrupt()
    assert pic.acknowledge() == 0x27           # spurious IRQ7, no ISR bit set
    pic.master.write(0, 1, 0x0B)
    assert pic.master.read(0, 1) == 0
    pic.master.write(1, 1, 0x00)
    assert pic.has_interrupt() and pic.acknowledge() == 0x20


def test_level_mode_via_elcr():
    pic = PicPair()
    _init(pic)
    pic.elcr.write(0, 2, 0xFFFF)
    assert pic.elcr.read(0, 2) == 0xDEF8       # IRQ0-2, 8 and 13 cannot be level
    pic.set_irq(11, True)
    assert pic.acknowledge() == 0x2B
    _eoi(pic, slave=True)
    assert pic.has_interrupt()                 # still asserted: level re-requests
    pic.set_irq(11, False)
    assert not pic.has_interrupt()
    # an edge input (IRQ1 is always edge) stays latched after the line drops
    pic.set_irq(1, True)
    pic.set_irq(1, False)
    assert pic.acknowledge() == 0x21
    # a level input that drops before INTA is gone
    pic.set_irq(3, True)
    pic.set_irq(3, False)
    assert not pic.has_interrupt()


def test_auto_eoi_and_rotation():
    pic = PicPair()
    _init(pic, icw4=0x03)                      # 8086 mode + AEOI
    pic.set_irq(1, True)
    assert pic.acknowledge() == 0x21
    pic.master.write(0, 1, 0x0B)
    assert pic.master.read(0, 1) == 0          # no ISR bit with auto-EOI
    # set priority: IR4 lowest -> IR5 highest
    pic2 = PicPair()
    _init(pic2)
    pic2.master.write(0, 1, 0xC4)
    pic2.set_irq(3, True)
    pic2.set_irq(6, True)
    assert pic2.acknowledge() == 0x26
    # rotate on specific EOI of IR6 -> IR7 highest, IR3 still pending gets served
    pic2.master.write(0, 1, 0xE6)
    assert pic2.acknowledge() == 0x23


def test_special_mask_mode():
    pic = PicPair()
    _init(pic)
    pic.set_irq(1, True)
    assert pic.acknowledge() == 0x21
    pic.set_irq(5, True)
    assert not pic.has_interrupt()
    pic.master.write(1, 1, 0x02)               # mask IR1 (in service)
    pic.master.write(0, 1, 0x68)               # OCW3: set special mask
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x25


def test_poll_command():
    pic = PicPair()
    _init(pic)
    pic.master.write(0, 1, 0x0C)
    assert pic.master.read(0, 1) == 0          # nothing pending
    pic.set_irq(6, True)
    pic.master.write(0, 1, 0x0C)
    assert pic.master.read(0, 1) == 0x86
    assert not pic.has_interrupt()             # poll acknowledged it


def test_hostile_accesses_and_bad_irq():
    pic = PicPair()
    _init(pic)
    pic.master.write(5, 1, 0xFF)
    pic.master.write(0, 4, 0xFFFFFFFF)
    assert pic.master.read(0, 2) == 0xFFFF
    assert pic.master.read(1, 1) == 0x00
    assert pic.elcr.read(1, 2) == 0xFFFF
    with pytest.raises(ValueError):
        pic.set_irq(16, True)
    with pytest.raises(ValueError):
        pic.irq_line(-1)
    pic.irq_line(2).raise_()                  # the bus's IRQ2 is IRQ9 on a PC/AT
    assert pic.acknowledge() == 0x29


def test_irq_line_and_state_round_trip():
    pic = PicPair()
    _init(pic)
    line = pic.irq_line(12)
    line.raise_()
    pic.master.write(1, 1, 0x10)
    st = pic.get_state()
    other = PicPair()
    other.set_state(st)
    assert other.get_state() == st
    assert other.has_interrupt()
    assert other.acknowledge() == 0x2C
    assert other.master.read(1, 1) == 0x10
