"""GuestMemory's write listeners: what REM learns about device writes into guest RAM."""

from vmm.devices.blockio import read_into
from vmm.memory import HIGH_RAM_BASE, LOW_RAM_LIMIT, GuestMemory, note_dma


class Image:
    def readinto_at(self, offset, buf):
        buf[:] = bytes([offset & 0xFF]) * len(buf)


def test_write_and_views_reach_listeners_with_guest_physical_ranges():
    mem = GuestMemory(LOW_RAM_LIMIT + (1 << 20))
    seen = []
    mem.add_write_listener(lambda gpa, n: seen.append((gpa, n)))
    mem.write(0x1234, b"abc")
    note_dma(mem.view(0x5000, 0x100)[0x10:0x20])              # a slice of a window
    note_dma(mem.view(HIGH_RAM_BASE + 0x2000, 0x40))          # RAM above 4 GiB
    note_dma(memoryview(bytearray(16)))                       # not guest RAM: ignored
    assert seen == [(0x1234, 3), (0x5010, 0x10), (HIGH_RAM_BASE + 0x2000, 0x40)]
    mem.close()


def test_disk_reads_into_guest_ram_are_reported():
    mem = GuestMemory(1 << 20)
    seen = []
    mem.add_write_listener(lambda gpa, n: seen.append((gpa, n)))
    views = [mem.view(0x1000 * (2 * i + 1), 0x200) for i in range(6)]    # > DIRECT_MAX_SEGMENTS: bounce path
    assert read_into(Image(), 0, views, 6 * 0x200) == 6 * 0x200
    assert seen == [(0x1000 * (2 * i + 1), 0x200) for i in range(6)]
    seen.clear()
    read_into(Image(), 0, views[:2], 0x300)                             # direct path, trimmed
    assert seen == [(0x1000, 0x200), (0x3000, 0x100)]
    del views
    mem.close()
