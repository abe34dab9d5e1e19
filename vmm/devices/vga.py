"""The legacy VGA: its I/O registers, its memory window and the text screen they show.

The firmware, boot loaders and kernels print on the VGA text console before anything else
works; VirtualBox's VGA device is a superset of this.  Here is the standard VGA part that
text mode needs: four 64 KiB planes behind the 0xA0000-0xBFFFF window (memory map select,
odd/even and chain-4 addressing, write mode 0 with set/reset, logical function and bit
mask, read mode 0 with latches, so a VGA BIOS can load fonts into plane 2), the sequencer,
graphics controller, attribute controller, CRTC (start address, cursor, screen geometry),
DAC and status registers.  `text_lines()` renders the screen (code page 437 to Unicode);
graphics modes come with the display work.

Register spaces (place them like a PC):
    VgaPorts  0x30 bytes (PC: 0x3B0)  offsets are port - 0x3B0
    VgaMemory 0x20000 bytes (PC: 0xA0000, MMIO)
Every index and address is masked or bounds-checked: a guest cannot reach outside the planes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PORT_BASE = 0x3B0
PLANE_SIZE = 0x10000
WINDOW_SIZE = 0x20000

# port offsets from 0x3B0
CRTC_INDEX_MONO, CRTC_DATA_MONO, STATUS1_MONO = 0x04, 0x05, 0x0A
ATTR_INDEX, ATTR_READ = 0x10, 0x11
MISC_WRITE, STATUS0 = 0x12, 0x12
SEQ_INDEX, SEQ_DATA = 0x14, 0x15
DAC_MASK, DAC_READ_INDEX, DAC_WRITE_INDEX, DAC_DATA = 0x16, 0x17, 0x18, 0x19
FEATURE_READ, MISC_READ = 0x1A, 0x1C
GC_INDEX, GC_DATA = 0x1E, 0x1F
CRTC_INDEX, CRTC_DATA, STATUS1 = 0x24, 0x25, 0x2A

# register indexes
SEQ_MAP_MASK, SEQ_MEMORY_MODE = 2, 4
GC_SET_RESET, GC_ENABLE_SET_RESET, GC_COLOR_COMPARE, GC_DATA_ROTATE, GC_READ_MAP, GC_MODE, GC_MISC, \
    GC_COLOR_DONT_CARE, GC_BIT_MASK = range(9)
CRTC_HDISP_END, CRTC_MAX_SCAN, CRTC_CURSOR_START, CRTC_CURSOR_END = 0x01, 0x09, 0x0A, 0x0B
CRTC_START_HI, CRTC_START_LO, CRTC_CURSOR_HI, CRTC_CURSOR_LO = 0x0C, 0x0D, 0x0E, 0x0F
CRTC_VDISP_END, CRTC_OVERFLOW, CRTC_OFFSET = 0x12, 0x07, 0x13

# GC misc memory map select -> (offset in the 0xA0000 window, size)
_MAPS = ((0, 0x20000), (0, 0x10000), (0x10000, 0x8000), (0x18000, 0x8000))
_CP437_HIGH = ("ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌"
               "█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0")


def cp437(byte: int) -> str:
    if 0x20 <= byte < 0x7F:
        return chr(byte)
    if byte >= 0x80:
        return _CP437_HIGH[byte - 0x80]
    return " "


@dataclass
class VgaState:
    planes: bytes = bytes(4 * PLANE_SIZE)
    misc: int = 0x67                                    # color, RAM enabled, 28 MHz clock (mode 3)
    seq_index: int = 0
    seq: list[int] = field(default_factory=lambda: [0x03, 0x00, 0x03, 0x00, 0x02] + [0] * 3)
    gc_index: int = 0
    gc: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0, 0x10, 0x0E, 0x0F, 0xFF] + [0] * 7)
    crtc_index: int = 0
    crtc: list[int] = field(default_factory=lambda: [
        0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F, 0x00, 0x4F, 0x0D, 0x0E, 0x00, 0x00, 0x00, 0x00,
        0x9C, 0x8E, 0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF] + [0] * 7)   # mode 3, 80x25
    attr_index: int = 0
    attr_flip: bool = False                             # False: next 0x3C0 write is an index
    attr: list[int] = field(default_factory=lambda: list(range(16)) + [0x0C, 0, 0x0F, 0x08, 0] + [0] * 11)
    dac_mask: int = 0xFF
    dac_read: int = 0
    dac_write: int = 0
    dac_step: int = 0
    dac: bytes = bytes(256 * 3)
    latches: int = 0
    feature: int = 0
    status_toggle: int = 0


class Vga:
    """One VGA: `ports` and `memory` are its two register spaces (see the module docstring)."""

    def __init__(self):
        self.s = VgaState()
        self._planes = bytearray(self.s.planes)
        self._dac = bytearray(self.s.dac)
        self.ports = _Ports(self)
        self.memory = _Memory(self)
        self.vbe = None                  # a vmm.devices.vbe.BochsVbe: its banks take over the window
        # bumped by every register or memory write: viewers skip unchanged screens
        self.generation = 0

    # -- memory window ---------------------------------------------------------------------------
    def _window(self, offset: int) -> int | None:
        """Offset inside the memory map the GC selects, or None outside it."""
        base, size = _MAPS[(self.s.gc[GC_MISC] >> 2) & 3]
        if base <= offset < base + size:
            return offset - base
        return None

    def _chain4(self) -> bool:
        return bool(self.s.seq[SEQ_MEMORY_MODE] & 0x08)

    def _odd_even(self) -> bool:
        return not self.s.seq[SEQ_MEMORY_MODE] & 0x04

    def mem_read(self, offset: int) -> int:
        off = self._window(offset)
        if off is None:
            return 0xFF
        s, planes = self.s, self._planes
        if self._chain4():
            return planes[(off & 3) * PLANE_SIZE + ((off >> 2) & 0xFFFF)]
        if self._odd_even():
            plane = (s.gc[GC_READ_MAP] & 2) | (off & 1)
            return planes[plane * PLANE_SIZE + ((off & ~1) & 0xFFFF)]
        addr = off & 0xFFFF
        s.latches = int.from_bytes(bytes(planes[p * PLANE_SIZE + addr] for p in range(4)), "little")
        if s.gc[GC_MODE] & 0x08:                      # read mode 1: color compare
            cc, dc = s.gc[GC_COLOR_COMPARE] & 0xF, s.gc[GC_COLOR_DONT_CARE] & 0xF
            out = 0xFF
            for p in range(4):
                if dc >> p & 1:
                    byte = (s.latches >> (8 * p)) & 0xFF
                    out &= ~(byte ^ (0xFF if cc >> p & 1 else 0)) & 0xFF
            return out
        return (s.latches >> (8 * (s.gc[GC_READ_MAP] & 3))) & 0xFF

    def mem_write(self, offset: int, value: int) -> None:
        self.generation += 1
        off = self._window(offset)
        if off is None:
            return
        s, planes = self.s, self._planes
        mask = s.seq[SEQ_MAP_MASK] & 0x0F
        value &= 0xFF
        if self._chain4():
            plane = off & 3
            if mask >> plane & 1:
                planes[plane * PLANE_SIZE + ((off >> 2) & 0xFFFF)] = value
            return
        if self._odd_even():
            plane = off & 1
            if mask >> plane & 1:
                planes[plane * PLANE_SIZE + ((off & ~1) & 0xFFFF)] = value
            if mask >> (plane + 2) & 1:
                planes[(plane + 2) * PLANE_SIZE + ((off & ~1) & 0xFFFF)] = value
            return
        addr = off & 0xFFFF
        mode = s.gc[GC_MODE] & 3
        rot = s.gc[GC_DATA_ROTATE] & 7
        func = (s.gc[GC_DATA_ROTATE] >> 3) & 3
        bitmask = s.gc[GC_BIT_MASK]
        for p in range(4):
            if not mask >> p & 1:
                continue
            latch = (s.latches >> (8 * p)) & 0xFF
            if mode == 1:
                planes[p * PLANE_SIZE + addr] = latch
                continue
            if mode == 2:
                data = 0xFF if value >> p & 1 else 0
            else:
                data = ((value >> rot) | (value << (8 - rot))) & 0xFF
                if mode == 0 and s.gc[GC_ENABLE_SET_RESET] >> p & 1:
                    data = 0xFF if s.gc[GC_SET_RESET] >> p & 1 else 0
            bm = bitmask & data if mode == 3 else bitmask
            if mode == 3:
                data = 0xFF if s.gc[GC_SET_RESET] >> p & 1 else 0
            if func == 1:
                data &= latch
            elif func == 2:
                data |= latch
            elif func == 3:
                data ^= latch
            planes[p * PLANE_SIZE + addr] = (data & bm) | (latch & ~bm & 0xFF)

    # -- I/O ports -------------------------------------------------------------------------------
    def _mono(self) -> bool:
        return not self.s.misc & 1

    def port_read(self, off: int) -> int:
        s = self.s
        mono = self._mono()
        if off in ((CRTC_DATA_MONO,) if mono else (CRTC_DATA,)):
            return s.crtc[s.crtc_index & 0x1F] if s.crtc_index < 0x19 else 0
        if off in ((CRTC_INDEX_MONO,) if mono else (CRTC_INDEX,)):
            return s.crtc_index
        if off == (STATUS1_MONO if mono else STATUS1):
            s.attr_flip = False
            s.status_toggle ^= 1
            return 0x09 if s.status_toggle else 0x00    # vertical retrace + display disabled, alternating
        if off == ATTR_INDEX:
            return s.attr_index
        if off == ATTR_READ:
            return s.attr[s.attr_index & 0x1F]
        if off == STATUS0:
            return 0x10
        if off == SEQ_INDEX:
            return s.seq_index
        if off == SEQ_DATA:
            return s.seq[s.seq_index & 7]
        if off == DAC_MASK:
            return s.dac_mask
        if off == DAC_WRITE_INDEX:
            return s.dac_write
        if off == DAC_DATA:
            v = self._dac[(s.dac_read * 3 + s.dac_step) % len(self._dac)]
            s.dac_step += 1
            if s.dac_step == 3:
                s.dac_step, s.dac_read = 0, (s.dac_read + 1) & 0xFF
            return v
        if off == FEATURE_READ:
            return s.feature
        if off == MISC_READ:
            return s.misc
        if off == GC_INDEX:
            return s.gc_index
        if off == GC_DATA:
            return s.gc[s.gc_index & 0xF]
        return 0xFF

    def port_write(self, off: int, value: int) -> None:
        s = self.s
        self.generation += 1
        value &= 0xFF
        mono = self._mono()
        if off == (CRTC_INDEX_MONO if mono else CRTC_INDEX):
            s.crtc_index = value & 0x3F
        elif off == (CRTC_DATA_MONO if mono else CRTC_DATA):
            idx = s.crtc_index
            if idx < 0x19:
                if idx <= 7 and s.crtc[0x11] & 0x80:   # CR0-7 write-protected (except line compare bit)
                    if idx == 7:
                        s.crtc[7] = (s.crtc[7] & ~0x10) | (value & 0x10)
                    return
                s.crtc[idx] = value
        elif off == ATTR_INDEX:
            if not s.attr_flip:
                s.attr_index = value & 0x3F
            elif (s.attr_index & 0x1F) < 0x15:
                s.attr[s.attr_index & 0x1F] = value
            s.attr_flip = not s.attr_flip
        elif off == MISC_WRITE:
            s.misc = value
        elif off == SEQ_INDEX:
            s.seq_index = value & 7
        elif off == SEQ_DATA:
            if s.seq_index < 5:
                s.seq[s.seq_index] = value
        elif off == DAC_MASK:
            s.dac_mask = value
        elif off == DAC_READ_INDEX:
            s.dac_read, s.dac_step = value, 0
        elif off == DAC_WRITE_INDEX:
            s.dac_write, s.dac_step = value, 0
        elif off == DAC_DATA:
            eight_bit = self.vbe is not None and self.vbe.dac_8bit
            self._dac[(s.dac_write * 3 + s.dac_step) % len(self._dac)] = value if eight_bit else value & 0x3F
            s.dac_step += 1
            if s.dac_step == 3:
                s.dac_step, s.dac_write = 0, (s.dac_write + 1) & 0xFF
        elif off == GC_INDEX:
            s.gc_index = value & 0x0F
        elif off == GC_DATA:
            if s.gc_index < 9:
                s.gc[s.gc_index] = value
        elif off in (STATUS1, STATUS1_MONO):
            s.feature = value

    # -- the text screen -------------------------------------------------------------------------
    @property
    def text_mode(self) -> bool:
        return not self.s.gc[GC_MISC] & 0x01

    def geometry(self) -> tuple[int, int]:
        crtc = self.s.crtc
        cols = crtc[CRTC_HDISP_END] + 1
        vde = crtc[CRTC_VDISP_END] | ((crtc[CRTC_OVERFLOW] & 0x02) << 7) | ((crtc[CRTC_OVERFLOW] & 0x40) << 3)
        char_height = (crtc[CRTC_MAX_SCAN] & 0x1F) + 1
        rows = (vde + 1) // char_height
        return max(1, min(cols, 132)), max(1, min(rows, 60))

    def cursor(self) -> tuple[int, int] | None:
        """(column, row) of the text cursor, None when it is switched off."""
        crtc = self.s.crtc
        if crtc[CRTC_CURSOR_START] & 0x20:
            return None
        cols, _ = self.geometry()
        pos = ((crtc[CRTC_CURSOR_HI] << 8) | crtc[CRTC_CURSOR_LO]) - self._start()
        return (pos % cols, pos // cols) if pos >= 0 else None

    def _start(self) -> int:
        return (self.s.crtc[CRTC_START_HI] << 8) | self.s.crtc[CRTC_START_LO]

    def text_lines(self) -> list[str]:
        """The screen as text, trailing blanks stripped (empty in a graphics mode)."""
        if not self.text_mode:
            return []
        cols, rows = self.geometry()
        start, planes = self._start(), self._planes
        out = []
        for r in range(rows):
            chars = []
            for c in range(cols):
                addr = (2 * (start + r * cols + c)) & 0xFFFF
                chars.append(cp437(planes[addr]))
            out.append("".join(chars).rstrip())
        return out

    def last_lines(self, n: int = 10) -> list[str]:
        lines = self.text_lines()
        while lines and not lines[-1]:
            lines.pop()
        return lines[-n:]

    # -- saved state -----------------------------------------------------------------------------
    def get_state(self) -> VgaState:
        s = self.s
        return VgaState(bytes(self._planes), s.misc, s.seq_index, list(s.seq), s.gc_index, list(s.gc),
                        s.crtc_index, list(s.crtc), s.attr_index, s.attr_flip, list(s.attr), s.dac_mask,
                        s.dac_read, s.dac_write, s.dac_step, bytes(self._dac), s.latches, s.feature,
                        s.status_toggle)

    def set_state(self, state: VgaState) -> None:
        if len(state.planes) != 4 * PLANE_SIZE or len(state.dac) != 256 * 3:
            raise ValueError("VGA state has the wrong memory size")
        if (len(state.seq), len(state.gc), len(state.crtc), len(state.attr)) != (8, 16, 32, 32):
            raise ValueError("VGA state has the wrong register counts")
        self._planes[:] = state.planes
        self._dac[:] = state.dac
        self.s = VgaState(**{**state.__dict__, "seq": list(state.seq), "gc": list(state.gc),
                             "crtc": list(state.crtc), "attr": list(state.attr)})


class _Ports:
    def __init__(self, vga: Vga):
        self.vga = vga

    def read(self, offset: int, size: int) -> int:
        if size == 1:
            return self.vga.port_read(offset)
        return sum(self.vga.port_read(offset + i) << (8 * i) for i in range(size)) if size in (2, 4) else 0

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(size if size in (1, 2, 4) else 0):
            self.vga.port_write(offset + i, (value >> (8 * i)) & 0xFF)


class _Memory:
    def __init__(self, vga: Vga):
        self.vga = vga

    def read(self, offset: int, size: int) -> int:
        if size not in (1, 2, 4, 8):
            return 0
        vbe = self.vga.vbe
        if vbe is not None and vbe.enabled:
            return vbe.vram_read(vbe.bank_offset(offset), size) if offset < 0x10000 else (1 << (8 * size)) - 1
        return sum(self.vga.mem_read(offset + i) << (8 * i) for i in range(size))

    def write(self, offset: int, size: int, value: int) -> None:
        if size not in (1, 2, 4, 8):
            return
        vga = self.vga
        vga.generation += 1
        vbe = vga.vbe
        if vbe is not None and vbe.enabled:
            if offset + size <= 0x10000:
                vbe.vram_write(vbe.bank_offset(offset), size, value)
            return
        s = vga.s
        mem_mode = s.seq[SEQ_MEMORY_MODE]
        if not mem_mode & 0x0C:                       # odd/even, no chain-4: text mode, the hot path
            base, length = _MAPS[(s.gc[GC_MISC] >> 2) & 3]
            off = offset - base
            if 0 <= off and off + size <= length:
                mask, planes = s.seq[SEQ_MAP_MASK], vga._planes
                for i in range(size):
                    o = off + i
                    plane, addr = o & 1, o & 0xFFFE
                    byte = (value >> (8 * i)) & 0xFF
                    if mask >> plane & 1:
                        planes[plane * PLANE_SIZE + addr] = byte
                    if mask >> (plane + 2) & 1:
                        planes[(plane + 2) * PLANE_SIZE + addr] = byte
                return
        for i in range(size):
            vga.mem_write(offset + i, (value >> (8 * i)) & 0xFF)
