"""The Bochs VBE ("DISPI") extension of the VGA: linear framebuffer graphics modes.

VirtualBox's VBoxVGA and QEMU's standard VGA both carry this interface, and it is what the
guest drivers of a PC without a vendor GPU use: SeaVGABIOS's VBE implementation (which gives
`vga=0x318`-style modes to boot loaders and kernels), Linux's `bochs` DRM driver, and firmware
frame buffer drivers.  A guest picks a resolution and depth through the index/data port pair,
enables it, and draws into the video RAM, which it sees either as the linear frame buffer (a
PCI memory BAR the size of VRAM) or through 64 KiB banks in the legacy 0xA0000 window.

Register spaces:
    DispiPorts  3 bytes (PC: 0x1CE)  0: index (16-bit), 1 and 2: data (16-bit)
    Lfb         VRAM size (PCI BAR0) byte-addressed video RAM
Registers (index): 0 ID, 1 XRES, 2 YRES, 3 BPP, 4 ENABLE, 5 BANK, 6 VIRT_WIDTH, 7 VIRT_HEIGHT,
8 X_OFFSET, 9 Y_OFFSET, 10 VIDEO_MEMORY_64K.  The guest is hostile: a mode that does not fit
VRAM is refused at enable (the device stays in VGA mode), banks and offsets are clamped so
that every scan-out and bank access stays inside VRAM.

Dirty tracking: every write to VRAM through the device marks its 4 KiB page in `dirty_pages`
and bumps `generation`, as does any register write; a viewer that finds the version unchanged
has nothing to do, so a static screen costs nothing.  An engine may map the frame buffer into
the guest instead (`direct_ram`, REM does): stores then bypass the device, and `version()` adds
a checksum of the scanned-out part of VRAM, so the viewer still sees every change.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

PORT_BASE = 0x1CE
PORT_SPAN = 3
ID, XRES, YRES, BPP, ENABLE, BANK, VIRT_WIDTH, VIRT_HEIGHT, X_OFFSET, Y_OFFSET, VIDEO_MEMORY_64K = range(11)
REGISTER_COUNT = 11
ID0, ID5 = 0xB0C0, 0xB0C5
ENABLED, GETCAPS, DAC_8BIT, LFB_ENABLED, NOCLEARMEM = 0x01, 0x02, 0x20, 0x40, 0x80
MAX_XRES, MAX_YRES = 2560, 1600
DEPTHS = (8, 15, 16, 24, 32)                    # packed pixels (4-bit planar VBE modes are not offered)
BANK_SIZE = 0x10000
PAGE = 4096
# the "standard VGA" Linux's bochs driver binds
PCI_VENDOR, PCI_DEVICE, PCI_CLASS = 0x1234, 0x1111, 0x030000
VRAM_MIN, VRAM_MAX = 1 << 20, 256 << 20
_PACK = {n: struct.Struct(f"<{c}").pack_into for n, c in ((1, "B"), (2, "H"), (4, "I"), (8, "Q"))}
_MASK = {n: (1 << (8 * n)) - 1 for n in (1, 2, 4, 8)}


VBE_CONTROLLERS = ("VBoxVGA", "VMSVGA", "VBoxSVGA")     # VirtualBox's choices this device stands for


def vram_bytes(requested: int) -> int:
    """The VRAM size for a `--vram` request in bytes: a power of two (a PCI BAR) within the limits."""
    size = VRAM_MIN
    while size < requested and size < VRAM_MAX:
        size <<= 1
    return size


def bytes_per_pixel(bpp: int) -> int:
    return (bpp + 7) // 8


@dataclass
class VbeState:
    index: int = 0
    regs: list[int] = field(default_factory=lambda: [ID5, 640, 480, 8, 0, 0, 640, 0, 0, 0, 0])
    vram: bytes = b""                   # empty: all zero (the initial state)


class BochsVbe:
    """Video RAM and the DISPI registers (see the module docstring); `vram_size` a power of two."""

    def __init__(self, vram_size: int):
        if not VRAM_MIN <= vram_size <= VRAM_MAX or vram_size & (vram_size - 1):
            raise ValueError(f"video RAM must be a power of two between 1 and 256 MiB, not {vram_size}")
        self.vram = bytearray(vram_size)
        self.s = VbeState()
        self.s.regs[VIDEO_MEMORY_64K] = vram_size // BANK_SIZE
        self.generation = 0
        # VRAM may hold something other than zeros (every store through vram_write says so; a
        # mapped frame buffer, `direct`, may have been written at any time)
        self._written = False
        self.direct = False             # an engine maps VRAM into the guest (direct_ram)
        self.dirty_pages: set[int] = set()
        self.ports = _Ports(self)
        self.lfb = _Lfb(self)

    # -- mode ------------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return bool(self.s.regs[ENABLE] & ENABLED)

    @property
    def dac_8bit(self) -> bool:
        return bool(self.s.regs[ENABLE] & DAC_8BIT)

    def mode(self) -> tuple[int, int, int, int, int] | None:
        """(width, height, bpp, pitch in bytes, start offset in VRAM) of the enabled mode, else None."""
        r = self.s.regs
        if not self.enabled:
            return None
        bpp = r[BPP]
        pitch = r[VIRT_WIDTH] * bytes_per_pixel(bpp)
        start = r[Y_OFFSET] * pitch + r[X_OFFSET] * bytes_per_pixel(bpp)
        return r[XRES], r[YRES], bpp, pitch, start

    def _touch(self) -> None:
        self.generation += 1

    def read_reg(self, index: int) -> int:
        r = self.s.regs
        if index >= REGISTER_COUNT:
            return 0
        if r[ENABLE] & GETCAPS and index in (XRES, YRES, BPP):
            return {XRES: MAX_XRES, YRES: MAX_YRES, BPP: 32}[index]
        return r[index]

    def write_reg(self, index: int, value: int) -> None:
        r = self.s.regs
        value &= 0xFFFF
        self._touch()
        if index == ID:
            if ID0 <= value <= ID5:
                r[ID] = value
        elif index in (XRES, YRES, BPP):
            if self.enabled:                           # mode registers are locked while a mode runs
                return
            if index == BPP:
                value = value if value in DEPTHS else (32 if value == 0 else r[BPP])
            elif index == XRES:
                value = min(value & ~7, MAX_XRES)
            else:
                value = min(value, MAX_YRES)
            r[index] = value
        elif index == ENABLE:
            self._enable(value)
        elif index == BANK:
            r[BANK] = min(value, max(0, len(self.vram) // BANK_SIZE - 1))
        elif index == VIRT_WIDTH:
            if self.enabled:
                r[VIRT_WIDTH] = max(r[XRES], min(value, MAX_XRES * 4))
                self._fit_virtual()
        elif index in (X_OFFSET, Y_OFFSET):
            r[index] = value
            self._clamp_offsets()

    def _enable(self, value: int) -> None:
        r = self.s.regs
        if not value & ENABLED:
            r[ENABLE] = value & (GETCAPS | DAC_8BIT)
            return
        xres, yres, bpp = r[XRES], r[YRES], r[BPP]
        bpp_bytes = bytes_per_pixel(bpp)
        if xres == 0 or yres == 0 or xres * yres * bpp_bytes > len(self.vram):
            r[ENABLE] = value & (GETCAPS | DAC_8BIT)   # refused: the mode would not fit
            return
        r[ENABLE] = value & (ENABLED | GETCAPS | DAC_8BIT | LFB_ENABLED | NOCLEARMEM)
        r[VIRT_WIDTH], r[X_OFFSET], r[Y_OFFSET], r[BANK] = xres, 0, 0, 0
        self._fit_virtual()
        if not value & NOCLEARMEM:
            self.vram[:] = bytes(len(self.vram))
            self._written = False
            self.dirty_pages.update(range(len(self.vram) // PAGE))

    def _fit_virtual(self) -> None:
        r = self.s.regs
        pitch = max(1, r[VIRT_WIDTH] * bytes_per_pixel(r[BPP]))
        r[VIRT_HEIGHT] = min(len(self.vram) // pitch, 0xFFFF)
        if r[VIRT_HEIGHT] < r[YRES]:                    # too wide for VRAM: back to the visible width
            r[VIRT_WIDTH] = r[XRES]
            r[VIRT_HEIGHT] = min(len(self.vram) // max(1, r[XRES] * bytes_per_pixel(r[BPP])), 0xFFFF)
        self._clamp_offsets()

    def _clamp_offsets(self) -> None:
        r = self.s.regs
        r[X_OFFSET] = min(r[X_OFFSET], max(0, r[VIRT_WIDTH] - r[XRES]))
        r[Y_OFFSET] = min(r[Y_OFFSET], max(0, r[VIRT_HEIGHT] - r[YRES]))

    # -- video RAM -------------------------------------------------------------------------------
    def vram_read(self, offset: int, size: int) -> int:
        if offset < 0 or offset + size > len(self.vram):
            return (1 << (8 * size)) - 1
        return int.from_bytes(self.vram[offset:offset + size], "little")

    def vram_write(self, offset: int, size: int, value: int) -> None:
        # the guest's frame buffer stores all come here (one call per store on REM): keep it lean
        if offset < 0 or offset + size > len(self.vram):
            return
        pack = _PACK.get(size)
        if pack is not None:
            pack(self.vram, offset, value & _MASK[size])
        else:
            self.vram[offset:offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        page = offset // PAGE
        self.dirty_pages.add(page)
        if (offset + size - 1) // PAGE != page:
            self.dirty_pages.add(page + 1)
        self.generation += 1
        self._written = True

    def bank_offset(self, window_offset: int) -> int:
        """VRAM offset of a byte in the 64 KiB bank window at 0xA0000."""
        return self.s.regs[BANK] * BANK_SIZE + (window_offset & (BANK_SIZE - 1))

    def direct_ram(self) -> bytearray:
        """VRAM itself, for an engine that maps the frame buffer into the guest (then stores no
        longer pass through vram_write: `version()` checks the content instead)."""
        self.direct = True
        return self.vram

    def version(self) -> tuple[int, int]:
        """Changes whenever what the VBE mode shows may have changed."""
        if not self.direct or not self.enabled:
            return self.generation, 0
        r = self.s.regs
        pitch = r[VIRT_WIDTH] * bytes_per_pixel(r[BPP])
        start = r[Y_OFFSET] * pitch
        return self.generation, zlib.crc32(memoryview(self.vram)[start:start + pitch * r[YRES]])

    def _nonzero(self) -> bool:
        return self.vram.count(0) != len(self.vram)      # a C-speed scan, not a Python loop

    def take_dirty(self) -> set[int]:
        pages, self.dirty_pages = self.dirty_pages, set()
        return pages

    # -- saved state -----------------------------------------------------------------------------
    def get_state(self) -> VbeState:
        vram = bytes(self.vram) if (self._written or self.direct) and self._nonzero() else b""
        return VbeState(self.s.index, list(self.s.regs), vram)

    def set_state(self, state: VbeState) -> None:
        if len(state.regs) != REGISTER_COUNT or len(state.vram) not in (0, len(self.vram)):
            raise ValueError("VBE state does not match this device (register count or VRAM size)")
        if state.vram:
            self.vram[:] = state.vram
        elif self._written or self.direct:
            self.vram[:] = bytes(len(self.vram))
        self._written = bool(state.vram)
        regs = [v & 0xFFFF for v in state.regs]
        enable = regs[ENABLE]
        self.s = VbeState(state.index & 0xFFFF, list(regs))
        self.s.regs[VIDEO_MEMORY_64K] = len(self.vram) // BANK_SIZE
        self.s.regs[ENABLE] = 0
        self._enable(enable | NOCLEARMEM)               # re-validated against this VRAM
        if self.enabled:
            self.s.regs[VIRT_WIDTH], self.s.regs[X_OFFSET], self.s.regs[Y_OFFSET] = \
                regs[VIRT_WIDTH], regs[X_OFFSET], regs[Y_OFFSET]
            self.s.regs[BANK] = min(regs[BANK], len(self.vram) // BANK_SIZE - 1)
            self._fit_virtual()
            self.s.regs[ENABLE] = enable & (ENABLED | GETCAPS | DAC_8BIT | LFB_ENABLED | NOCLEARMEM)
        self.dirty_pages.update(range(len(self.vram) // PAGE))
        self._touch()


class _Ports:
    def __init__(self, vbe: BochsVbe):
        self.vbe = vbe

    def read(self, offset: int, size: int) -> int:
        if offset == 0:
            return self.vbe.s.index
        if offset in (1, 2):
            return self.vbe.read_reg(self.vbe.s.index) & ((1 << (8 * min(size, 2))) - 1)
        return 0xFF

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            self.vbe.s.index = value & 0xFFFF
        elif offset in (1, 2):
            self.vbe.write_reg(self.vbe.s.index, value if size >= 2 else value & 0xFF)


class _Lfb:
    def __init__(self, vbe: BochsVbe):
        self.vbe = vbe

    def read(self, offset: int, size: int) -> int:
        return self.vbe.vram_read(offset, size) if size in (1, 2, 4, 8) else 0

    def write(self, offset: int, size: int, value: int) -> None:
        if size in (1, 2, 4, 8):
            self.vbe.vram_write(offset, size, value)

    def direct_ram(self) -> bytearray:
        return self.vbe.direct_ram()
