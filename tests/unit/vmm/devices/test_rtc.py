"""MC146818 RTC/CMOS: time from a fixed start, formats, SET, the three interrupts on IRQ8, CMOS bytes."""

import calendar

import pytest

from vmm.devices.base import IrqLine
from vmm.devices.rtc import Rtc
from vmm.tm import FakeClock

NS = 1_000_000_000
START = calendar.timegm((2026, 11, 21, 14, 30, 15))     # a Saturday


def _make(**kw):
    clock = FakeClock(5 * NS)
    irq = IrqLine()
    rtc = Rtc(irq, clock, start_time=START, **kw)
    return clock, irq, rtc


def rd(rtc, idx):
    rtc.write(0, 1, idx)
    return rtc.read(1, 1)


def wr(rtc, idx, v):
    rtc.write(0, 1, idx)
    rtc.write(1, 1, v)


def test_time_bcd_24h_and_progress():
    clock, irq, rtc = _make()
    assert [rd(rtc, i) for i in (0, 2, 4, 6, 7, 8, 9, 0x32)] == [0x15, 0x30, 0x14, 0x07, 0x21,
                                                                 0x11, 0x26, 0x20]
    assert rd(rtc, 0x0D) == 0x80
    clock.advance(50 * NS)
    assert (rd(rtc, 0), rd(rtc, 2)) == (0x05, 0x31)
    clock.advance(10 * 3600 * NS)                          # past midnight: Sunday the 22nd
    assert (rd(rtc, 4), rd(rtc, 6), rd(rtc, 7)) == (0x00, 0x01, 0x22)


def test_binary_and_12_hour_formats():
    clock, irq, rtc = _make()
    wr(rtc, 0x0B, 0x06)                                    # binary, 24h
    assert (rd(rtc, 0), rd(rtc, 4), rd(rtc, 9)) == (15, 14, 26)
    wr(rtc, 0x0B, 0x00)                                    # BCD, 12h
    assert rd(rtc, 4) == 0x82                              # 2 PM
    wr(rtc, 0x0B, 0x04)                                    # binary, 12h
    assert rd(rtc, 4) == 0x82
    wr(rtc, 0x0B, 0x02)


def test_set_bit_freezes_and_guest_sets_the_time():
    clock, irq, rtc = _make()
    wr(rtc, 0x0B, 0x82)                                    # SET
    wr(rtc, 0x04, 0x08)
    wr(rtc, 0x02, 0x00)
    wr(rtc, 0x00, 0x00)
    clock.advance(30 * NS)
    assert (rd(rtc, 4), rd(rtc, 2), rd(rtc, 0)) == (0x08, 0x00, 0x00)   # frozen while SET
    wr(rtc, 0x0B, 0x02)
    clock.advance(61 * NS)
    assert (rd(rtc, 4), rd(rtc, 2), rd(rtc, 0)) == (0x08, 0x01, 0x01)
    # nonsense from the guest keeps the old time
    wr(rtc, 0x0B, 0x82)
    wr(rtc, 0x08, 0x13)                                    # month 13
    wr(rtc, 0x0B, 0x02)
    assert rd(rtc, 2) == 0x01 and rd(rtc, 8) == 0x11


def test_update_ended_interrupt_each_second():
    clock, irq, rtc = _make()
    wr(rtc, 0x0B, 0x12)                                    # UIE
    assert clock.next_deadline() == 6 * NS
    clock.advance(NS - 1)
    assert not irq.level
    clock.advance(1)
    assert irq.level
    assert rd(rtc, 0x0C) & 0x90 == 0x90                    # IRQF | UF
    assert not irq.level
    clock.advance(NS)
    assert irq.level and rd(rtc, 0x00) == 0x17


def test_uip_before_update():
    clock, irq, rtc = _make()
    assert not rd(rtc, 0x0A) & 0x80
    clock.advance(NS - 200_000)
    assert rd(rtc, 0x0A) & 0x80
    clock.advance(300_000)
    assert not rd(rtc, 0x0A) & 0x80


def test_periodic_interrupt_rate():
    clock, irq, rtc = _make()
    wr(rtc, 0x0A, 0x2F)                                    # RS=15: 2 Hz
    wr(rtc, 0x0B, 0x42)                                    # PIE
    ticks = 0
    for _ in range(8):
        clock.advance(NS // 8)
        if irq.level:
            ticks += 1
            assert rd(rtc, 0x0C) & 0xC0 == 0xC0
    assert ticks == 2
    wr(rtc, 0x0A, 0x23)                                    # RS=3: 8192 Hz
    n = 0
    for _ in range(100):
        clock.advance(NS // 8192)
        if irq.level:
            n += 1
            rd(rtc, 0x0C)
    assert n == 100


def test_alarm_interrupt_and_dont_care():
    clock, irq, rtc = _make()
    wr(rtc, 0x01, 0x20)                                    # 14:30:20
    wr(rtc, 0x03, 0x30)
    wr(rtc, 0x05, 0x14)
    wr(rtc, 0x0B, 0x22)                                    # AIE
    clock.advance(5 * NS - 1)
    assert not irq.level
    clock.advance(1)
    assert irq.level and rd(rtc, 0x0C) & 0xA0 == 0xA0
    wr(rtc, 0x05, 0xC0)                                    # any hour, any minute, second 20
    wr(rtc, 0x03, 0xC0)
    clock.advance(59 * NS)
    assert not irq.level
    clock.advance(NS)
    assert irq.level


def test_flags_without_interrupts_are_lazy_and_no_timer():
    clock, irq, rtc = _make()
    assert clock.next_deadline() is None
    clock.advance(2 * NS)
    c = rd(rtc, 0x0C)
    assert c & 0x50 == 0x50 and not c & 0x80 and not irq.level   # PF and UF, IRQF clear
    assert rd(rtc, 0x0C) == 0


def test_divider_reset_freezes_then_restarts_half_a_second_later():
    clock, irq, rtc = _make()
    wr(rtc, 0x0A, 0x70)                                    # divider in reset
    clock.advance(10 * NS)
    assert rd(rtc, 0x00) == 0x15
    wr(rtc, 0x0A, 0x26)
    clock.advance(NS // 2 - 1)
    assert rd(rtc, 0x00) == 0x15
    clock.advance(1)
    assert rd(rtc, 0x00) == 0x16


def test_cmos_memory_size_bytes_and_checksum():
    clock, irq, rtc = _make(ram_below_4g=0xE000_0000, ram_above_4g=1 << 30)
    assert (rd(rtc, 0x15), rd(rtc, 0x16)) == (0x80, 0x02)             # 640 KiB
    assert (rd(rtc, 0x17), rd(rtc, 0x18)) == (0xFF, 0xFF)             # capped
    assert (rd(rtc, 0x30), rd(rtc, 0x31)) == (0xFF, 0xFF)
    above16 = (0xE000_0000 - 0x100_0000) // 0x10000
    assert rd(rtc, 0x34) | rd(rtc, 0x35) << 8 == above16
    assert rd(rtc, 0x5B) | rd(rtc, 0x5C) << 8 | rd(rtc, 0x5D) << 16 == (1 << 30) // 0x10000
    total = sum(rd(rtc, i) for i in range(0x10, 0x2E))
    assert rd(rtc, 0x2E) << 8 | rd(rtc, 0x2F) == total
    _, _, small = _make(ram_below_4g=32 << 20)
    assert rd(small, 0x17) | rd(small, 0x18) << 8 == 31 * 1024
    with pytest.raises(ValueError):
        small.set_cmos(0x05, 1)


def test_nmi_mask_bank1_and_ram():
    clock, irq, rtc = _make()
    rtc.write(0, 1, 0x80 | 0x40)
    assert rtc.nmi_masked
    rtc.write(1, 1, 0xAB)
    assert rd(rtc, 0x40) == 0xAB and not rtc.nmi_masked
    rtc.write(2, 1, 0x10)                                  # bank 1: CMOS 0x90
    rtc.write(3, 1, 0x5A)
    assert rtc.get_cmos(0x90) == 0x5A and rtc.read(3, 1) == 0x5A
    wr(rtc, 0x0C, 0xFF)
    wr(rtc, 0x0D, 0x00)
    assert rd(rtc, 0x0C) == 0 and rd(rtc, 0x0D) == 0x80    # read-only


def test_hostile_accesses():
    clock, irq, rtc = _make()
    rtc.write(0, 2, 0x0B0B)
    rtc.write(7, 1, 0)
    assert rtc.read(1, 4) == 0xFFFFFFFF and rtc.read(4, 1) == 0xFF
    assert rtc.read(0, 1) == 0xFF


def test_state_round_trip():
    clock, irq, rtc = _make()
    wr(rtc, 0x0B, 0x12)
    wr(rtc, 0x50, 0x77)
    clock.advance(NS // 3)
    st = rtc.get_state()
    irq2 = IrqLine()
    rtc2 = Rtc(irq2, clock, start_time=0)
    rtc2.set_state(st)
    assert rtc2.get_state() == st
    clock.advance(NS)
    assert irq2.level and rd(rtc2, 0x00) == 0x16 and rd(rtc2, 0x50) == 0x77


def test_machine_reset_keeps_time_and_cmos_but_clears_interrupts():
    clock, irq, rtc = _make()
    wr(rtc, 0x0B, 0x82)
    wr(rtc, 0x04, 0x09)                                    # the guest sets 09:xx
    wr(rtc, 0x0B, 0x72)                                    # PIE | AIE | UIE
    wr(rtc, 0x60, 0x5A)
    clock.advance(NS)
    assert irq.level
    rtc.reset()
    assert not irq.level and rd(rtc, 0x0B) == 0x02 and rd(rtc, 0x0C) == 0
    assert clock.next_deadline() is None
    assert rd(rtc, 0x04) == 0x09 and rd(rtc, 0x60) == 0x5A


def test_linux_mc146818_set_time_sequence():
    clock, irq, rtc = _make()
    save_control = rd(rtc, 0x0B)
    wr(rtc, 0x0B, save_control | 0x80)                     # SET
    save_freq = rd(rtc, 0x0A)
    wr(rtc, 0x0A, save_freq | 0x60)                        # divider reset
    for idx, v in ((0x09, 0x30), (0x08, 0x01), (0x07, 0x02), (0x04, 0x03), (0x02, 0x04), (0x00, 0x05)):
        wr(rtc, idx, v)
    wr(rtc, 0x32, 0x20)
    wr(rtc, 0x0B, save_control)
    clock.advance(3 * NS)                                  # still held by the divider reset
    assert rd(rtc, 0x00) == 0x05
    wr(rtc, 0x0A, save_freq)
    clock.advance(NS // 2 - 1)
    assert ([rd(rtc, i) for i in (0x09, 0x08, 0x07, 0x04, 0x02, 0x00, 0x06)]
            == [0x30, 0x01, 0x02, 0x03, 0x04, 0x05, 0x04])
    clock.advance(1)
    assert rd(rtc, 0x00) == 0x06                           # first update 500 ms after the restart
