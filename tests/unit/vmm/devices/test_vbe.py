"""Bochs VBE (DISPI): registers through the port pair, mode validation against VRAM, banks and
offsets clamped, the LFB, dirty pages, the rendered frame in each depth, saved state."""

import pytest

from vmm.devices import vbe as v
from vmm.devices.vbe import BochsVbe, vram_bytes
from vmm.devices.vga import Vga
from vmm.devices.vga_render import render


def _w(dev, index, value):
    dev.ports.write(0, 2, index)
    dev.ports.write(1, 2, value)


def _r(dev, index):
    dev.ports.write(0, 2, index)
    return dev.ports.read(1, 2)


def _mode(dev, x, y, bpp, flags=v.ENABLED | v.LFB_ENABLED):
    _w(dev, v.ENABLE, 0)
    _w(dev, v.XRES, x)
    _w(dev, v.YRES, y)
    _w(dev, v.BPP, bpp)
    _w(dev, v.ENABLE, flags)


def test_id_caps_and_video_memory():
    dev = BochsVbe(16 << 20)
    assert _r(dev, v.ID) == v.ID5
    _w(dev, v.ID, 0xB0C4)
    assert _r(dev, v.ID) == 0xB0C4
    _w(dev, v.ID, 0x1234)                                # not an interface version: ignored
    assert _r(dev, v.ID) == 0xB0C4
    assert _r(dev, v.VIDEO_MEMORY_64K) == 256
    _w(dev, v.ENABLE, v.GETCAPS)
    assert (_r(dev, v.XRES), _r(dev, v.YRES), _r(dev, v.BPP)) == (v.MAX_XRES, v.MAX_YRES, 32)


def test_a_mode_that_fits_is_enabled_and_one_that_does_not_is_refused():
    dev = BochsVbe(4 << 20)
    _mode(dev, 1024, 768, 32)
    assert dev.enabled and dev.mode() == (1024, 768, 32, 4096, 0)
    assert _r(dev, v.VIRT_HEIGHT) == (4 << 20) // 4096
    _mode(dev, 2560, 1600, 32)                           # 16 MB > 4 MB of VRAM
    assert not dev.enabled and dev.mode() is None
    _mode(dev, 1024, 768, 7)                             # unknown depth: the previous one stays
    assert _r(dev, v.BPP) == 32


def test_offsets_banks_and_virtual_width_are_clamped():
    dev = BochsVbe(1 << 20)
    _mode(dev, 640, 480, 8)
    _w(dev, v.Y_OFFSET, 0xFFFF)
    _w(dev, v.X_OFFSET, 0xFFFF)
    width, height, bpp, pitch, start = dev.mode()
    assert start + (height - 1) * pitch + width <= len(dev.vram)
    _w(dev, v.BANK, 0xFFFF)
    assert _r(dev, v.BANK) == 15
    _w(dev, v.VIRT_WIDTH, 0xFFFF)                        # too wide to keep 480 lines: back to 640
    assert _r(dev, v.VIRT_WIDTH) * _r(dev, v.VIRT_HEIGHT) <= len(dev.vram)
    assert _r(dev, v.VIRT_HEIGHT) >= 480


def test_lfb_and_bank_window_writes_reach_vram_and_mark_pages_dirty():
    vga = Vga()
    dev = vga.vbe = BochsVbe(1 << 20)
    _mode(dev, 640, 480, 16)
    assert dev.enabled
    dev.take_dirty()
    gen = dev.generation
    dev.lfb.write(0x2000, 4, 0x00FF0000)
    assert dev.take_dirty() == {2} and dev.generation > gen
    _w(dev, v.BANK, 3)
    vga.memory.write(0x10, 2, 0xBEEF)                    # through the 0xA0000 window, bank 3
    assert dev.vram[3 * 0x10000 + 0x10:3 * 0x10000 + 0x12] == b"\xef\xbe"
    assert vga.memory.read(0x10, 2) == 0xBEEF
    dev.lfb.write(len(dev.vram) - 2, 4, 0xFFFFFFFF)      # straddles the end: dropped
    assert dev.lfb.read(len(dev.vram) - 2, 4) == 0xFFFFFFFF and not any(dev.vram[-2:])
    assert dev.take_dirty() == {48} and dev.take_dirty() == set()


@pytest.mark.parametrize("bpp, pixel, rgb", [
    (32, b"\x30\x20\x10\x00", (0x10, 0x20, 0x30)),
    (24, b"\x30\x20\x10", (0x10, 0x20, 0x30)),
    (16, (0xF800).to_bytes(2, "little"), (255, 0, 0)),
    (15, (0x03E0).to_bytes(2, "little"), (0, 255, 0)),
])
def test_rendered_frame_in_each_direct_colour_depth(bpp, pixel, rgb):
    vga = Vga()
    dev = vga.vbe = BochsVbe(1 << 20)
    _mode(dev, 320, 200, bpp)
    n = len(pixel)
    for i, b in enumerate(pixel):                        # pixel (5, 0)
        dev.lfb.write(n * 5 + i, 1, b)
    frame = render(vga)
    assert (frame.width, frame.height, frame.bpp) == (320, 200, bpp)
    assert frame.rgb[15:18] == bytes(rgb) and frame.rgb[:3] == bytes(3)


def test_8bpp_uses_the_dac_in_6_and_8_bit_mode():
    vga = Vga()
    dev = vga.vbe = BochsVbe(1 << 20)
    _mode(dev, 320, 200, 8)
    vga.ports.write(0x3C8 - 0x3B0, 1, 9)
    for c in (63, 0, 0):
        vga.ports.write(0x3C9 - 0x3B0, 1, c)
    dev.lfb.write(0, 1, 9)
    assert render(vga).rgb[:3] == bytes((255, 0, 0))
    _mode(dev, 320, 200, 8, v.ENABLED | v.DAC_8BIT | v.NOCLEARMEM)
    vga.ports.write(0x3C8 - 0x3B0, 1, 9)
    for c in (200, 100, 50):
        vga.ports.write(0x3C9 - 0x3B0, 1, c)
    assert render(vga).rgb[:3] == bytes((200, 100, 50))


def test_saved_state_round_trip_and_bad_state():
    dev = BochsVbe(1 << 20)
    _mode(dev, 640, 480, 16)
    _w(dev, v.Y_OFFSET, 10)
    dev.lfb.write(100, 1, 7)
    st = dev.get_state()
    other = BochsVbe(1 << 20)
    other.set_state(st)
    assert other.mode() == dev.mode() and other.vram[100] == 7
    with pytest.raises(ValueError):
        BochsVbe(2 << 20).set_state(st)


def test_vram_sizes_are_powers_of_two_within_limits():
    assert vram_bytes(16 << 20) == 16 << 20
    assert vram_bytes(9 << 20) == 16 << 20
    assert vram_bytes(0) == 1 << 20
    assert vram_bytes(1 << 40) == 256 << 20
    with pytest.raises(ValueError):
        BochsVbe(3 << 20)


def test_a_mapped_frame_buffer_still_shows_every_change():
    dev = BochsVbe(16 << 20)
    _mode(dev, 640, 480, 32)
    buf = dev.lfb.direct_ram()                  # an engine maps VRAM into the guest
    assert buf is dev.vram
    before = dev.version()
    assert dev.version() == before              # nothing drawn: nothing to do for a viewer
    buf[4 * (640 * 100 + 10)] = 0xFF            # a store straight into the frame buffer
    assert dev.version() != before
    after = dev.version()
    buf[640 * 480 * 4 + 8] = 1                  # past the shown part: the screen is the same
    assert dev.version() == after
    state = dev.get_state()                     # saved state keeps what was drawn directly
    assert state.vram and state.vram[4 * (640 * 100 + 10)] == 0xFF
