"""The port and MMIO buses route each access to the device whose range holds it, also after
devices come and go (a BAR moved, a device unplugged) while runs of accesses hit one device."""

from vmm.bus import Bus


class Reg:
    def __init__(self):
        self.writes = []

    def read(self, offset, size):
        return 0x1000 + offset

    def write(self, offset, size, value):
        self.writes.append((offset, size, value))


def test_accesses_follow_registration_changes():
    bus = Bus("mmio")
    a, b, c = Reg(), Reg(), Reg()
    bus.register(0x1000, 0x100, a)
    bus.register(0x2000, 0x100, b)
    for i in range(4):                          # a run of accesses to one device
        bus.write(0x1000 + 8 * i, 8, i)
    assert bus.read(0x10F8, 4) == 0x10F8 and bus.read(0x2004, 4) == 0x1004
    assert bus.read(0x1100, 4) == 0xFFFF_FFFF  # just past a's range: nobody
    bus.unregister(a)
    bus.write(0x1008, 4, 7)                     # a is gone: the write is dropped
    assert bus.read(0x1008, 2) == 0xFFFF
    bus.register(0x1000, 0x10, c)               # another device where a was
    bus.write(0x1008, 4, 9)
    bus.write(0x1010, 4, 10)                    # past c's smaller range
    assert a.writes == [(8 * i, 8, i) for i in range(4)]
    assert c.writes == [(8, 4, 9)] and b.writes == []
