"""A hostile guest: random accesses of any size and offset never raise and never grow device state."""

import random

import pytest

from vmm.devices.acpi import AcpiPm
from vmm.devices.i8042 import I8042
from vmm.devices.pic import PicPair
from vmm.devices.pit import Pit8254, Port61
from vmm.devices.port80 import BootMarkerPort, PostCodePort
from vmm.devices.rtc import Rtc
from vmm.devices.uart import Uart16550, UartType
from vmm.ssm import encode_state
from vmm.tm import FakeClock


def _devices(clock):
    pic = PicPair()
    pit = Pit8254(pic.irq_line(0), clock)
    kbc = I8042(pic.irq_line(1), pic.irq_line(12), on_reset=lambda: None, on_a20=lambda on: None)
    return {
        "pic.master": (pic.master, 2), "pic.slave": (pic.slave, 2), "pic.elcr": (pic.elcr, 2),
        "pit": (pit, 4), "port61": (Port61(pit), 1),
        "rtc": (Rtc(pic.irq_line(8), clock, start_time=0), 4),
        "kbc.data": (kbc.data, 1), "kbc.command": (kbc.command, 1),
        "uart16550a": (Uart16550(pic.irq_line(4), clock), 8),
        "uart16750": (Uart16550(pic.irq_line(3), clock, uart_type=UartType.U16750), 8),
        "uart16450": (Uart16550(pic.irq_line(5), clock, uart_type=UartType.U16450), 8),
        "post": (PostCodePort(), 1), "marker": (BootMarkerPort(clock), 4),
        "acpi": (AcpiPm(pic.irq_line(9), clock, on_power_off=lambda: None, on_reset=lambda: None), 0x20),
    }, pic


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_register_traffic(seed):
    rng = random.Random(seed)
    clock = FakeClock()
    devs, pic = _devices(clock)
    names = sorted(devs)
    for _ in range(6000):
        dev, span = devs[rng.choice(names)]
        size = rng.choice((1, 1, 1, 2, 4, 3, 8, 0))
        offset = rng.randrange(-2, span + 3)
        if rng.random() < 0.5:
            v = dev.read(offset, size)
            assert isinstance(v, int) and v >= 0
        else:
            dev.write(offset, size, rng.getrandbits(64))
        if rng.random() < 0.05:
            clock.advance(rng.randrange(0, 5_000_000))
        if pic.has_interrupt():
            assert 0 <= pic.acknowledge() <= 0xFF
        if rng.random() < 0.2:
            pic.master.write(0, 1, 0x20)
            pic.slave.write(0, 1, 0x20)
    # bounded internal buffers
    kbc = devs["kbc.data"][0]._kbc
    assert len(kbc._q) <= 16
    for name in ("uart16550a", "uart16750", "uart16450"):
        assert len(devs[name][0]._rx) <= 64
    # whatever the guest did, the state can still be saved
    for dev, _ in devs.values():
        holder = getattr(dev, "_kbc", None) or getattr(dev, "_pair", None) or dev
        assert encode_state(holder.get_state())
