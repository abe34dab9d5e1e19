"""Every device's state value object survives SSM's msgpack encoding (vmm.ssm) and restores."""

import pytest

from vmm.devices.acpi import AcpiPm, AcpiPmState
from vmm.devices.base import IrqLine
from vmm.devices.i8042 import I8042, I8042State
from vmm.devices.pic import PicPair, PicState
from vmm.devices.pit import Pit8254, PitState, Port61, Port61State
from vmm.devices.port80 import BootMarkerPort, BootMarkerState, PostCodePort, PostCodeState
from vmm.devices.rtc import Rtc, RtcState
from vmm.devices.uart import Uart16550, UartState
from vmm.ssm import decode_state, encode_state
from vmm.tm import FakeClock


def _busy_devices(clock):
    pic = PicPair()
    pic.master.write(0, 1, 0x11)
    for v in (0x20, 0x04, 0x01, 0x00):
        pic.master.write(1, 1, v)
    pic.set_irq(3, True)
    pic.elcr.write(0, 1, 0x20)
    pit = Pit8254(IrqLine(), clock)
    pit.write(3, 1, 0x34)
    pit.write(0, 1, 0x10)
    pit.write(0, 1, 0x27)
    pit.write(3, 1, 0x40)                # a pending latch
    p61 = Port61(pit)
    p61.write(0, 1, 0x03)
    rtc = Rtc(IrqLine(), clock, ram_below_4g=64 << 20, start_time=1_700_000_000)
    rtc.write(0, 1, 0x0B)
    rtc.write(1, 1, 0x52)
    kbc = I8042(IrqLine(), IrqLine())
    kbc.command.write(0, 1, 0xD3)
    kbc.data.write(0, 1, 0x77)
    kbc.data.write(0, 1, 0xED)           # waits for its LED parameter
    uart = Uart16550(IrqLine(), clock)
    uart.write(2, 1, 0xC7)
    uart.write(4, 1, 0x10)
    uart.write(0, 1, 0x41)               # loopback into the RX FIFO
    post = PostCodePort()
    post.write(0, 1, 0x42)
    marker = BootMarkerPort(clock)
    marker.write(0, 4, 0x1234)
    pm = AcpiPm(IrqLine(), clock, on_power_off=lambda: None)
    pm.write(2, 2, 0x0100)
    clock.advance(3_000_000)
    return {
        PicState: (pic, PicPair),
        PitState: (pit, lambda: Pit8254(IrqLine(), clock)),
        Port61State: (p61, lambda: Port61(Pit8254(IrqLine(), clock))),
        RtcState: (rtc, lambda: Rtc(IrqLine(), clock)),
        I8042State: (kbc, lambda: I8042(IrqLine(), IrqLine())),
        UartState: (uart, lambda: Uart16550(IrqLine(), clock)),
        PostCodeState: (post, PostCodePort),
        BootMarkerState: (marker, lambda: BootMarkerPort(clock)),
        AcpiPmState: (pm, lambda: AcpiPm(IrqLine(), clock, on_power_off=lambda: None)),
    }


@pytest.mark.parametrize("cls", [PicState, PitState, Port61State, RtcState, I8042State, UartState,
                                 PostCodeState, BootMarkerState, AcpiPmState], ids=lambda c: c.__name__)
def test_state_through_ssm_codec(cls):
    clock = FakeClock()
    dev, make = _busy_devices(clock)[cls]
    state = dev.get_state()
    assert isinstance(state, cls)
    restored = decode_state(cls, encode_state(state))
    fresh = make()
    fresh.set_state(restored)
    again = fresh.get_state()
    assert encode_state(again) == encode_state(state)
