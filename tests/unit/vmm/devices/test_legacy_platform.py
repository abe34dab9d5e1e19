"""The legacy devices wired to the PIC as a PC has them, driven like Linux's handlers do."""

from vmm.devices.acpi import AcpiPm
from vmm.devices.pic import PicPair
from vmm.devices.pit import PIT_HZ, Pit8254
from vmm.devices.rtc import Rtc
from vmm.devices.uart import Uart16550
from vmm.tm import FakeClock

NS = 1_000_000_000


def _platform():
    clock = FakeClock()
    pic = PicPair()
    for port, base, icw3 in ((pic.master, 0x30, 0x04), (pic.slave, 0x38, 0x02)):
        port.write(0, 1, 0x11)
        port.write(1, 1, base)
        port.write(1, 1, icw3)
        port.write(1, 1, 0x01)
        port.write(1, 1, 0x00)
    return clock, pic


def _eoi(pic, vector):
    if vector >= 0x38:
        pic.slave.write(0, 1, 0x60 | (vector - 0x38))     # Linux: specific EOI on the slave...
        pic.master.write(0, 1, 0x62)                        # ...and for the cascade on the master
    else:
        pic.master.write(0, 1, 0x60 | (vector - 0x30))


def test_pit_ticks_at_hz_through_the_pic():
    clock, pic = _platform()
    pit = Pit8254(pic.irq_line(0), clock)
    latch = (PIT_HZ + 125) // 250                           # Linux's LATCH for HZ=250
    pit.write(3, 1, 0x34)
    pit.write(0, 1, latch & 0xFF)
    pit.write(0, 1, latch >> 8)
    ticks = []
    for _ in range(1000):                                   # one virtual second in 1 ms slices
        clock.advance(NS // 1000)
        while pic.has_interrupt():
            v = pic.acknowledge()
            ticks.append((v, clock.now_ns()))
            _eoi(pic, v)
    assert {v for v, _ in ticks} == {0x30}
    # 4773 ticks are 4.0002 ms: the 250th tick falls just after the first second
    assert len(ticks) == 249
    # each tick is seen in the 1 ms slice that contains its period boundary
    for k, (_, t) in enumerate(ticks, start=1):
        edge = -(-k * latch * NS // PIT_HZ)
        assert edge <= t < edge + NS // 1000


def test_rtc_uart_and_sci_share_the_controller_by_priority():
    clock, pic = _platform()
    rtc = Rtc(pic.irq_line(8), clock, start_time=0)
    uart = Uart16550(pic.irq_line(4), clock)
    pm = AcpiPm(pic.irq_line(9), clock, on_power_off=lambda: None)
    pic.elcr.write(1, 1, 0x02)                              # IRQ9 (SCI) level-triggered, as Linux sets it
    rtc.write(0, 1, 0x0B)
    rtc.write(1, 1, 0x12)                                   # update-ended interrupt
    uart.write(1, 1, 0x02)                                  # THRI: pending at once
    pm.write(2, 2, 0x0100)
    pm.press_power_button()
    clock.advance(NS)                                       # button delivered, then the RTC update
    order = []
    while pic.has_interrupt():
        v = pic.acknowledge()
        order.append(v)
        if v == 0x38:
            rtc.write(0, 1, 0x0C)
            assert rtc.read(1, 1) & 0x90 == 0x90
        elif v == 0x39:
            assert pm.read(0, 2) & 0x0100
            pm.write(0, 2, 0x0100)                          # the SCI handler clears the status
        elif v == 0x34:
            assert uart.read(2, 1) & 0x0F == 0x02
        _eoi(pic, v)
    # the slave's IRQ8 and IRQ9 come in through master IR2, ahead of IRQ4
    assert order == [0x38, 0x39, 0x34]
    # level-triggered SCI does not come back once its status is cleared
    assert not pic.has_interrupt()
