"""What the VGA shows: its current screen as an RGB picture.

A screenshot, a remote viewer and a saved-state thumbnail all need the pixels a monitor on
the VGA would show.  The VGA keeps none: it has its planes, registers and DAC, and this
module scans them out like the CRTC does.  Text modes draw each cell with the font the
guest loaded into plane 2 (the VGA BIOS puts its 8x16 font there at mode set), 8 or 9 dots
wide, with the attribute controller's palette, blinking off and the cursor drawn; the
graphics modes are the 16-colour planar ones (mode 12h and friends) and the 256-colour
chain-4 one (mode 13h).  Every address wraps inside the 64 KiB planes: a hostile register
setting gives a strange picture, never a read outside them.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmm.devices.vga import (
    CRTC_CURSOR_END,
    CRTC_CURSOR_START,
    CRTC_HDISP_END,
    CRTC_MAX_SCAN,
    CRTC_OFFSET,
    CRTC_OVERFLOW,
    CRTC_VDISP_END,
    GC_MODE,
    PLANE_SIZE,
    Vga,
)

ATTR_MODE, ATTR_PLANE_ENABLE, ATTR_COLOR_SELECT = 0x10, 0x12, 0x14
SEQ_CLOCKING = 1
MAX_WIDTH, MAX_HEIGHT = 2048, 1536
FONT_SLOT = 32                  # bytes per glyph in plane 2, whatever the character height


@dataclass(frozen=True)
class Frame:
    """One picture: `rgb` holds width*height*3 bytes, rows top to bottom."""
    width: int
    height: int
    rgb: bytes
    bpp: int = 0                # bits per pixel of the guest mode (0: text)


def palette_rgb(vga: Vga, eight_bit: bool = False) -> list[bytes]:
    """The 256 DAC entries as 8-bit RGB (6-bit DAC values scaled unless the DAC is in 8-bit mode)."""
    dac = vga._dac
    mask = vga.s.dac_mask
    out = []
    for i in range(256):
        j = (i & mask) * 3
        if eight_bit:
            out.append(bytes(dac[j:j + 3]))
        else:
            out.append(bytes(((dac[j + k] & 0x3F) * 255 + 31) // 63 for k in range(3)))
    return out


def _rgb16_table(bpp: int) -> list[bytes]:
    out = []
    for v in range(65536):
        if bpp == 15:
            r, g, b = (v >> 10) & 31, (v >> 5) & 31, v & 31
            out.append(bytes((r * 255 // 31, g * 255 // 31, b * 255 // 31)))
        else:
            r, g, b = (v >> 11) & 31, (v >> 5) & 63, v & 31
            out.append(bytes((r * 255 // 31, g * 255 // 63, b * 255 // 31)))
    return out


_RGB16: dict[int, list[bytes]] = {}


def render_vbe(vbe, pal: list[bytes]) -> Frame:
    """A VBE linear mode: rows of `pitch` bytes from the start offset, pixels in the guest's depth."""
    width, height, bpp, pitch, start = vbe.mode()
    vram = vbe.vram
    bpp_bytes = (bpp + 7) // 8
    out = bytearray(width * height * 3)
    row_len = width * bpp_bytes
    for y in range(height):
        off = start + y * pitch
        src = bytes(vram[off:off + row_len]).ljust(row_len, b"\0")      # clamped modes: never past VRAM
        dst = y * width * 3
        if bpp == 32 or bpp == 24:
            n = bpp_bytes
            out[dst:dst + width * 3:3] = src[2::n]
            out[dst + 1:dst + width * 3:3] = src[1::n]
            out[dst + 2:dst + width * 3:3] = src[0::n]
        elif bpp == 8:
            out[dst:dst + width * 3] = b"".join(pal[b] for b in src)
        else:
            table = _RGB16.get(bpp)
            if table is None:
                table = _RGB16[bpp] = _rgb16_table(bpp)
            out[dst:dst + width * 3] = b"".join(table[src[i] | (src[i + 1] << 8)]
                                                for i in range(0, len(src), 2))
    return Frame(width, height, bytes(out), bpp)


def _attr_colors(vga: Vga) -> list[int]:
    """The 16 attribute palette entries -> DAC indexes (colour select register applied)."""
    attr = vga.s.attr
    mode, csel = attr[ATTR_MODE], attr[ATTR_COLOR_SELECT]
    out = []
    for i in range(16):
        v = attr[i] & 0x3F
        if mode & 0x80:                                   # P5-P4 from the colour select register
            v = (v & 0x0F) | ((csel & 0x03) << 4)
        out.append(v | ((csel & 0x0C) << 4))
    return out


def _vertical_lines(vga: Vga) -> int:
    crtc = vga.s.crtc
    vde = crtc[CRTC_VDISP_END] | ((crtc[CRTC_OVERFLOW] & 0x02) << 7) | ((crtc[CRTC_OVERFLOW] & 0x40) << 3)
    return vde + 1


def render(vga: Vga) -> Frame:
    """The screen the VGA shows now (a VBE mode, text or VGA graphics)."""
    vbe = vga.vbe
    if vbe is not None and vbe.enabled:
        return render_vbe(vbe, palette_rgb(vga, eight_bit=vbe.dac_8bit))
    if vga.text_mode:
        return _render_text(vga)
    return _render_graphics(vga)


def _render_text(vga: Vga) -> Frame:
    s = vga.s
    cols, rows = vga.geometry()
    char_h = (s.crtc[CRTC_MAX_SCAN] & 0x1F) + 1
    char_w = 8 if s.seq[SEQ_CLOCKING] & 0x01 else 9
    line_graphics = bool(s.attr[ATTR_MODE] & 0x04)
    blink = bool(s.attr[ATTR_MODE] & 0x08)
    pal = palette_rgb(vga)
    colors = [pal[c] for c in _attr_colors(vga)]
    planes = vga._planes
    font = memoryview(planes)[2 * PLANE_SIZE:3 * PLANE_SIZE]
    pitch = max(1, s.crtc[CRTC_OFFSET] * 2) if s.crtc[CRTC_OFFSET] else cols
    start = vga._start()
    cursor = vga.cursor()
    cur_top, cur_bot = s.crtc[CRTC_CURSOR_START] & 0x1F, s.crtc[CRTC_CURSOR_END] & 0x1F
    width, height = cols * char_w, rows * char_h
    cache: dict[tuple[int, int, int], bytes] = {}
    out = bytearray()
    for r in range(rows):
        cells = []
        for c in range(cols):
            addr = (2 * (start + r * pitch + c)) & 0xFFFF
            ch, at = planes[addr], planes[PLANE_SIZE + addr]
            fg, bg = at & 0x0F, (at >> 4) & (0x07 if blink else 0x0F)
            cells.append((ch, fg, bg, cursor == (c, r)))
        for y in range(char_h):
            row = bytearray()
            for ch, fg, bg, here in cells:
                bits = font[(ch * FONT_SLOT + y) & 0xFFFF]
                if here and cur_top <= y <= cur_bot:
                    bits = 0xFF
                ninth = char_w == 9 and line_graphics and 0xC0 <= ch <= 0xDF and bits & 1
                key = (bits | (0x100 if ninth else 0), fg, bg)
                px = cache.get(key)
                if px is None:
                    f, b = colors[fg], colors[bg]
                    px = b"".join(f if bits >> (7 - i) & 1 else b for i in range(8))
                    if char_w == 9:
                        px += f if ninth else b
                    cache[key] = px
                row += px
            out += row
    return Frame(width, height, bytes(out))


def _render_graphics(vga: Vga) -> Frame:
    s = vga.s
    crtc = s.crtc
    pal = palette_rgb(vga)
    lines = _vertical_lines(vga)
    scan_double = 2 if crtc[CRTC_MAX_SCAN] & 0x80 else 1
    rows_per_line = (crtc[CRTC_MAX_SCAN] & 0x1F) + 1
    height = max(1, min(lines // (scan_double * rows_per_line), MAX_HEIGHT))
    pitch = crtc[CRTC_OFFSET] * 2 or 1                    # bytes per line in each plane
    start = vga._start()
    planes = vga._planes
    p = [memoryview(planes)[i * PLANE_SIZE:(i + 1) * PLANE_SIZE] for i in range(4)]
    if s.gc[GC_MODE] & 0x40:                              # 256 colours: four planes interleaved (chain-4)
        width = max(1, min((crtc[CRTC_HDISP_END] + 1) * 4, MAX_WIDTH))
        pitch *= 2 if crtc[0x14] & 0x40 else 1            # doubleword addressing
        out = bytearray()
        for y in range(height):
            base = start + y * pitch * 2
            for x in range(width):
                a = (base + x) & 0x3FFFF
                out += pal[p[a & 3][(a >> 2) & 0xFFFF]]
        return Frame(width, height, bytes(out), 8)
    width = max(1, min((crtc[CRTC_HDISP_END] + 1) * 8, MAX_WIDTH))
    colors = [pal[c] for c in _attr_colors(vga)]
    enable = s.attr[ATTR_PLANE_ENABLE] & 0x0F
    out = bytearray()
    cache: dict[tuple[int, int, int, int], bytes] = {}
    for y in range(height):
        base = start + y * pitch
        for xb in range(width // 8):
            a = (base + xb) & 0xFFFF
            key = (p[0][a] if enable & 1 else 0, p[1][a] if enable & 2 else 0,
                   p[2][a] if enable & 4 else 0, p[3][a] if enable & 8 else 0)
            px = cache.get(key)
            if px is None:
                b0, b1, b2, b3 = key
                px = b"".join(colors[((b0 >> i) & 1) | (((b1 >> i) & 1) << 1) | (((b2 >> i) & 1) << 2)
                                     | (((b3 >> i) & 1) << 3)] for i in range(7, -1, -1))
                cache[key] = px
            out += px
    return Frame(width, height, bytes(out), 4)
