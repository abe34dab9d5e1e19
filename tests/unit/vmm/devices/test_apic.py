"""Local APIC: register scripts as Linux and a BIOS issue them, with a fake clock, and register abuse."""

import pytest

from vmm.devices.apic import (
    DM_EXTINT,
    DM_FIXED,
    DM_INIT,
    DM_NMI,
    DM_SIPI,
    ESR_ILLEGAL_REGISTER,
    ESR_RECV_ILLEGAL_VECTOR,
    ESR_SEND_ILLEGAL_VECTOR,
    REG_DFR,
    REG_EOI,
    REG_ESR,
    REG_ICR_HI,
    REG_ICR_LO,
    REG_ID,
    REG_IRR,
    REG_ISR,
    REG_LDR,
    REG_LVT_ERROR,
    REG_LVT_LINT0,
    REG_LVT_LINT1,
    REG_LVT_TIMER,
    REG_PPR,
    REG_SVR,
    REG_TIMER_CURRENT,
    REG_TIMER_DIVIDE,
    REG_TIMER_INITIAL,
    REG_TMR,
    REG_TPR,
    REG_VERSION,
    ApicBus,
    LocalApic,
    LocalApicState,
)
from vmm.devices.pic import PicPair
from vmm.ssm import decode_state, encode_state
from vmm.tm import FakeClock


def _apic(clock=None, pic=None, enable=True):
    changes = []
    apic = LocalApic(clock or FakeClock(), pic=pic, on_change=changes.append)
    bus = ApicBus()
    bus.attach(apic)
    if enable:
        apic.write(REG_SVR, 4, 0x1FF)
    return apic, changes


def _bit(apic, base, vector):
    return bool(apic.read(base + 0x10 * (vector // 32), 4) >> (vector % 32) & 1)


def test_power_on_registers():
    apic, _ = _apic(enable=False)
    pic = PicPair()
    wired = LocalApic(FakeClock(), pic=pic)
    pic.set_irq(0, True)
    assert wired.has_interrupt()                            # the 8259A reaches the boot CPU at once
    assert apic.read(REG_ID, 4) == 0
    assert apic.read(REG_VERSION, 4) == 0x0005_0014
    assert apic.read(REG_SVR, 4) == 0xFF
    assert apic.read(REG_DFR, 4) == 0xFFFF_FFFF
    for reg in (REG_LVT_TIMER, REG_LVT_LINT1, REG_LVT_ERROR):
        assert apic.read(reg, 4) == 0x10000
    assert apic.read(REG_LVT_LINT0, 4) == 0x700         # the boot CPU's virtual wire, as QEMU resets it
    assert apic.read_msr_base() == 0xFEE0_0900


def test_software_disabled_apic_accepts_no_fixed_interrupts_and_keeps_lvts_masked():
    apic, _ = _apic(enable=False)
    apic.receive(DM_FIXED, 0x40, False)
    assert not apic.has_interrupt()
    apic.write(REG_LVT_TIMER, 4, 0x30)
    assert apic.read(REG_LVT_TIMER, 4) == 0x10030          # the mask cannot be cleared
    apic.write(REG_SVR, 4, 0x1FF)
    apic.write(REG_LVT_TIMER, 4, 0x30)
    assert apic.read(REG_LVT_TIMER, 4) == 0x30
    apic.write(REG_SVR, 4, 0xFF)                            # software disable masks every LVT
    assert apic.read(REG_LVT_TIMER, 4) == 0x10030


def test_fixed_interrupt_ack_eoi():
    apic, changes = _apic()
    apic.receive(DM_FIXED, 0x41, False)
    assert changes and apic.has_interrupt() and _bit(apic, REG_IRR, 0x41)
    assert apic.acknowledge() == 0x41
    assert _bit(apic, REG_ISR, 0x41) and not _bit(apic, REG_IRR, 0x41)
    assert apic.read(REG_PPR, 4) == 0x40
    apic.write(REG_EOI, 4, 0)
    assert not _bit(apic, REG_ISR, 0x41) and apic.read(REG_PPR, 4) == 0


def test_isr_priority_order_and_nesting():
    apic, _ = _apic()
    for v in (0x31, 0x62, 0x55):
        apic.receive(DM_FIXED, v, False)
    assert apic.acknowledge() == 0x62                      # the highest vector first
    assert not apic.has_interrupt()                         # 0x55 is below the in-service class
    apic.receive(DM_FIXED, 0x81, False)
    assert apic.acknowledge() == 0x81                       # a higher class nests
    apic.write(REG_EOI, 4, 0)                               # EOI ends 0x81 (the highest in service)
    assert not _bit(apic, REG_ISR, 0x81) and _bit(apic, REG_ISR, 0x62)
    apic.write(REG_EOI, 4, 0)
    assert apic.acknowledge() == 0x55
    apic.write(REG_EOI, 4, 0)
    assert apic.acknowledge() == 0x31


def test_same_class_waits_for_eoi():
    apic, _ = _apic()
    apic.receive(DM_FIXED, 0x50, False)
    assert apic.acknowledge() == 0x50
    apic.receive(DM_FIXED, 0x5F, False)
    assert not apic.has_interrupt()                         # priority class 5 is in service
    apic.write(REG_EOI, 4, 0)
    assert apic.acknowledge() == 0x5F


def test_tpr_masks_by_priority_class():
    apic, _ = _apic()
    apic.write(REG_TPR, 4, 0x50)
    apic.receive(DM_FIXED, 0x45, False)
    apic.receive(DM_FIXED, 0x5A, False)
    assert not apic.has_interrupt() and apic.read(REG_PPR, 4) == 0x50
    apic.write(REG_TPR, 4, 0x4F)
    assert apic.acknowledge() == 0x5A
    apic.write(REG_EOI, 4, 0)
    assert not apic.has_interrupt()                         # 0x45: class 4 <= TPR class 4
    apic.write(REG_TPR, 4, 0)
    assert apic.acknowledge() == 0x45


def test_spurious_vector_when_nothing_is_deliverable():
    apic, _ = _apic()
    apic.write(REG_SVR, 4, 0x1EF)
    assert apic.acknowledge() == 0xEF
    assert apic.read(REG_ISR + 0x70, 4) == 0


def test_level_triggered_eoi_is_broadcast():
    apic, _ = _apic()
    heard = []
    apic.bus.eoi_listeners.append(heard.append)
    apic.receive(DM_FIXED, 0x70, True)
    assert _bit(apic, REG_TMR, 0x70)
    apic.acknowledge()
    apic.write(REG_EOI, 4, 0)
    apic.receive(DM_FIXED, 0x71, False)
    apic.acknowledge()
    apic.write(REG_EOI, 4, 0)
    assert heard == [0x70]                                  # edge EOIs are not broadcast


def test_illegal_vectors_set_esr():
    apic, _ = _apic()
    apic.write(REG_LVT_ERROR, 4, 0xFE)
    apic.receive(DM_FIXED, 3, False)
    apic.write(REG_ESR, 4, 0)                               # latch
    assert apic.read(REG_ESR, 4) == ESR_RECV_ILLEGAL_VECTOR
    assert apic.acknowledge() == 0xFE                       # the error LVT fired
    apic.write(REG_EOI, 4, 0)
    apic.write(REG_ICR_LO, 4, 0x4000 | 0x05)                # fixed IPI with vector 5
    apic.write(REG_ESR, 4, 0)
    assert apic.read(REG_ESR, 4) == ESR_SEND_ILLEGAL_VECTOR
    apic.write(REG_ESR, 4, 0)
    assert apic.read(REG_ESR, 4) == 0


def test_self_ipi_and_physical_destination():
    apic, _ = _apic()
    apic.write(REG_ICR_LO, 4, (1 << 18) | 0x4000 | 0xE1)    # shorthand self
    assert apic.acknowledge() == 0xE1
    apic.write(REG_EOI, 4, 0)
    apic.write(REG_ICR_HI, 4, 0 << 24)
    apic.write(REG_ICR_LO, 4, 0x4000 | 0xE2)                # physical destination 0 (this APIC)
    assert apic.acknowledge() == 0xE2
    apic.write(REG_EOI, 4, 0)
    apic.write(REG_ICR_HI, 4, 5 << 24)
    apic.write(REG_ICR_LO, 4, 0x4000 | 0xE3)                # nobody has id 5
    assert not apic.has_interrupt()
    assert not apic.read(REG_ICR_LO, 4) & (1 << 12)         # never seen busy


def test_logical_flat_and_cluster_destinations():
    apic, _ = _apic()
    apic.write(REG_LDR, 4, 0x0100_0000)
    apic.write(REG_ICR_HI, 4, 0x0300_0000)
    apic.write(REG_ICR_LO, 4, 0x4800 | 0x90)                # logical, flat: mask 0x03 hits bit 0
    assert apic.acknowledge() == 0x90
    apic.write(REG_EOI, 4, 0)
    apic.write(REG_DFR, 4, 0x0FFF_FFFF)                     # cluster model
    apic.write(REG_LDR, 4, 0x2100_0000)                     # cluster 2, member bit 0
    apic.write(REG_ICR_HI, 4, 0x1100_0000)                  # cluster 1: no
    apic.write(REG_ICR_LO, 4, 0x4800 | 0x91)
    assert not apic.has_interrupt()
    apic.write(REG_ICR_HI, 4, 0x2300_0000)
    apic.write(REG_ICR_LO, 4, 0x4800 | 0x92)
    assert apic.acknowledge() == 0x92


def test_init_sipi_nmi_ipis_reach_the_target_hooks():
    clock = FakeClock()
    bus = ApicBus()
    boot = LocalApic(clock, apic_id=0)
    ap = LocalApic(clock, apic_id=1, bsp=False)
    bus.attach(boot)
    bus.attach(ap)
    for a in (boot, ap):
        a.write(REG_SVR, 4, 0x1FF)
    events = []
    ap.on_init = lambda: events.append("init")
    ap.on_sipi = lambda v: events.append(("sipi", v))
    boot.on_init = lambda: events.append("boot-init")
    boot.write(REG_ICR_HI, 4, 1 << 24)
    boot.write(REG_ICR_LO, 4, 0xC500)                      # INIT, level assert
    boot.write(REG_ICR_LO, 4, 0x8500)                      # INIT level de-assert: no-op
    boot.write(REG_ICR_LO, 4, 0x4600 | 0x9A)               # SIPI, start page 0x9A
    boot.write(REG_ICR_LO, 4, (2 << 18) | 0x4500)          # INIT to all: others only
    assert events == ["init", ("sipi", 0x9A), "init"]
    assert ap.read_msr_base() & 0x100 == 0
    boot.write(REG_ICR_LO, 4, 0x4400)                      # NMI to id 1
    assert ap.take_nmi() and not ap.take_nmi() and not boot.take_nmi()


def test_lowest_priority_picks_the_lowest_ppr():
    clock = FakeClock()
    bus = ApicBus()
    a, b = LocalApic(clock, 0), LocalApic(clock, 1, bsp=False)
    for x in (a, b):
        bus.attach(x)
        x.write(REG_SVR, 4, 0x1FF)
        x.write(REG_LDR, 4, 0x0300_0000)
    a.write(REG_TPR, 4, 0x80)
    bus.deliver(0x01, True, 1, 0x60)
    assert not a.has_interrupt() and b.acknowledge() == 0x60


def test_msi_message():
    apic, _ = _apic()
    assert apic.bus.msi(0xFEE0_0000, 0x4065)
    assert apic.acknowledge() == 0x65
    assert not apic.bus.msi(0xFED0_0000, 0x4066)           # not an MSI address
    assert not apic.bus.msi(0xFEE0_0000, 0x0566)           # INIT is not valid in an MSI


def test_extint_through_lint0_passes_the_8259():
    pic = PicPair()
    for port, value in ((0, 0x11), (1, 0x20), (1, 0x04), (1, 0x01), (1, 0x00)):
        pic.master.write(port, 1, value)
    apic, changes = _apic(pic=pic, enable=False)
    apic.write(REG_LVT_LINT0, 4, 0x10000)                   # LINT0 masked
    pic.on_change = apic.pic_changed
    pic.set_irq(1, True)
    assert not apic.has_interrupt()
    apic.firmware_setup()
    assert apic.read(REG_LVT_LINT0, 4) == DM_EXTINT << 8 and apic.read(REG_LVT_LINT1, 4) == DM_NMI << 8
    assert apic.has_interrupt() and changes
    apic.write(REG_TPR, 4, 0xF0)                            # the TPR does not hold ExtINT back
    assert apic.acknowledge() == 0x21
    assert not _bit(apic, REG_ISR, 0x21)                    # the 8259 keeps its own ISR


def test_lint1_nmi_and_lint0_fixed_level():
    apic, _ = _apic()
    apic.write(REG_LVT_LINT1, 4, DM_NMI << 8)
    apic.set_lint(1, True)
    assert apic.take_nmi()
    apic.write(REG_LVT_LINT0, 4, (1 << 15) | 0x68)         # fixed, level
    apic.set_lint(0, True)
    assert apic.acknowledge() == 0x68
    apic.set_lint(0, True)                                  # remote IRR holds it until the EOI
    assert not _bit(apic, REG_IRR, 0x68)
    apic.write(REG_EOI, 4, 0)
    apic.set_lint(0, True)
    assert _bit(apic, REG_IRR, 0x68)


def test_timer_one_shot_with_divider():
    clock = FakeClock()
    apic, _ = _apic(clock)
    apic.write(REG_TIMER_DIVIDE, 4, 0x3)                    # divide by 16
    apic.write(REG_LVT_TIMER, 4, 0xEC)
    apic.write(REG_TIMER_INITIAL, 4, 1000)                  # 16 us at 1 GHz / 16
    clock.advance(8000)
    assert apic.read(REG_TIMER_CURRENT, 4) == 500 and not apic.has_interrupt()
    clock.advance(8000)
    assert apic.acknowledge() == 0xEC
    apic.write(REG_EOI, 4, 0)
    assert apic.read(REG_TIMER_CURRENT, 4) == 0
    clock.advance(100_000)
    assert not apic.has_interrupt()                         # one-shot: once
    apic.write(REG_TIMER_INITIAL, 4, 10)                    # rewriting the initial count restarts it
    clock.advance(160)
    assert apic.acknowledge() == 0xEC


def test_timer_periodic_and_masked_and_stopped():
    clock = FakeClock()
    apic, _ = _apic(clock)
    apic.write(REG_TIMER_DIVIDE, 4, 0xB)                    # divide by 1
    apic.write(REG_LVT_TIMER, 4, (1 << 17) | 0xEF)
    apic.write(REG_TIMER_INITIAL, 4, 1_000_000)             # 1 ms
    ticks = 0
    for _ in range(5):
        clock.advance(1_000_000)
        if apic.has_interrupt():
            assert apic.acknowledge() == 0xEF
            apic.write(REG_EOI, 4, 0)
            ticks += 1
    assert ticks == 5
    clock.advance(250_000)
    assert apic.read(REG_TIMER_CURRENT, 4) == 750_000
    apic.write(REG_LVT_TIMER, 4, (1 << 17) | (1 << 16) | 0xEF)   # masked: counts, does not interrupt
    clock.advance(3_000_000)
    assert not apic.has_interrupt() and apic.read(REG_TIMER_CURRENT, 4) == 750_000
    apic.write(REG_TIMER_INITIAL, 4, 0)                      # stop
    assert apic.read(REG_TIMER_CURRENT, 4) == 0
    apic.write(REG_LVT_TIMER, 4, (1 << 17) | 0xEF)
    clock.advance(5_000_000)
    assert not apic.has_interrupt()


def test_tiny_periodic_timer_cannot_flood_the_host():
    clock = FakeClock()
    apic, _ = _apic(clock)
    apic.write(REG_TIMER_DIVIDE, 4, 0xB)
    apic.write(REG_LVT_TIMER, 4, (1 << 17) | 0xEF)
    apic.write(REG_TIMER_INITIAL, 4, 1)
    assert clock.advance(1_000_000) <= 11


def test_timer_state_survives_save_and_restore():
    clock = FakeClock()
    apic, _ = _apic(clock)
    apic.write(REG_LVT_TIMER, 4, 0xE0)
    apic.write(REG_TIMER_DIVIDE, 4, 0xB)
    apic.write(REG_TIMER_INITIAL, 4, 5000)
    apic.receive(DM_FIXED, 0x44, True)
    state = decode_state(LocalApicState, encode_state(apic.get_state()))    # through the SSM codec
    other, _ = _apic(clock, enable=False)
    other.set_state(state)
    assert _bit(other, REG_IRR, 0x44) and _bit(other, REG_TMR, 0x44)
    clock.advance(5000)
    assert _bit(other, REG_IRR, 0xE0)


def test_msr_disable_resets_and_enable_again():
    apic, _ = _apic()
    apic.write(REG_TPR, 4, 0x20)
    assert not apic.write_msr_base(0xFEE0_0000 | 0x800 | 0x400)    # x2APIC mode is not offered
    assert not apic.write_msr_base(1 << 60)                          # reserved bits
    assert apic.write_msr_base(0xFEE0_0000)
    assert not apic.hardware_enabled and apic.read_msr_base() == 0xFEE0_0100
    assert not apic.receive(DM_FIXED, 0x40, False)
    assert apic.write_msr_base(0xFEE0_0800)
    assert apic.read(REG_TPR, 4) == 0 and apic.read(REG_SVR, 4) == 0xFF


def test_register_abuse_never_crashes():
    apic, _ = _apic()
    apic.write(0x000, 4, 0xFFFF_FFFF)                      # reserved
    apic.write(0x3F0, 4, 0xFFFF_FFFF)
    apic.write(REG_ESR, 4, 0)
    assert apic.read(REG_ESR, 4) == ESR_ILLEGAL_REGISTER
    apic.write(REG_VERSION, 4, 0)                           # read-only registers keep their value
    apic.write(REG_PPR, 4, 0xFF)
    apic.write(REG_ISR, 4, 0xFFFF_FFFF)
    apic.write(REG_TIMER_CURRENT, 4, 1234)
    assert apic.read(REG_VERSION, 4) == 0x0005_0014 and apic.read(REG_ISR, 4) == 0
    assert apic.read(REG_TIMER_CURRENT, 4) == 0
    apic.write(REG_TPR + 1, 4, 0xFF)                        # unaligned
    apic.write(REG_TPR, 1, 0xFF)                            # odd sizes
    apic.write(REG_TPR, 2, 0xFF)
    apic.write(0xFFF, 4, 0xFF)
    apic.write(0x1000, 4, 0xFF)
    apic.write(-4, 4, 0xFF)
    assert apic.read(REG_TPR, 4) == 0
    assert apic.read(REG_VERSION + 2, 2) == 0x0005         # sub-register reads return the bytes
    assert apic.read(REG_VERSION, 8) == 0x0005_0014
    assert apic.read(0xFFE, 4) == 0 and apic.read(REG_ID, 3) == 0 and apic.read(-1, 4) == 0
    for mode in range(8):                                   # every delivery mode, bogus ones included
        for shorthand in range(4):
            apic.write(REG_ICR_LO, 4, (shorthand << 18) | (mode << 8) | 0x4000 | 0x33)
    apic.write(REG_LVT_TIMER, 4, 3 << 17)                   # the reserved timer mode
    apic.write(REG_TIMER_INITIAL, 4, 0xFFFF_FFFF)
    apic.write(REG_TIMER_DIVIDE, 4, 0xFFFF_FFFF)
    assert apic.read(REG_TIMER_DIVIDE, 4) == 0xB


@pytest.mark.parametrize("mode", [DM_INIT, DM_SIPI])
def test_init_and_sipi_to_self_are_dropped(mode):
    apic, _ = _apic()
    seen = []
    apic.on_init = lambda: seen.append("init")
    apic.on_sipi = seen.append
    apic.write(REG_ICR_LO, 4, (1 << 18) | (mode << 8) | 0x4000 | 0x10)
    assert seen == []


def test_apic_window_reaches_the_accessing_vcpus_apic():
    import threading

    from vmm.devices.apic import LocalApicWindow
    clock = FakeClock()
    bus = ApicBus()
    apics = [LocalApic(clock, apic_id=i, bsp=i == 0) for i in range(2)]
    for a in apics:
        bus.attach(a)
    window = LocalApicWindow(apics)
    assert window.read(REG_ID, 4) == 0                      # unbound thread: the boot CPU's APIC
    seen = []

    def vcpu1():
        apics[1].bind_current_thread()
        seen.append(window.read(REG_ID, 4))
        window.write(REG_TPR, 4, 0x30)

    t = threading.Thread(target=vcpu1)
    t.start()
    t.join()
    assert seen == [1 << 24] and apics[1].read(REG_TPR, 4) == 0x30 and apics[0].read(REG_TPR, 4) == 0


def test_globally_disabled_apic_passes_the_8259_straight_through():
    pic = PicPair()
    for port, value in ((0, 0x11), (1, 0x30), (1, 0x04), (1, 0x01), (1, 0x00)):
        pic.master.write(port, 1, value)
    apic, _ = _apic(pic=pic, enable=False)
    apic.write(REG_LVT_LINT0, 4, 0x10000)                   # LINT0 masked
    pic.set_irq(3, True)
    assert not apic.has_interrupt()
    apic.write_msr_base(0xFEE0_0000)                        # IA32_APIC_BASE.EN = 0
    assert apic.acknowledge() == 0x33
