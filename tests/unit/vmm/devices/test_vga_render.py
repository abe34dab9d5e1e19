"""The VGA's screen as pixels: text cells drawn from the plane-2 font, planar and chain-4 graphics,
hostile registers; PNG encoding and the screenshot formats."""

import zlib

from vboxsvc.api.enums import BitmapFormat
from vmm.devices.vga import PLANE_SIZE, Vga
from vmm.devices.vga_render import render
from vmm.display.png import decode_rgb, encode_rgb
from vmm.display.screenshot import convert


def _port(vga, port, value):
    vga.ports.write(port - 0x3B0, 1, value)


def _set_dac(vga, index, rgb6):
    _port(vga, 0x3C8, index)
    for v in rgb6:
        _port(vga, 0x3C9, v)


def _text_vga():
    vga = Vga()
    _set_dac(vga, 0, (0, 0, 0))
    _set_dac(vga, 7, (42, 42, 42))
    _set_dac(vga, 1, (0, 0, 42))
    # glyph 'A': rows 0..15 alternate 0xFF / 0x00 so every row of the cell is predictable
    for row in range(16):
        vga._planes[2 * PLANE_SIZE + ord("A") * 32 + row] = 0xFF if row % 2 == 0 else 0x00
    return vga


def test_text_mode_renders_80x25_cells_with_the_plane_2_font_and_palette():
    vga = _text_vga()
    _port(vga, 0x3D4, 0x0A)
    _port(vga, 0x3D5, 0x20)                               # cursor off
    vga._planes[0] = ord("A")
    vga._planes[PLANE_SIZE] = 0x17                        # grey on blue
    frame = render(vga)
    assert (frame.width, frame.height, frame.bpp) == (720, 400, 0)
    grey, blue = bytes((170, 170, 170)), bytes((0, 0, 170))
    row0 = frame.rgb[:9 * 3]
    assert row0 == grey * 8 + blue                        # 9th dot: background (not a line-drawing char)
    row1 = frame.rgb[720 * 3:720 * 3 + 9 * 3]
    assert row1 == blue * 9
    assert frame.rgb[9 * 3:10 * 3] == bytes(3)            # next cell: char 0 on black


def test_eight_dot_mode_and_the_cursor_is_drawn():
    vga = _text_vga()
    _port(vga, 0x3C4, 1)
    _port(vga, 0x3C5, 0x01)                               # 8-dot characters
    for reg, val in ((0x0A, 0x0E), (0x0B, 0x0F), (0x0E, 0), (0x0F, 1)):
        _port(vga, 0x3D4, reg)
        _port(vga, 0x3D5, val)
    vga._planes[PLANE_SIZE + 2] = 0x07                    # cell 1: grey on black, char 0
    frame = render(vga)
    assert (frame.width, frame.height) == (640, 400)
    line14 = frame.rgb[14 * 640 * 3:15 * 640 * 3]
    assert line14[8 * 3:16 * 3] == bytes((170, 170, 170)) * 8
    assert frame.rgb[13 * 640 * 3 + 8 * 3:13 * 640 * 3 + 16 * 3] == bytes(24)


def _graphics(vga, gc_mode, seq_mem, crtc):
    _port(vga, 0x3CE, 6)
    _port(vga, 0x3CF, 0x05)                               # graphics, A0000 64K
    _port(vga, 0x3CE, 5)
    _port(vga, 0x3CF, gc_mode)
    _port(vga, 0x3C4, 4)
    _port(vga, 0x3C5, seq_mem)
    _port(vga, 0x3D4, 0x11)
    _port(vga, 0x3D5, 0x00)                               # unlock CR0-7
    for reg, val in crtc.items():
        _port(vga, 0x3D4, reg)
        _port(vga, 0x3D5, val)


def test_mode_12h_planar_pixels():
    vga = Vga()
    _graphics(vga, 0x00, 0x06, {0x01: 0x4F, 0x07: 0x3E, 0x09: 0x40, 0x12: 0xDF, 0x13: 0x28})
    _set_dac(vga, 5, (63, 0, 63))
    vga._planes[0] = 0x80                                 # pixel 0: planes 0 and 2 -> colour 5
    vga._planes[2 * PLANE_SIZE] = 0x80
    frame = render(vga)
    assert (frame.width, frame.height, frame.bpp) == (640, 480, 4)
    assert frame.rgb[:3] == bytes((255, 0, 255))
    assert frame.rgb[3:6] == bytes(3)


def test_mode_13h_chain4_pixels():
    vga = Vga()
    _graphics(vga, 0x40, 0x0E, {0x01: 0x4F, 0x07: 0x1F, 0x09: 0x41, 0x12: 0x8F, 0x13: 0x28, 0x14: 0x40})
    _set_dac(vga, 200, (63, 63, 0))
    vga.memory.write(5, 1, 200)                           # chain-4 store through the window
    frame = render(vga)
    assert (frame.width, frame.height, frame.bpp) == (320, 200, 8)
    assert frame.rgb[5 * 3:6 * 3] == bytes((255, 255, 0))


def test_hostile_registers_give_a_bounded_picture():
    vga = Vga()
    for port in range(0x3B0, 0x3E0):
        for v in (0x00, 0xFF, 0x7F):
            _port(vga, port, v)
            _port(vga, port, v)
    frame = render(vga)
    assert frame.width * frame.height * 3 == len(frame.rgb)
    assert frame.width <= 2048 and frame.height <= 1536


def test_png_round_trip_and_screenshot_formats():
    rgb = bytes(range(2 * 3 * 3)) + bytes(2 * 3 * 3)
    png = encode_rgb(3, 4, rgb)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert decode_rgb(png) == (3, 4, rgb)
    assert zlib.crc32(png[-8:-4]) == int.from_bytes(png[-4:], "big")      # IEND CRC
    bgr0 = convert(3, 4, rgb, 3, 4, BitmapFormat.BGR0)
    assert bgr0[:4] == bytes((2, 1, 0, 0))
    rgba = convert(3, 4, rgb, 3, 4, BitmapFormat.RGBA)
    assert rgba[:4] == bytes((0, 1, 2, 255))
    small = convert(3, 4, rgb, 1, 2, BitmapFormat.PNG)
    assert decode_rgb(small)[:2] == (1, 2)
