"""IO-APIC: IOREGSEL/IOWIN scripts as Linux issues them, edge and level pins, EOI, and register abuse."""

import random

import pytest

from vmm.devices.apic import REG_EOI, REG_LVT_LINT0, REG_SVR, REG_TPR, ApicBus, LocalApic, LocalApicState
from vmm.devices.ioapic import IoApic, IoApicState
from vmm.devices.irq_routing import InterruptRouting, pci_apic_gsi
from vmm.devices.pic import PicPair
from vmm.ssm import decode_state, encode_state
from vmm.tm import FakeClock

MASKED, LEVEL, REMOTE_IRR = 1 << 16, 1 << 15, 1 << 14


def _setup():
    bus = ApicBus()
    apic = LocalApic(FakeClock(), apic_id=0)
    bus.attach(apic)
    apic.write(REG_SVR, 4, 0x1FF)
    io = IoApic(bus, ioapic_id=1)
    return io, apic


def _rd(io, index):
    io.write(0x00, 4, index)
    return io.read(0x10, 4)


def _wr(io, index, value):
    io.write(0x00, 4, index)
    io.write(0x10, 4, value)


def _route(io, pin, low, dest=0):
    _wr(io, 0x11 + 2 * pin, dest << 24)
    _wr(io, 0x10 + 2 * pin, low)


def test_identification_registers():
    io, _ = _setup()
    assert _rd(io, 0x00) == 1 << 24
    assert _rd(io, 0x01) == 0x0017_0011                    # 24 entries, 82093AA
    assert _rd(io, 0x02) == 1 << 24
    _wr(io, 0x00, 0x0300_0000)
    assert _rd(io, 0x00) == 0x0300_0000
    for pin in range(24):
        assert _rd(io, 0x10 + 2 * pin) == MASKED and _rd(io, 0x11 + 2 * pin) == 0


def test_edge_pin_delivers_on_rising_edges_only():
    io, apic = _setup()
    _route(io, 2, 0x30)
    io.set_irq(2, True)
    assert apic.acknowledge() == 0x30
    apic.write(REG_EOI, 4, 0)
    io.set_irq(2, True)                                     # still high: no new edge
    assert not apic.has_interrupt()
    io.set_irq(2, False)
    io.set_irq(2, True)
    assert apic.acknowledge() == 0x30


def test_masked_edge_is_delivered_on_unmask():
    io, apic = _setup()
    _route(io, 4, MASKED | 0x34)
    io.set_irq(4, True)
    io.set_irq(4, False)
    assert not apic.has_interrupt()
    _route(io, 4, 0x34)
    assert apic.acknowledge() == 0x34


def test_level_pin_remote_irr_and_eoi():
    io, apic = _setup()
    _route(io, 11, LEVEL | (1 << 13) | 0x41)               # level, active low (the polarity is the OS's view)
    io.set_irq(11, True)
    assert apic.acknowledge() == 0x41
    assert _rd(io, 0x10 + 22) & REMOTE_IRR
    io.set_irq(11, True)                                    # no new message while remote IRR is set
    assert not apic.has_interrupt()
    apic.write(REG_EOI, 4, 0)                               # still asserted: delivered again
    assert not _rd(io, 0x10 + 22) & REMOTE_IRR or apic.has_interrupt()
    assert apic.acknowledge() == 0x41
    io.set_irq(11, False)                                   # the device is served
    apic.write(REG_EOI, 4, 0)
    assert not _rd(io, 0x10 + 22) & REMOTE_IRR and not apic.has_interrupt()


def test_level_pin_masked_then_unmasked_while_asserted():
    io, apic = _setup()
    _route(io, 9, MASKED | LEVEL | 0x49)
    io.set_irq(9, True)
    assert not apic.has_interrupt()
    _route(io, 9, LEVEL | 0x49)
    assert apic.acknowledge() == 0x49


def test_switching_to_edge_clears_remote_irr():
    io, apic = _setup()
    _route(io, 10, LEVEL | 0x4A)
    io.set_irq(10, True)
    apic.acknowledge()
    _wr(io, 0x10 + 20, MASKED | 0x4A)                       # Linux's EOI for IO-APICs without an EOI register
    assert not _rd(io, 0x10 + 20) & REMOTE_IRR
    _wr(io, 0x10 + 20, LEVEL | 0x4A)
    assert _rd(io, 0x10 + 20) & REMOTE_IRR                  # re-delivered: the line is still high
    apic.write(REG_EOI, 4, 0)
    assert apic.acknowledge() == 0x4A


def test_destination_and_tpr():
    io, apic = _setup()
    _route(io, 1, 0x31, dest=3)                             # no APIC with id 3
    io.set_irq(1, True)
    assert not apic.has_interrupt()
    _route(io, 5, (1 << 11) | 0x35, dest=0x01)              # logical, flat, LDR 0: no match
    io.set_irq(5, True)
    assert not apic.has_interrupt()
    _route(io, 6, 0x36)
    apic.write(REG_TPR, 4, 0x30)
    io.set_irq(6, True)
    assert not apic.has_interrupt()
    apic.write(REG_TPR, 4, 0)
    assert apic.acknowledge() == 0x36


def test_extint_pin_hands_over_the_8259_vector():
    pic = PicPair()
    for port, value in ((0, 0x11), (1, 0x20), (1, 0x04), (1, 0x01), (1, 0x00)):
        pic.master.write(port, 1, value)
    bus = ApicBus()
    apic = LocalApic(FakeClock(), pic=pic)
    bus.attach(apic)
    apic.write(REG_SVR, 4, 0x1FF)
    apic.write(REG_LVT_LINT0, 4, 0x10000)
    io = IoApic(bus)
    _route(io, 0, 7 << 8)
    pic.set_irq(0, True)
    io.set_irq(0, True)
    # LINT0 stays masked: only the IO-APIC's ExtINT message lets the 8259's vector through
    assert apic.acknowledge() == 0x20
    pic.master.write(0, 1, 0x20)
    pic.set_irq(0, False)
    pic.set_irq(0, True)
    assert not apic.has_interrupt()                        # one message, one vector


def test_register_abuse_never_crashes():
    io, apic = _setup()
    _wr(io, 0x01, 0)                                        # version and arbitration are read-only
    _wr(io, 0x02, 0xFFFF_FFFF)
    assert _rd(io, 0x01) == 0x0017_0011
    _wr(io, 0x40, 0xFFFF_FFFF)                              # beyond the table
    _wr(io, 0xFF, 0xFFFF_FFFF)
    assert _rd(io, 0x40) == 0 and _rd(io, 0x03) == 0
    _wr(io, 0x10, 0xFFFF_FFFF)                              # all ones, RO bits included
    assert _rd(io, 0x10) == 0x0001_AFFF
    io.write(0x10, 1, 0)                                    # partial window writes are dropped
    io.write(0x14, 4, 0)
    io.write(0x20, 4, 0)
    io.write(0x10, 3, 0)
    assert _rd(io, 0x10) == 0x0001_AFFF
    assert io.read(0x04, 4) == 0 and io.read(0x10, 3) == 0 and io.read(0xFFF, 1) == 0
    io.set_irq(24, True)                                    # pins out of range
    io.set_irq(-1, True)
    for mode in range(8):                                   # every delivery mode, bogus ones included
        _route(io, 3, (mode << 8) | 0x33)
        io.set_irq(3, True)
        io.set_irq(3, False)
    io.eoi(0x33)


def test_saved_state_round_trip():
    io, apic = _setup()
    _route(io, 11, LEVEL | 0x41)
    io.set_irq(11, True)
    state = decode_state(IoApicState, encode_state(io.get_state()))
    other = IoApic(ApicBus())
    other.set_state(state)
    assert _rd(other, 0x10 + 22) & REMOTE_IRR and other.get_state() == state


def test_routing_isa_irq0_reaches_pin2_and_pic_stays_wired():
    clock = FakeClock()
    pic = PicPair()
    routing = InterruptRouting(pic, clock, local_apic=True, ioapic=True)
    apic = routing.controller(0)
    apic.firmware_setup()
    for port, value in ((0, 0x11), (1, 0x20), (1, 0x04), (1, 0x01), (1, 0xFF)):
        pic.master.write(port, 1, value)                    # the 8259 fully masked, as Linux leaves it
    _route(routing.ioapic, 2, 0x30)
    line0 = routing.line(0)
    line0.raise_()
    assert apic.acknowledge() == 0x30
    apic.write(REG_EOI, 4, 0)
    line0.lower()
    # COM1 and COM3 share IRQ 4: the pin sees the OR
    _route(routing.ioapic, 4, LEVEL | 0x34)
    a, b = routing.line(4), routing.line(4)
    a.raise_()
    b.raise_()
    a.lower()
    assert apic.acknowledge() == 0x34
    b.lower()
    apic.write(REG_EOI, 4, 0)
    assert not apic.has_interrupt()
    # PCI INTx straight to pins 16-23, and MSI
    _route(routing.ioapic, 16, LEVEL | 0x50)
    routing.gsi_line(16).raise_()
    assert apic.acknowledge() == 0x50
    assert routing.msi(0xFEE0_0000, 0x61) and apic.acknowledge() == 0x61


def test_routing_without_apics_is_the_8259():
    pic = PicPair()
    routing = InterruptRouting(pic, FakeClock())
    assert routing.controller(0) is pic and routing.ioapic is None and routing.stateful() == {}
    woken = []
    routing.set_notify(woken.append)
    for port, value in ((0, 0x11), (1, 0x20), (1, 0x04), (1, 0x01), (1, 0x00)):
        pic.master.write(port, 1, value)
    routing.line(3).raise_()
    routing.gsi(16, True)                                   # no IO-APIC: dropped
    assert woken and pic.acknowledge() == 0x23
    assert not routing.msi(0xFEE0_0000, 0x61)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_register_traffic_on_both_apics(seed):
    """A hostile guest: random accesses of any size and offset, random line changes and IPIs."""
    rng = random.Random(seed)
    clock = FakeClock()
    pic = PicPair()
    routing = InterruptRouting(pic, clock, local_apic=True, ioapic=True)
    apic, io = routing.controller(0), routing.ioapic
    apic.firmware_setup()
    lines = [routing.line(n) for n in range(16)] + [routing.gsi_line(n) for n in range(16, 24)]
    for _ in range(8000):
        dev, span = (apic, 0x1000) if rng.random() < 0.6 else (io, 0x20)
        size = rng.choice((1, 2, 4, 4, 4, 3, 8, 0))
        offset = rng.randrange(-2, span + 3)
        if rng.random() < 0.3:
            offset &= ~0xF
        if rng.random() < 0.4:
            v = dev.read(offset, size)
            assert isinstance(v, int) and v >= 0
        else:
            dev.write(offset, size, rng.getrandbits(64))
        if rng.random() < 0.1:
            rng.choice(lines).set_level(rng.random() < 0.5)
        if rng.random() < 0.05:
            clock.advance(rng.randrange(0, 5_000_000))
        if rng.random() < 0.02:
            routing.msi(0xFEE0_0000 | rng.getrandbits(20), rng.getrandbits(32))
        if apic.has_interrupt():
            assert 0 <= apic.acknowledge() <= 0xFF
        if rng.random() < 0.2:
            apic.write(REG_EOI, 4, 0)
    for dev, cls in ((apic, LocalApicState), (io, IoApicState)):
        assert decode_state(cls, encode_state(dev.get_state())) is not None


def test_pci_intx_pins_in_apic_mode_follow_virtualbox():
    assert pci_apic_gsi(3, 0) == 19 and pci_apic_gsi(13, 0) == 21 and pci_apic_gsi(7, 3) == 18
    assert {pci_apic_gsi(s, p) for s in range(32) for p in range(4)} == set(range(16, 24))
    with pytest.raises(ValueError):
        pci_apic_gsi(32, 0)
