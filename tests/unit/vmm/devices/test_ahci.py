"""AHCI HBA + ATA disk, driven by register scripts and command lists built in guest RAM."""

import os
import struct

import pytest

from vmm.devices.ahci import Ahci
from vmm.devices.ata_disk import AtaDisk
from vmm.devices.base import IrqLine
from vmm.devices.virtio.scsi_disk import DiskOptions
from vmm.memory import GuestMemory

from .fake_disk import RawFile

CLB, FB, CTBA, DATA = 0x10000, 0x11000, 0x20000, 0x100000
P0 = 0x100


class Rig:
    def __init__(self, tmp_path, size=8 << 20, read_only=False, ports=2, **opts):
        self.mem = GuestMemory(4 << 20)
        self.img = RawFile(tmp_path / "disk.raw", size, read_only)
        self.line = IrqLine()
        self.hba = Ahci(self.mem, {0: AtaDisk(self.img, DiskOptions(**opts))}, ports=ports, irq=self.line)
        self.hba.config_write(0x04, 2, 0x6)
        self.abar = self.hba.bars[5].handler
        w = self.w
        w(0x04, 1 << 31 | 1)                          # HBA reset
        assert self.r(0x04) & 1 == 0
        w(0x04, 1 << 31 | 2)                          # AE + IE
        w(P0 + 0x00, CLB)
        w(P0 + 0x04, 0)
        w(P0 + 0x08, FB)
        w(P0 + 0x0C, 0)
        w(P0 + 0x30, 0xFFFF_FFFF)
        w(P0 + 0x10, 0xFFFF_FFFF)
        w(P0 + 0x14, 0x7DC0_007F)                     # all interrupt causes enabled
        w(P0 + 0x18, 0x10)                            # FRE
        w(P0 + 0x18, 0x11)                            # ST

    def r(self, reg):
        return self.abar.read(reg, 4)

    def w(self, reg, value):
        self.abar.write(reg, 4, value)

    def command(self, fis, prds=(), write=False, slot=0, atapi=False, sact=False):
        flags = 5 | (1 << 6 if write else 0) | (1 << 5 if atapi else 0) | len(prds) << 16
        ctba = CTBA + slot * 0x1000
        self.mem.write(CLB + 32 * slot, struct.pack("<IIQ", flags, 0xDEAD, ctba) + bytes(16))
        self.mem.write(ctba, fis.ljust(64, b"\0"))
        for i, (addr, length) in enumerate(prds):
            self.mem.write(ctba + 0x80 + 16 * i, struct.pack("<QII", addr, 0, length - 1))
        if sact:
            self.w(P0 + 0x34, 1 << slot)
        self.w(P0 + 0x38, 1 << slot)
        return self.mem.read_u32(CLB + 32 * slot + 4)          # PRDBC

    def ack(self):
        pis = self.r(P0 + 0x10)
        self.w(P0 + 0x10, pis)
        self.w(0x08, self.r(0x08))
        return pis


def h2d(cmd, lba=0, count=0, features=0, device=0x40):
    return struct.pack("<BBBBBBBBBBBBHBB", 0x27, 0x80, cmd, features & 0xFF, lba & 0xFF, lba >> 8 & 0xFF,
                       lba >> 16 & 0xFF, device, lba >> 24 & 0xFF, lba >> 32 & 0xFF, lba >> 40 & 0xFF,
                       features >> 8, count, 0, 0) + bytes(4)


@pytest.fixture
def rig(tmp_path):
    return lambda **kw: Rig(tmp_path, **kw)


def test_generic_host_control(rig):
    r = rig(ports=4)
    cap = r.r(0x00)
    assert cap & 0x1F == 3 and cap & (1 << 31) and cap & (1 << 30) and (cap >> 8) & 0x1F == 31
    assert r.r(0x0C) == 0xF and r.r(0x10) == 0x10300
    assert r.hba.config_read(0, 4) == 0x2829_8086 and r.hba.config_read(0x08, 4) >> 8 == 0x010601
    assert r.r(P0 + 0x28) == 0x123 and r.r(P0 + 0x24) == 0x101 and r.r(P0 + 0x20) & 0xFF == 0x50
    assert r.r(P0 + 0x80 + 0x28) == 0                # port 1: nothing attached
    assert r.r(P0 + 0x18) & (1 << 15 | 1 << 14) == (1 << 15 | 1 << 14)   # CR, FR follow ST, FRE


def test_comreset_signature_fis(rig):
    r = rig()
    r.ack()
    r.w(P0 + 0x18, 0x10)                             # stop engine
    r.w(P0 + 0x2C, 1)
    assert r.r(P0 + 0x28) & 0xF == 0
    r.w(P0 + 0x2C, 0)
    assert r.r(P0 + 0x28) & 0xF == 3 and r.r(P0 + 0x24) == 0x101
    d2h = r.mem.read(FB + 0x40, 20)
    assert d2h[0] == 0x34 and d2h[2] == 0x50 and d2h[4] == 1 and d2h[12] == 1
    assert r.r(P0 + 0x10) & 1 and r.line.level


def test_identify(rig):
    r = rig(non_rotational=True, discard=True)
    n = r.command(h2d(0xEC), [(DATA, 512)])
    assert n == 512 and r.r(P0 + 0x38) == 0
    ident = r.mem.read(DATA, 512)
    w = struct.unpack("<256H", ident)
    sectors = (8 << 20) // 512
    assert w[100] | w[101] << 16 == sectors and w[60] | w[61] << 16 == sectors
    assert w[83] & (1 << 10) and w[76] & (1 << 8) and w[217] == 1 and w[169] & 1
    assert ident[54:62] == b"BVXOH RA"                 # "VBOX HAR" byte-swapped
    assert sum(ident) % 256 == 0 and ident[510] == 0xA5
    pis = r.ack()
    assert pis & 0x2 and pis & 0x1                      # PIO setup + D2H
    assert r.mem.read(FB + 0x20, 1) == b"\x5f" and r.mem.read(FB + 0x20 + 15, 1) == b"\x50"
    assert not r.line.level
    r2 = rig()
    r2.command(h2d(0xEC), [(DATA, 512)])
    w2 = struct.unpack("<256H", r2.mem.read(DATA, 512))
    assert w2[217] == 0 and not w2[169] & 1


def test_dma_write_read_scatter_gather(rig):
    r = rig()
    payload = os.urandom(6 * 512)
    r.mem.write(DATA, payload[:1024])
    r.mem.write(DATA + 0x8000, payload[1024:])
    n = r.command(h2d(0x35, lba=77, count=6), [(DATA, 1024), (DATA + 0x8000, 2048)], write=True)
    assert n == 3072 and r.img.read_at(77 * 512, 3072) == payload
    assert r.ack() & 1 and r.r(P0 + 0x20) & 0xFF == 0x50
    r.mem.write(DATA + 0x40000, bytes(3072))
    n = r.command(h2d(0x25, lba=77, count=6), [(DATA + 0x40000, 3072)])
    assert n == 3072 and r.mem.read(DATA + 0x40000, 3072) == payload
    # LBA28 READ DMA with the top LBA bits in the device register
    n = r.command(h2d(0xC8, lba=77, count=1, device=0x40), [(DATA, 512)])
    assert r.mem.read(DATA, 512) == payload[:512]


def test_ncq(rig):
    r = rig()
    r.mem.write(DATA, b"\x5a" * 4096)
    fis = h2d(0x61, lba=8, count=3 << 3, features=8)
    r.command(fis, [(DATA, 4096)], write=True, slot=3, sact=True)
    assert r.r(P0 + 0x34) == 0 and r.r(P0 + 0x38) == 0
    assert r.img.read_at(8 * 512, 4096) == b"\x5a" * 4096
    sdb = r.mem.read(FB + 0x58, 8)
    assert sdb[0] == 0xA1 and struct.unpack("<I", sdb[4:])[0] == 1 << 3
    assert r.ack() & (1 << 3)


def test_flush_trim_set_features(rig):
    r = rig(discard=True)
    r.command(h2d(0xEA))
    assert r.img.flushes == 1 and not r.r(P0 + 0x10) & (1 << 30)
    r.ack()
    ranges = struct.pack("<Q", 100 | 16 << 48) + struct.pack("<Q", 5000 | 8 << 48)
    r.mem.write(DATA, ranges.ljust(512, b"\0"))
    r.command(h2d(0x06, count=1, features=1), [(DATA, 512)], write=True)
    assert r.img.discarded == [(100 * 512, 16 * 512), (5000 * 512, 8 * 512)]
    r.ack()
    r.command(h2d(0xEF, features=0x82))               # write cache off -> writes flushed
    r.command(h2d(0xCA, lba=0, count=1), [(DATA, 512)], write=True)
    assert r.img.flushes == 2


def test_errors_set_tfes_and_port_restart_recovers(rig):
    r = rig()
    sectors = (8 << 20) // 512
    r.command(h2d(0x25, lba=sectors - 1, count=2), [(DATA, 1024)])
    pis = r.ack()
    assert pis & (1 << 30)
    tfd = r.r(P0 + 0x20)
    assert tfd & 1 and (tfd >> 8) & 0x10                 # ERR, IDNF
    assert r.mem.read(FB + 0x40 + 2, 1)[0] & 1
    # the HBA halts after an error until software restarts the engine
    r.command(h2d(0xEC), [(DATA, 512)])
    assert r.r(P0 + 0x38) & 1
    r.w(P0 + 0x18, 0x10)
    assert r.r(P0 + 0x38) == 0
    r.w(P0 + 0x18, 0x11)
    assert r.command(h2d(0xEC), [(DATA, 512)]) == 512
    r.ack()
    r.command(h2d(0xB0, features=0xD0), [(DATA, 512)])   # SMART: not provided -> abort
    assert r.ack() & (1 << 30) and (r.r(P0 + 0x20) >> 8) & 0x04


def test_read_only_medium_refuses_writes(rig):
    r = rig(read_only=True)
    r.mem.write(DATA, b"\xff" * 512)
    r.command(h2d(0x35, lba=0, count=1), [(DATA, 512)], write=True)
    assert r.ack() & (1 << 30) and r.img.read_at(0, 512) == bytes(512)


@pytest.mark.parametrize("where", ["clb", "ctba", "prd", "short_prdt"])
def test_hostile_structures(rig, where):
    r = rig()
    r.img.write_at(0, b"\x33" * 512)
    if where == "clb":
        r.w(P0 + 0x18, 0x10)
        r.w(P0 + 0x00, 0xFFFF_FC00)
        r.w(P0 + 0x18, 0x11)
        r.w(P0 + 0x38, 1)
        expect = 1 << 29
    elif where == "ctba":
        r.mem.write(CLB, struct.pack("<IIQ", 5 | 1 << 16, 0, 0x7FFF_FF80))
        r.w(P0 + 0x38, 1)
        expect = 1 << 29
    elif where == "prd":
        r.command(h2d(0x25, lba=0, count=1), [(0x3FFF_F000, 512)])
        expect = 1 << 29
    else:
        r.command(h2d(0x25, lba=0, count=8), [(DATA, 512)])
        expect = 1 << 30
    assert r.ack() & expect
    assert r.r(P0 + 0x20) & 1
    # the port is usable again after a stop/start
    r.w(P0 + 0x18, 0x10)
    r.w(P0 + 0x00, CLB)
    r.w(P0 + 0x18, 0x11)
    r.mem.write(DATA, bytes(512))
    assert r.command(h2d(0x25, lba=0, count=1), [(DATA, 512)]) == 512
    assert r.mem.read(DATA, 512) == b"\x33" * 512


def test_empty_port_and_atapi_abort(rig):
    r = rig()
    r.command(h2d(0xA1), [(DATA, 512)], atapi=True)
    assert r.ack() & (1 << 30)
    p1 = P0 + 0x80
    r.w(p1 + 0x00, CLB + 0x400)
    r.w(p1 + 0x08, FB + 0x100)
    r.w(p1 + 0x18, 0x11)
    r.mem.write(CLB + 0x400, struct.pack("<IIQ", 5, 0, CTBA))
    r.w(p1 + 0x38, 1)
    assert r.r(p1 + 0x10) & (1 << 30)


def test_interrupt_gating_and_saved_state(rig):
    r = rig()
    r.ack()
    r.w(0x04, 1 << 31)                               # IE off
    r.command(h2d(0xE7))
    assert r.r(P0 + 0x10) & 1 and r.r(0x08) == 1 and not r.line.level
    r.w(0x04, 1 << 31 | 2)
    assert r.line.level
    r.hba.config_write(0x04, 2, 0x0406)              # INTx disable in PCI command
    assert not r.line.level
    r.hba.config_write(0x04, 2, 0x0006)
    state = r.hba.get_state()
    fresh = Ahci(r.mem, {0: AtaDisk(r.img)}, ports=2, irq=IrqLine())
    fresh.set_state(state)
    assert fresh.irq.level and fresh.bars[5].handler.read(P0 + 0x00, 4) == CLB
    r.hba, r.abar = fresh, fresh.bars[5].handler
    r.ack()
    assert not fresh.irq.level
    r.img.write_at(512, b"\x77" * 512)
    assert r.command(h2d(0x25, lba=1, count=1), [(DATA, 512)]) == 512
    assert r.mem.read(DATA, 512) == b"\x77" * 512


def test_byte_access_to_registers(rig):
    r = rig()
    r.abar.write(P0 + 0x14, 1, 0x01)                   # IE low byte only
    assert r.r(P0 + 0x14) & 0xFF == 0x01 and r.r(P0 + 0x14) & 0x7DC0_0000
    assert r.abar.read(0x00, 1) == r.r(0x00) & 0xFF


def test_pio_sectors_read_log_and_verify(rig):
    r = rig()
    r.img.write_at(3 * 512, b"\x42" * 512)
    assert r.command(h2d(0x24, lba=3, count=1), [(DATA, 512)]) == 512     # READ SECTORS EXT (PIO)
    assert r.mem.read(DATA, 512) == b"\x42" * 512 and r.ack() & 0x2
    assert r.command(h2d(0x2F, lba=0, count=1), [(DATA, 512)]) == 512     # READ LOG EXT: directory
    assert r.mem.read(DATA, 2) == b"\x01\x00" and not r.ack() & (1 << 30)
    r.command(h2d(0x2F, lba=0x10, count=1), [(DATA, 512)])               # a log we do not keep
    assert r.ack() & (1 << 30)
    r.w(P0 + 0x18, 0x10)
    r.w(P0 + 0x18, 0x11)
    r.command(h2d(0x42, lba=(8 << 20) // 512, count=1))                  # VERIFY past the end
    assert r.ack() & (1 << 30) and (r.r(P0 + 0x20) >> 8) & 0x10


def test_atapi_drive_on_a_port(tmp_path):
    from vmm.devices import atapi
    from vmm.devices.atapi import AtapiDrive
    iso = RawFile(tmp_path / "disc.iso", 8 * 2048, read_only=True)
    for lba in range(8):
        os.pwrite(iso.fd, bytes([lba + 1]) * 2048, lba * 2048)
    mem = GuestMemory(4 << 20)
    hba = Ahci(mem, {0: AtapiDrive(iso), 1: AtapiDrive(None)}, ports=2, irq=IrqLine())
    hba.config_write(0x04, 2, 0x6)
    abar = hba.bars[5].handler
    assert abar.read(P0 + 0x24, 4) == 0xEB14_0101                  # PxSIG: a packet device
    for reg, v in ((0x04, 1 << 31 | 2), (P0 + 0x00, CLB), (P0 + 0x08, FB), (P0 + 0x14, 0x7DC0_007F),
                   (P0 + 0x18, 0x10), (P0 + 0x18, 0x11)):
        abar.write(reg, 4, v)

    def run(fis, prds=(), cdb=b"", port=0):
        base = P0 + 0x80 * port
        abar.write(base + 0x00, 4, CLB)
        abar.write(base + 0x08, 4, FB)
        abar.write(base + 0x18, 4, 0x10)
        abar.write(base + 0x18, 4, 0x11)
        flags = 5 | (1 << 5 if cdb else 0) | len(prds) << 16
        mem.write(CLB, struct.pack("<IIQ", flags, 0, CTBA) + bytes(16))
        mem.write(CTBA, fis.ljust(64, b"\0") + cdb.ljust(16, b"\0"))
        for i, (addr, length) in enumerate(prds):
            mem.write(CTBA + 0x80 + 16 * i, struct.pack("<QII", addr, 0, length - 1))
        abar.write(base + 0x38, 4, 1)
        tfd = abar.read(base + 0x20, 4)
        abar.write(base + 0x10, 4, 0xFFFF_FFFF)
        if tfd & 1:                                                  # restart the halted port
            abar.write(base + 0x18, 4, 0x10)
            abar.write(base + 0x18, 4, 0x11)
        return tfd, mem.read_u32(CLB + 4)

    tfd, n = run(h2d(0xA1), [(DATA, 512)])
    assert tfd & 0xFF == 0x50 and n == 512 and mem.read_u16(DATA) == 0x85C0
    tfd, _ = run(h2d(0xEC), [(DATA, 512)])
    assert tfd & 1 and mem.read(FB + 0x40 + 5, 2) == b"\x14\xeb"      # abort, packet signature in the FIS
    tfd, n = run(h2d(0xA0, features=1), [(DATA, 4096)], bytes((atapi.READ_10, 0, 0, 0, 0, 3, 0, 0, 2)))
    assert tfd & 0xFF == 0x50 and n == 4096 and mem.read(DATA, 4096) == bytes([4]) * 2048 + bytes([5]) * 2048
    tfd, _ = run(h2d(0xA0), [(DATA, 64)], bytes((atapi.READ_10, 0, 0, 0, 0, 8, 0, 0, 1)))
    assert tfd & 1 and (tfd >> 8) >> 4 == atapi.ILLEGAL_REQUEST      # LBA out of range: CHECK CONDITION
    tfd, n = run(h2d(0xA0), [(DATA, 18)], bytes((atapi.REQUEST_SENSE, 0, 0, 0, 18)))
    assert n == 18 and mem.read(DATA + 12, 1) == b"\x21"
    tfd, _ = run(h2d(0xA0), [], bytes((atapi.TEST_UNIT_READY,)), port=1)
    assert (tfd >> 8) >> 4 == atapi.NOT_READY                        # the empty drive
    iso.close()
