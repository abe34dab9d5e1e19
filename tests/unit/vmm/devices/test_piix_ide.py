"""PIIX IDE controller with an ATA disk and an ATAPI drive, driven by port-level register scripts."""

import os
import random
import struct

import pytest

from vmm.bus import Bus
from vmm.devices import atapi
from vmm.devices.ata_disk import AtaDisk
from vmm.devices.atapi import AtapiDrive
from vmm.devices.base import IrqLine
from vmm.devices.piix_ide import BM_ACTIVE, BM_ERROR, BM_INT, PiixIde
from vmm.devices.virtio.scsi_disk import DiskOptions
from vmm.memory import GuestMemory

from .fake_disk import RawFile

P, S = 0x1F0, 0x170            # command blocks
PC, SC = 0x3F6, 0x376          # control registers
BM = 0xC000                    # BAR4 as firmware would place it
PRD, DATA = 0x8000, 0x10000
RAM = 2 << 20
ISO_BLOCKS = 40


def pattern(lba, size):
    return struct.pack("<I", lba) * (size // 4)


class Rig:
    def __init__(self, tmp_path, disk_size=1 << 20, iso=True, read_only=False):
        self.mem = GuestMemory(RAM)
        self.disk_img = RawFile(tmp_path / "disk.raw", disk_size, read_only)
        for lba in range(disk_size // 512):
            os.pwrite(self.disk_img.fd, pattern(lba, 512), lba * 512)
        devices = {(0, 0): AtaDisk(self.disk_img, DiskOptions(serial="DISKSERIAL"))}
        self.iso_img = None
        if iso:
            self.iso_img = RawFile(tmp_path / "disc.iso", ISO_BLOCKS * 2048, True)
            for lba in range(ISO_BLOCKS):
                os.pwrite(self.iso_img.fd, pattern(lba + 1000, 2048), lba * 2048)
            devices[(1, 0)] = AtapiDrive(self.iso_img)
        self.lines = (IrqLine(), IrqLine())
        self.ide = PiixIde(self.mem, devices, "PIIX3", irqs=self.lines)
        self.io = Bus("io")
        for _name, port, span, dev, _irq in self.ide.legacy_windows():
            self.io.register(port, span, dev)
        self.ide.attach_buses(self.io, None)
        self.ide.config_write(0x20, 4, BM)
        self.ide.config_write(0x04, 2, 0x5)          # I/O decode + bus master

    def outb(self, port, v):
        self.io.write(port, 1, v)

    def inb(self, port):
        return self.io.read(port, 1)

    def inw(self, port):
        return self.io.read(port, 2)

    def read_data(self, base, nbytes):
        return b"".join(struct.pack("<H", self.inw(base)) for _ in range(nbytes // 2))

    def write_data(self, base, data):
        for i in range(0, len(data), 2):
            self.io.write(base, 2, struct.unpack_from("<H", data, i)[0])

    def taskfile(self, base, cmd, lba=0, count=1, dev=0x40, features=0, lba48=False):
        if lba48:
            self.outb(base + 1, features >> 8)
            self.outb(base + 2, count >> 8)
            self.outb(base + 3, lba >> 24 & 0xFF)
            self.outb(base + 4, lba >> 32 & 0xFF)
            self.outb(base + 5, lba >> 40 & 0xFF)
        self.outb(base + 6, dev | (0 if lba48 else lba >> 24 & 0xF))
        self.outb(base + 1, features & 0xFF)
        self.outb(base + 2, count & 0xFF)
        self.outb(base + 3, lba & 0xFF)
        self.outb(base + 4, lba >> 8 & 0xFF)
        self.outb(base + 5, lba >> 16 & 0xFF)
        self.outb(base + 7, cmd)

    def prd(self, entries, at=PRD):
        raw = b"".join(struct.pack("<IHH", a, n & 0xFFFF, 0x8000 if last else 0) for a, n, last in entries)
        self.mem.write(at, raw)
        self.io.write(BM + 4, 4, at)

    def bm(self, ch=0):
        return self.inb(BM + 8 * ch + 2)

    def packet(self, cdb, bcl=0xFFFE, dma=False, base=S):
        self.outb(base + 6, 0)
        self.outb(base + 1, 1 if dma else 0)
        self.outb(base + 4, bcl & 0xFF)
        self.outb(base + 5, bcl >> 8)
        self.outb(base + 7, 0xA0)
        assert self.inb(base + 7) & 0x08 and self.inb(base + 2) == 1      # DRQ, CoD: send the packet
        self.write_data(base, bytes(cdb).ljust(12, b"\0"))

    def atapi_pio_in(self, base=S):
        out = b""
        while True:
            st = self.inb(base + 7)
            if not st & 0x08:
                return st, out
            n = self.inb(base + 4) | self.inb(base + 5) << 8
            assert self.inb(base + 2) == 2                                  # IO: data to the host
            out += self.read_data(base, n)


@pytest.fixture
def rig(tmp_path):
    made = []

    def make(**kw):
        made.append(Rig(tmp_path, **kw))
        return made[-1]
    yield make
    for r in made:
        r.disk_img.close()
        if r.iso_img:
            r.iso_img.close()


def test_pci_identity_and_signatures(rig):
    r = rig()
    assert r.ide.config_read(0, 4) == 0x7010_8086
    assert r.ide.config_read(0x08, 4) >> 8 == 0x01018A
    assert r.ide.config_read(0x40, 2) & 0x8000 and r.ide.config_read(0x42, 2) & 0x8000
    for base, ctl, sig in ((P, PC, (0, 0)), (S, SC, (0x14, 0xEB))):
        r.outb(ctl, 0x04)                           # SRST
        assert r.inb(base + 7) & 0x80
        r.outb(ctl, 0x00)
        assert (r.inb(base + 2), r.inb(base + 3), r.inb(base + 4), r.inb(base + 5)) == (1, 1) + sig
        assert r.inb(base + 1) == 1
    assert r.inb(P + 7) == 0x50 and r.inb(S + 7) == 0x00
    r.outb(P + 6, 0x10)                             # absent slave
    assert r.inb(P + 7) == 0 and r.inb(P + 2) == 0
    r.outb(P + 7, 0xEC)                             # a command for nobody is ignored
    assert not r.lines[0].level


def test_empty_channel_floats(rig):
    r = rig(iso=False)
    assert r.inb(S + 7) == 0xFF and r.inb(SC) == 0xFF


def test_identify_and_pio_reads(rig):
    r = rig()
    r.taskfile(P, 0xEC)
    assert r.lines[0].level and r.inb(P + 7) == 0x58 and not r.lines[0].level
    ident = r.read_data(P, 512)
    w = struct.unpack("<256H", ident)
    assert ident[54:60] == b"BVXOH " and w[93] == 0x6001 and w[76] == 0 and w[47] == 0x8010
    assert sum(ident) & 0xFF == 0 and r.inb(P + 7) == 0x50
    r.taskfile(P, 0x20, lba=5, count=2)
    for lba in (5, 6):
        assert r.lines[0].level and r.inb(P + 7) == 0x58
        assert r.read_data(P, 512) == pattern(lba, 512)
    assert r.inb(P + 7) == 0x50 and not r.lines[0].level
    # LBA48: the high bytes go through the HOB registers, read back with HOB set
    r.taskfile(P, 0x24, lba=0x7FF, count=1, lba48=True)
    r.inb(P + 7)
    assert r.read_data(P, 512) == pattern(0x7FF, 512)
    r.outb(PC, 0x80)
    assert r.inb(P + 2) == 0
    # CHS (16 heads, 63 sectors): cylinder 0, head 1, sector 3 is LBA 65
    r.outb(P + 6, 0xA1)
    r.outb(P + 2, 1)
    r.outb(P + 3, 3)
    r.outb(P + 4, 0)
    r.outb(P + 5, 0)
    r.outb(P + 7, 0x20)
    r.inb(P + 7)
    assert r.read_data(P, 512) == pattern(65, 512)


def test_multiple_and_32bit_data(rig):
    r = rig()
    r.taskfile(P, 0xC4, lba=0, count=4)
    assert r.inb(P + 7) & 0x01 and r.inb(P + 1) == 0x04          # no SET MULTIPLE yet: abort
    r.taskfile(P, 0xC6, count=3)
    assert r.inb(P + 7) & 0x01                                     # not a power of two
    r.taskfile(P, 0xC6, count=2)
    assert r.inb(P + 7) == 0x50
    r.taskfile(P, 0xC4, lba=10, count=3)
    r.inb(P + 7)
    got = b"".join(struct.pack("<I", r.io.read(P, 4)) for _ in range(256))
    assert got == pattern(10, 512) + pattern(11, 512)
    r.inb(P + 7)
    assert r.read_data(P, 512) == pattern(12, 512)


def test_pio_write_and_errors(rig, tmp_path):
    r = rig()
    r.taskfile(P, 0x30, lba=7, count=2)
    assert r.inb(PC) == 0x58 and not r.lines[0].level              # first block: DRQ, no interrupt
    r.write_data(P, b"\xAA" * 512)
    assert r.lines[0].level and r.inb(P + 7) == 0x58
    r.write_data(P, b"\xBB" * 512)
    assert r.lines[0].level and r.inb(P + 7) == 0x50
    assert os.pread(r.disk_img.fd, 1024, 7 * 512) == b"\xAA" * 512 + b"\xBB" * 512
    r.taskfile(P, 0x20, lba=2048, count=1)                          # past the end
    assert r.inb(P + 7) == 0x51 and r.inb(P + 1) == 0x14
    r.taskfile(P, 0x00)                                             # NOP: abort
    assert r.inb(P + 7) == 0x51
    r.taskfile(P, 0xA0)                                             # PACKET on a disk
    assert r.inb(P + 1) == 0x04
    r.outb(P + 6, 0xA0)
    r.outb(P + 3, 0)                                                # CHS sector 0 is invalid
    r.outb(P + 7, 0x20)
    assert r.inb(P + 7) & 0x01


def test_read_write_dma_with_prd_table(rig):
    r = rig()
    r.prd([(DATA, 512, False), (DATA + 0x4000, 1024, True)])
    r.taskfile(P, 0xC8, lba=3, count=3)
    assert r.inb(PC) & 0x08 and not r.lines[0].level              # waiting for the bus master
    r.outb(BM, 0x09)                                                # start, device -> memory
    assert r.lines[0].level and r.bm() & BM_INT and not r.bm() & BM_ACTIVE
    assert r.inb(P + 7) == 0x50
    assert r.mem.read(DATA, 512) == pattern(3, 512)
    assert r.mem.read(DATA + 0x4000, 1024) == pattern(4, 512) + pattern(5, 512)
    r.outb(BM, 0)
    r.outb(BM + 2, BM_INT)
    assert not r.bm() & BM_INT
    # WRITE DMA EXT with the bus master started first; a table larger than the transfer keeps ACTIVE
    r.mem.write(DATA, b"\x5A" * 1024)
    r.prd([(DATA, 0x2000, True)])
    r.outb(BM, 0x01)
    r.taskfile(P, 0x35, lba=20, count=2, lba48=True)
    assert r.inb(P + 7) == 0x50 and r.bm() & BM_ACTIVE and r.bm() & BM_INT
    assert os.pread(r.disk_img.fd, 1024, 20 * 512) == b"\x5A" * 1024


def test_dma_waits_for_bus_mastering(rig):
    r = rig()
    r.ide.config_write(0x04, 2, 0x1)                                # bus master disabled
    r.prd([(DATA, 512, True)])
    r.taskfile(P, 0xC8, lba=1, count=1)
    r.outb(BM, 0x09)
    assert not r.lines[0].level and r.inb(PC) & 0x08


@pytest.mark.parametrize("entries,bm_error", [
    ([(RAM - 256, 512, True)], True),                               # runs off the end of RAM
    ([(0xFFFF_0000, 512, True)], True),                             # not RAM at all
    ([(DATA, 2, True)], False),                                     # table too short for the transfer
])
def test_bad_prd_tables_fail_the_command(rig, entries, bm_error):
    r = rig()
    r.prd(entries)
    r.taskfile(P, 0xC8, lba=0, count=1)
    r.outb(BM, 0x09)
    assert r.lines[0].level and r.inb(P + 7) == 0x51
    assert bool(r.bm() & BM_ERROR) == bm_error and not r.bm() & BM_ACTIVE


def test_prd_length_zero_is_64k_and_tables_are_bounded(rig):
    r = rig(disk_size=1 << 20)
    r.prd([(DATA, 0, True)])                                        # 0 means 64 KiB
    r.taskfile(P, 0xC8, lba=0, count=128)
    r.outb(BM, 0x09)
    assert r.inb(P + 7) == 0x50 and not r.bm() & BM_ACTIVE
    assert r.mem.read(DATA + 127 * 512, 512) == pattern(127, 512)
    # an endless table: no end-of-table bit anywhere, 2-byte entries that never cover the transfer
    r.outb(BM, 0)
    r.mem.write(0x100000, struct.pack("<IHH", DATA, 2, 0) * 8192)
    r.io.write(BM + 4, 4, 0x100000)
    r.taskfile(P, 0xC8, lba=0, count=0)                             # 256 sectors
    r.outb(BM, 0x09)
    assert r.inb(P + 7) == 0x51


def test_atapi_identify_and_packet_pio(rig):
    r = rig()
    r.outb(S + 6, 0)
    r.outb(S + 7, 0xEC)                                             # IDENTIFY DEVICE: abort + signature
    assert r.inb(S + 7) & 0x01 and (r.inb(S + 4), r.inb(S + 5)) == (0x14, 0xEB)
    r.outb(S + 7, 0xA1)
    r.inb(S + 7)
    ident = r.read_data(S, 512)
    assert struct.unpack_from("<H", ident)[0] == 0x85C0 and ident[54:60] == b"BVXOC "
    r.packet(bytes((atapi.INQUIRY, 0, 0, 0, 36)))
    st, inq = r.atapi_pio_in()
    assert st == 0x50 and inq[8:12] == b"VBOX" and r.inb(S + 2) == 3
    # READ(10) of 3 blocks through a 2 KiB byte count limit: three DRQ blocks
    r.packet(bytes((atapi.READ_10, 0, 0, 0, 0, 4, 0, 0, 3)), bcl=2048)
    st, got = r.atapi_pio_in()
    assert st == 0x50 and got == pattern(1004, 2048) + pattern(1005, 2048) + pattern(1006, 2048)
    # an odd byte count limit is rounded down to even
    r.packet(bytes((atapi.READ_10, 0, 0, 0, 0, 0, 0, 0, 1)), bcl=1001)
    st, got = r.atapi_pio_in()
    assert st == 0x50 and got == pattern(1000, 2048)


def test_atapi_check_condition_and_request_sense(rig):
    r = rig()
    r.packet(bytes((atapi.READ_10, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF)))
    st = r.inb(S + 7)
    assert st & 0x01 and r.inb(S + 1) >> 4 == atapi.ILLEGAL_REQUEST and r.inb(S + 2) == 3
    r.packet(bytes((atapi.REQUEST_SENSE, 0, 0, 0, 18)))
    _, sense = r.atapi_pio_in()
    assert sense[2] == atapi.ILLEGAL_REQUEST and sense[12] == 0x21


def test_atapi_dma_and_medium_change(rig):
    r = rig()
    r.io.write(BM + 8 + 4, 4, PRD)
    r.mem.write(PRD, struct.pack("<IHH", DATA, 4096, 0x8000))
    r.packet(bytes((atapi.READ_12, 0, 0, 0, 0, 10, 0, 0, 0, 2)), dma=True)
    r.outb(BM + 8, 0x09)
    assert r.lines[1].level and r.inb(S + 7) == 0x50 and r.bm(1) & BM_INT
    assert r.mem.read(DATA, 4096) == pattern(1010, 2048) + pattern(1011, 2048)
    drive = r.ide.device_at(1, 0)
    drive.insert(None)
    r.packet(bytes((atapi.TEST_UNIT_READY,)))
    assert r.inb(S + 1) >> 4 == atapi.UNIT_ATTENTION
    r.packet(bytes((atapi.TEST_UNIT_READY,)))
    assert r.inb(S + 1) >> 4 == atapi.NOT_READY
    r.packet(bytes((atapi.READ_10, 0, 0, 0, 0, 0, 0, 0, 1)), dma=True)
    assert r.inb(S + 7) & 0x01                                      # no medium: no DMA is started


def test_nien_masks_the_interrupt_and_state_round_trip(rig):
    r = rig()
    r.outb(PC, 0x02)
    r.taskfile(P, 0x20, lba=1, count=2)
    assert not r.lines[0].level
    r.outb(PC, 0x00)
    assert r.lines[0].level
    r.inb(P + 7)
    first = r.read_data(P, 256)
    state = r.ide.get_state()
    r.ide.set_state(r.ide.get_state())
    fresh = PiixIde(r.mem, {(0, 0): r.ide.device_at(0, 0), (1, 0): r.ide.device_at(1, 0)}, "PIIX3")
    fresh.set_state(state)
    rest = b"".join(struct.pack("<H", fresh.channels[0].read(0, 2)) for _ in range(128))
    assert first + rest == pattern(1, 512)
    fresh.channels[0].read(7, 1)
    assert b"".join(struct.pack("<H", fresh.channels[0].read(0, 2)) for _ in range(256)) == pattern(2, 512)


def test_random_register_abuse_never_raises(rig):
    r = rig()
    rnd = random.Random(11)
    r.mem.write(PRD, struct.pack("<IHH", DATA, 0, 0x8000))
    ports = [P + i for i in range(8)] + [S + i for i in range(8)] + [PC, SC] + [BM + i for i in range(16)]
    cmds = [0x20, 0x24, 0x30, 0xC4, 0xC8, 0x25, 0xCA, 0xA0, 0xA1, 0xEC, 0xEF, 0xC6, 0x91, 0x90, 0x08, 0xF8]
    for _ in range(20000):
        port = rnd.choice(ports)
        if rnd.random() < 0.5:
            v = rnd.choice(cmds) if port in (P + 7, S + 7) and rnd.random() < 0.7 else rnd.getrandbits(16)
            size = 2 if port in (P, S) else 1
            r.io.write(port, size, v & ((1 << (8 * size)) - 1))
        else:
            r.io.read(port, 2 if port in (P, S) else 1)
    # the controller still works after a reset
    for ctl in (PC, SC):
        r.outb(ctl, 0x04)
        r.outb(ctl, 0x00)
    r.outb(BM, 0)
    r.taskfile(P, 0x20, lba=9, count=1)
    r.inb(P + 7)
    assert r.read_data(P, 512) == pattern(9, 512)


def test_state_through_ssm_codec_mid_atapi_transfer(rig):
    from vmm.devices.piix_ide import PiixIdeState
    from vmm.ssm import decode_state, encode_state
    r = rig()
    r.ide.device_at(1, 0).command(bytes((atapi.PREVENT_ALLOW, 0, 0, 0, 1)).ljust(12, b"\0"))
    r.packet(bytes((atapi.READ_10, 0, 0, 0, 0, 2, 0, 0, 2)), bcl=2048)
    r.inb(S + 7)
    first = r.read_data(S, 1000)
    state = r.ide.get_state()
    restored = decode_state(PiixIdeState, encode_state(state))
    fresh = PiixIde(r.mem, {(0, 0): AtaDisk(r.disk_img), (1, 0): AtapiDrive(r.iso_img)}, "PIIX3")
    fresh.set_state(restored)
    assert encode_state(fresh.get_state()) == encode_state(state)
    assert fresh.device_at(1, 0).locked
    ch = fresh.channels[1]
    rest = b"".join(struct.pack("<H", ch.read(0, 2)) for _ in range((2048 - 1000) // 2))
    ch.read(7, 1)
    n = ch.read(4, 1) | ch.read(5, 1) << 8
    second = b"".join(struct.pack("<H", ch.read(0, 2)) for _ in range(n // 2))
    assert first + rest + second == pattern(1002, 2048) + pattern(1003, 2048)
    assert ch.read(7, 1) == 0x50


def test_string_reads_take_all_but_a_blocks_last_unit(rig):
    r = rig()
    r.taskfile(P, 0x20, lba=7, count=2)
    assert r.inb(P + 7) == 0x58
    assert r.io.string_room(P + 1, 2) == 0 and r.io.string_room(P, 2) == 255     # data port only
    first = struct.pack("<H", r.inw(P))
    bulk = r.io.read_string(P, 2, 1000)                   # capped at the room: 254 words
    assert len(bulk) == 508 and r.io.string_room(P, 2) == 0
    assert r.inb(PC) == 0x58 and not r.lines[0].level     # the block is not over yet
    last = struct.pack("<H", r.inw(P))                     # the last unit ends the block
    assert first + bulk + last == pattern(7, 512)
    assert r.lines[0].level and r.inb(P + 7) == 0x58       # next sector's DRQ and interrupt
    assert r.io.read_string(P, 4, 3) + r.read_data(P, 500) == pattern(8, 512)
    assert r.inb(P + 7) == 0x50 and r.io.string_room(P, 2) == 0 and r.io.read_string(P, 2, 8) == b""
    # ATAPI: a packet's PIO block (byte count limit 2048) the same way
    r.packet([0x28, 0, 0, 0, 0, 3, 0, 0, 1], bcl=2048)
    assert r.inb(S + 7) & 0x08
    assert r.io.string_room(S, 2) == 1023
    got = r.io.read_string(S, 2, 1023) + r.read_data(S, 2)
    assert got == pattern(1003, 2048) and not r.inb(S + 7) & 0x08
