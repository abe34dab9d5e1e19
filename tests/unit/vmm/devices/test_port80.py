"""POST code port and the boot-time marker port."""

import logging

from vmm.devices.port80 import BootMarkerPort, PostCodePort
from vmm.tm import FakeClock


def test_post_code_reports_changes_only():
    codes = []
    p = PostCodePort(on_code=codes.append)
    for v in (0x10, 0x10, 0x10, 0x00, 0x00, 0x1FF):
        p.write(0, 1, v)
    assert codes == [0x10, 0x00, 0xFF]
    assert p.read(0, 1) == 0xFF and p.s.writes == 6
    p.write(0, 2, 0x1234)
    p.write(1, 1, 0x12)
    assert p.read(0, 1) == 0xFF and p.read(0, 2) == 0xFFFF
    st = p.get_state()
    q = PostCodePort()
    q.set_state(st)
    assert q.get_state() == st


def test_boot_marker_records_virtual_time(caplog):
    clock = FakeClock()
    seen = []
    m = BootMarkerPort(clock, on_marker=lambda v, t: seen.append((v, t)))
    assert m.read(0, 4).to_bytes(4, "little") == b"VBPY" and m.read(2, 1) == ord("P")
    clock.advance(1_500_000)
    with caplog.at_level(logging.INFO, logger="vmm.devices.port80"):
        m.write(0, 1, 0x01)
    clock.advance(2_000_000)
    m.write(0, 4, 0xDEADBEEF)
    m.write(1, 1, 0x55)                   # not at offset 0: ignored
    m.write(0, 3, 0x55)                   # bad size: ignored
    assert seen == [(0x01, 1_500_000), (0xDEADBEEF, 3_500_000)]
    assert list(m.markers) == [(1_500_000, 1), (3_500_000, 0xDEADBEEF)]
    assert "boot marker 0x1 at 1.500 ms" in caplog.text
    assert m.read(3, 2) == 0xFFFF
    for i in range(300):
        m.write(0, 1, i & 0xFF)
    assert len(m.markers) == 256
    st = m.get_state()
    m2 = BootMarkerPort(clock)
    m2.set_state(st)
    assert m2.get_state() == st
