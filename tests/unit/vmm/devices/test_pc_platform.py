"""The PIIX3 platform for the firmware, driven by register scripts: i440FX PAM/SMRAM through
configuration mechanism #1, the PAM windows, PIIX3 PIRQ routing, fw_cfg (port and DMA), the
debug port and the VGA text screen — hostile values included."""

from __future__ import annotations

import random
import struct

from vmm.bus import Bus
from vmm.devices.base import IrqLine
from vmm.devices.debugcon import MAX_LINE, DebugPort
from vmm.devices.fw_cfg import DMA_ERROR, DMA_READ, DMA_SELECT, DMA_SKIP, DMA_WRITE, FILE_DIR, FwCfg
from vmm.devices.i440fx import SMRAM, SMRAM_D_LCK, SMRAM_D_OPEN, I440fxHost
from vmm.devices.pci import PciHostBridge
from vmm.devices.piix3 import PciIrqRouter, Piix3Isa, pirq_of
from vmm.devices.vga import Vga
from vmm.memory import GuestMemory
from vmm.physmap import READ_ONES, READ_RAM, READ_ROM, LegacyMemoryMap, windows_for


def cfg_write(bridge: PciHostBridge, dev: int, fn: int, reg: int, size: int, value: int) -> None:
    bridge.write(0, 4, 0x8000_0000 | dev << 11 | fn << 8 | (reg & 0xFC))
    bridge.write(4 + (reg & 3), size, value)


def cfg_read(bridge: PciHostBridge, dev: int, fn: int, reg: int, size: int) -> int:
    bridge.write(0, 4, 0x8000_0000 | dev << 11 | fn << 8 | (reg & 0xFC))
    return bridge.read(4 + (reg & 3), size)


# -- i440FX and the PAM windows ------------------------------------------------------------------

def _platform():
    mem = GuestMemory(16 << 20)
    legacy = LegacyMemoryMap(mem, rom_alias_offset=0x0)
    changes = []
    legacy.on_change = changes.append
    host = I440fxHost(on_pam_change=legacy.set_pam, subsystem=(0x1AF4, 0x1100))
    bridge = PciHostBridge(host=host)
    return mem, legacy, host, bridge, changes


def test_host_bridge_ids_and_seabios_shadow_sequence():
    mem, legacy, host, bridge, changes = _platform()
    assert cfg_read(bridge, 0, 0, 0, 4) == 0x1237_8086
    assert cfg_read(bridge, 0, 0, 0x2C, 4) == 0x1100_1AF4
    assert [w.read for w in legacy.windows] == [READ_ONES] * 8 + [READ_ROM] * 5
    # SeaBIOS: two dword writes at 0x58/0x5C make 0xC0000-0xFFFFF RAM read/write
    cfg_write(bridge, 0, 0, 0x58, 4, 0x3333_3000 | cfg_read(bridge, 0, 0, 0x58, 4) & 0xFF)
    cfg_write(bridge, 0, 0, 0x5C, 4, 0x3333_3333)
    assert host.pam == bytes([0x30, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33])
    assert all(w.mode == "rw" for w in legacy.windows) and changes
    # then read-only: writes that reach the map (an engine's read-only page) are dropped
    cfg_write(bridge, 0, 0, 0x59, 1, 0x10)
    f_seg = legacy.windows[-1]
    assert (f_seg.start, f_seg.mode) == (0xF0000, "ro")
    mem.write(0xF0000, b"\x11")
    legacy.write(0xF0000 - 0xC0000, 1, 0x99)
    assert mem.read(0xF0000, 1) == b"\x11"
    assert legacy.read(0xF0000 - 0xC0000, 1) == 0x11


def test_pam_write_only_stores_into_ram_and_low_nibble_of_pam0_is_reserved():
    mem, legacy, host, bridge, _ = _platform()
    cfg_write(bridge, 0, 0, 0x59, 1, 0x2F)           # F segment write-only; low nibble reserved
    assert host.pam[0] == 0x20
    w = legacy.windows[-1]
    assert (w.read, w.write_ram, w.rom_offset) == (READ_ROM, True, 0x10000)
    legacy.write(0xF1234 - 0xC0000, 2, 0xBEEF)
    assert mem.read(0xF1234, 2) == b"\xef\xbe"


def test_windows_for_maps_nibbles_to_segments():
    ws = windows_for(bytes([0x00, 0x31, 0, 0, 0, 0, 0x03]), rom_alias_offset=0x20000)
    assert (ws[0].start, ws[0].read, ws[0].write_ram) == (0xC0000, READ_RAM, False)   # PAM1 low: 1
    assert (ws[1].start, ws[1].mode) == (0xC4000, "rw")                                # PAM1 high: 3
    assert (ws[10].start, ws[10].mode) == (0xE8000, "rw")                              # PAM6 low: 3
    assert (ws[11].start, ws[11].read, ws[11].rom_offset) == (0xEC000, READ_ROM, 0x2C000)


def test_smram_lock_freezes_d_open():
    _, _, host, bridge, _ = _platform()
    assert cfg_read(bridge, 0, 0, SMRAM, 1) == 0x02
    cfg_write(bridge, 0, 0, SMRAM, 1, SMRAM_D_OPEN)
    assert cfg_read(bridge, 0, 0, SMRAM, 1) == 0x42
    cfg_write(bridge, 0, 0, SMRAM, 1, SMRAM_D_LCK | SMRAM_D_OPEN)
    cfg_write(bridge, 0, 0, SMRAM, 1, SMRAM_D_OPEN)
    assert cfg_read(bridge, 0, 0, SMRAM, 1) == 0x12


def test_host_bridge_state_round_trip_notifies_the_map():
    _, legacy, host, bridge, changes = _platform()
    cfg_write(bridge, 0, 0, 0x59, 1, 0x30)
    saved = host.get_state()
    cfg_write(bridge, 0, 0, 0x59, 1, 0x00)
    host.set_state(saved)
    assert legacy.windows[-1].mode == "rw"


# -- PIIX3 PIRQ routing -----------------------------------------------------------------------------

def _router():
    levels: dict[int, bool] = {}

    def isa(irq):
        return IrqLine(lambda level, irq=irq: levels.__setitem__(irq, level))
    router = PciIrqRouter(isa)
    isa_fn = Piix3Isa(router)
    bridge = PciHostBridge()
    bridge.add_function(isa_fn, 1, 0)
    return router, bridge, levels


def test_pirq_swizzle_and_routing_follow_the_registers():
    router, bridge, levels = _router()
    assert cfg_read(bridge, 1, 0, 0, 4) == 0x7000_8086 and cfg_read(bridge, 1, 0, 0x0E, 1) & 0x80
    assert [pirq_of(13, 1), pirq_of(3, 1), pirq_of(15, 2)] == [1, 3, 0]
    ahci = router.line(13, 1)                          # PIRQB
    ahci.raise_()
    assert levels == {}                                # not routed yet (0x80)
    cfg_write(bridge, 1, 0, 0x60, 4, 0x0B0B0A0A)        # SeaBIOS: A, B = 10; C, D = 11
    assert levels.get(10) is True
    cfg_write(bridge, 1, 0, 0x61, 1, 0x05)              # the guest re-routes PIRQB to IRQ 5
    assert levels[10] is False and levels[5] is True
    ahci.lower()
    assert levels[5] is False
    cfg_write(bridge, 1, 0, 0x61, 1, 0x82)              # disabled again


def test_shared_pirq_is_the_or_of_its_devices_and_bad_routes_are_ignored():
    router, bridge, levels = _router()
    a, b = router.line(3, 1), router.line(15, 1)         # both PIRQD
    seen = []
    router.pirq_listeners.append(lambda pirq, level: seen.append((pirq, level)))
    cfg_write(bridge, 1, 0, 0x63, 1, 0x0B)
    a.raise_()
    b.raise_()
    a.lower()
    assert levels[11] is True
    b.lower()
    assert levels[11] is False and seen == [(3, True), (3, False)]
    for bad in (0x00, 0x02, 0x0D, 0x08):                   # reserved IRQs never get a PCI line
        cfg_write(bridge, 1, 0, 0x63, 1, bad)
        a.raise_()
        assert router.target(3) is None
        a.lower()


# -- fw_cfg ------------------------------------------------------------------------------------------

def _select_read(fw: FwCfg, key: int, n: int) -> bytes:
    fw.write(0, 2, key)
    return bytes(fw.read(1, 1) for _ in range(n))


def test_fw_cfg_signature_directory_and_files():
    fw = FwCfg()
    assert _select_read(fw, 0, 4) == b"QEMU"
    assert struct.unpack("<I", _select_read(fw, 1, 4))[0] == 1         # no DMA without memory
    fw.add_file("bootorder", b"/pci@i0cf8/*@d/drive@0/disk@0\nHALT\0")
    calls = []
    fw.add_file("etc/acpi/tables", size=8, make=lambda: calls.append(1) or b"ABC")
    d = _select_read(fw, FILE_DIR, 4 + 2 * 64)
    assert struct.unpack(">I", d[:4])[0] == 2
    entries = {
        d[4 + 64 * i + 8 : 4 + 64 * i + 64].rstrip(b"\0").decode(): struct.unpack(
            ">IH", d[4 + 64 * i : 10 + 64 * i]
        )
        for i in range(2)
    }
    size, key = entries["etc/acpi/tables"]
    assert size == 8 and _select_read(fw, key, 10) == b"ABC" + bytes(7) and calls == [1]
    assert _select_read(fw, 0x7FFF, 3) == bytes(3)                     # unknown key reads zeros


def test_fw_cfg_dma_reads_skips_and_refuses_writes():
    mem = GuestMemory(16 << 20)
    fw = FwCfg(mem)
    key = fw.add_file("etc/e820", bytes(range(40)))
    assert struct.unpack("<I", _select_read(fw, 1, 4))[0] == 3
    assert fw.read(4, 4) == 0x51454D55                                  # "QEMU CFG"

    def dma(control, length, addr, desc=0x1000):
        mem.write(desc, struct.pack(">IIQ", control, length, addr))
        fw.write(4, 4, 0)
        fw.write(8, 4, int.from_bytes(desc.to_bytes(4, "big"), "little"))
        return struct.unpack(">I", mem.read(desc, 4))[0]

    assert dma(key << 16 | DMA_SELECT | DMA_SKIP, 4, 0) == 0
    assert dma(DMA_READ, 8, 0x2000) == 0 and mem.read(0x2000, 8) == bytes(range(4, 12))
    assert dma(DMA_READ, 64, 0x3000) == 0 and mem.read(0x3000, 30) == bytes(range(12, 40)) + bytes(2)
    assert dma(DMA_WRITE, 4, 0x2000) == DMA_ERROR
    assert dma(key << 16 | DMA_SELECT | DMA_READ, 1 << 30, 0xFFFF_0000) == DMA_ERROR   # outside RAM
    fw.write(4, 4, 0xFFFF_FFFF)                                          # descriptor outside RAM: ignored
    fw.write(8, 4, 0)


# -- debug port and VGA ------------------------------------------------------------------------------

def test_debug_port_lines_are_bounded_and_printable():
    lines = []
    port = DebugPort(lines.append)
    for b in b"SeaBIOS\x01\r\n":
        port.write(0, 1, b)
    port.write(0, 1, 0x0A)
    for _ in range(MAX_LINE + 5):
        port.write(0, 1, 0x41)
    assert lines[:2] == ["SeaBIOS.", ""] and len(lines[2]) == MAX_LINE and port.read(0, 1) == 0xE9


def test_vga_text_mode_screen_and_cursor():
    vga = Vga()
    for i, ch in enumerate(b"No bootable device."):
        vga.memory.write(0x18000 + 2 * (80 + i), 2, 0x0700 | ch)        # row 1, light grey
    vga.ports.write(0x24, 1, 0x0E)                                       # CRTC cursor 80 + 19
    vga.ports.write(0x25, 1, 0)
    vga.ports.write(0x24, 1, 0x0F)
    vga.ports.write(0x25, 1, 99)
    assert vga.text_lines()[1] == "No bootable device." and vga.cursor() == (19, 1)
    assert vga.last_lines(3) == ["", "No bootable device."]
    assert vga.memory.read(0x18000 + 160, 2) == 0x074E
    vga.ports.write(0x24, 1, 0x0A)
    vga.ports.write(0x25, 1, 0x20)
    assert vga.cursor() is None
    # font loading into plane 2 (planar, A0000) does not disturb the text
    vga.ports.write(0x14, 2, 0x0402)                                     # map mask: plane 2
    vga.ports.write(0x14, 2, 0x0604)                                     # memory mode: no odd/even
    vga.ports.write(0x1E, 2, 0x0406)                                     # GC misc: A0000 64K
    vga.memory.write(0x0000, 4, 0xFFFFFFFF)
    vga.ports.write(0x14, 2, 0x0302)
    vga.ports.write(0x14, 2, 0x0204)
    vga.ports.write(0x1E, 2, 0x0E06)
    assert vga.text_lines()[1] == "No bootable device."
    vga.set_state(vga.get_state())


def test_vga_hostile_registers_and_memory_never_crash():
    rnd = random.Random(7)
    vga = Vga()
    for _ in range(20000):
        off = rnd.randrange(0x40)
        size = rnd.choice((1, 2, 4, 3))
        if rnd.random() < 0.5:
            vga.ports.write(off, size, rnd.getrandbits(32))
            vga.ports.read(off, size)
        else:
            addr = rnd.randrange(0x21000)
            vga.memory.write(addr, size, rnd.getrandbits(32))
            vga.memory.read(addr, size)
    vga.text_lines()
    vga.cursor()
    assert 1 <= vga.geometry()[0] <= 132


def test_bus_places_the_vga_like_a_pc():
    io, mmio = Bus("io"), Bus("mmio")
    vga = Vga()
    io.register(0x3B0, 0x30, vga.ports)
    mmio.register(0xA0000, 0x20000, vga.memory)
    mmio.write(0xB8000, 2, 0x1F41)
    assert vga.text_lines()[0] == "A" and io.read(0x3CC, 1) == 0x67
