"""virtio-scsi over the modern virtio-pci transport, driven like a guest driver would."""

import os
import struct

import pytest

from vmm.devices.base import IrqLine
from vmm.devices.virtio.pci import VirtioPciTransport
from vmm.devices.virtio.queue import DESC_F_NEXT, DESC_F_WRITE
from vmm.devices.virtio.scsi import VirtioScsi
from vmm.devices.virtio.scsi_disk import DiskOptions, ScsiDisk
from vmm.memory import GuestMemory

from .fake_disk import RawFile

QSIZE = 16
SENSE = 96
REQ_LEN, RESP_LEN = 19 + 32, 12 + SENSE


class Driver:
    """Plays the guest: feature negotiation, queue setup, request building, kicks."""

    def __init__(self, dev, mem, line):
        self.dev, self.mem, self.line = dev, mem, line
        self.next_free = 0x100000
        self.qs = {}
        dev.config_write(0x04, 2, 0x6)                          # memory + bus master
        dev.bar_write(0x14, 1, 0)
        dev.bar_write(0x14, 1, 1 | 2)
        dev.bar_write(0x00, 4, 1)
        assert dev.bar_read(0x04, 4) & 1                        # VERSION_1 offered
        dev.bar_write(0x08, 4, 0)
        dev.bar_write(0x0C, 4, 1 << 28)                         # INDIRECT_DESC
        dev.bar_write(0x08, 4, 1)
        dev.bar_write(0x0C, 4, 1)
        dev.bar_write(0x14, 1, 1 | 2 | 8)
        assert dev.bar_read(0x14, 1) & 8
        for q in range(dev.bar_read(0x12, 2)):
            base = 0x10000 + q * 0x4000
            dev.bar_write(0x16, 2, q)
            dev.bar_write(0x18, 2, QSIZE)
            dev.bar_write(0x20, 4, base)
            dev.bar_write(0x24, 4, 0)
            dev.bar_write(0x28, 8, base + 0x1000)
            dev.bar_write(0x30, 8, base + 0x2000)
            dev.bar_write(0x1C, 2, 1)
            self.qs[q] = dict(desc=base, avail=base + 0x1000, used=base + 0x2000, idx=0, used_seen=0)
        dev.bar_write(0x14, 1, 1 | 2 | 4 | 8)

    def alloc(self, n):
        a = self.next_free
        self.next_free += (n + 0xFFF) & ~0xFFF
        return a

    def submit(self, q, segs, kick=True):
        """segs: [(gpa, len, writable)] -> head of the chain."""
        st = self.qs[q]
        head = (st["idx"] * 4) % QSIZE
        for i, (gpa, ln, w) in enumerate(segs):
            flags = (DESC_F_WRITE if w else 0) | (DESC_F_NEXT if i + 1 < len(segs) else 0)
            self.mem.write(st["desc"] + 16 * (head + i), struct.pack("<QIHH", gpa, ln, flags, head + i + 1))
        self.mem.write_u16(st["avail"] + 4 + 2 * (st["idx"] % QSIZE), head)
        st["idx"] += 1
        self.mem.write_u16(st["avail"] + 2, st["idx"])
        if kick:
            self.dev.bar_write(0x3000 + 4 * q, 2, q)
        return head

    def used(self, q):
        st = self.qs[q]
        out = []
        while st["used_seen"] != self.mem.read_u16(st["used"] + 2):
            out.append(struct.unpack("<II", self.mem.read(st["used"] + 4 + 8 * (st["used_seen"] % QSIZE), 8)))
            st["used_seen"] += 1
        return out

    def command(self, cdb, target=0, data_out=b"", data_in=0, lun=0):
        req = bytes([1, target, 0x40 | (lun >> 8), lun & 0xFF]) + bytes(4) + bytes(8) + bytes(3)
        req += cdb.ljust(32, b"\0")
        r = self.alloc(len(req) + len(data_out))
        self.mem.write(r, req + data_out)
        segs = [(r, REQ_LEN, False)]
        if data_out:
            segs.append((r + REQ_LEN, len(data_out), False))
        resp = self.alloc(RESP_LEN)
        segs.append((resp, RESP_LEN, True))
        din = None
        if data_in:
            din = self.alloc(data_in)
            segs.append((din, data_in, True))
        head = self.submit(2, segs)
        (uhead, ulen), = self.used(2)
        assert uhead == head
        sense_len, resid, _, status, response = struct.unpack("<IIHBB", self.mem.read(resp, 12))
        return dict(response=response, status=status, sense=self.mem.read(resp + 12, sense_len),
                    resid=resid, data=self.mem.read(din, data_in) if din else b"", used_len=ulen)


@pytest.fixture
def rig(tmp_path):
    def make(size=8 << 20, read_only=False, **opts):
        mem = GuestMemory(16 << 20)
        img = RawFile(tmp_path / "disk.raw", size, read_only)
        line = IrqLine()
        dev = VirtioPciTransport(VirtioScsi({0: ScsiDisk(img, DiskOptions(**opts))}, ports=2), mem, line)
        return Driver(dev, mem, line), img
    return make


def cdb10(op, lba, count, flags=0):
    return struct.pack(">BBIBHB", op, flags, lba, 0, count, 0)


def test_pci_identity_and_capabilities(rig):
    drv, _ = rig()
    dev = drv.dev
    assert dev.config_read(0, 4) == 0x1048_1AF4
    assert dev.config_read(0x0B, 1) == 0x01                     # mass storage
    kinds = {}
    cap = dev.config_read(0x34, 1)
    while cap:
        assert dev.config_read(cap, 1) == 0x09
        kinds[dev.config_read(cap + 3, 1)] = (dev.config_read(cap + 4, 1), dev.config_read(cap + 8, 4))
        cap = dev.config_read(cap + 1, 1)
    assert (kinds[1] == (4, 0) and kinds[2] == (4, 0x3000) and kinds[3] == (4, 0x1000)
            and kinds[4][1] == 0x2000)
    assert 5 in kinds


def test_config_space(rig):
    drv, _ = rig()
    dev = drv.dev
    assert dev.bar_read(0x2000, 4) == 1                         # num_queues (request queues)
    assert dev.bar_read(0x2000 + 20, 4) == 96
    assert dev.bar_read(0x2000 + 30, 2) == 1                    # max_target = ports - 1
    dev.bar_write(0x2000 + 20, 4, 64)
    assert dev.bar_read(0x2000 + 20, 4) == 64


def test_inquiry_capacity_and_vpd(rig):
    drv, _ = rig(non_rotational=True, discard=True)
    r = drv.command(bytes([0x12, 0, 0, 0, 96, 0]), data_in=96)
    assert r["status"] == 0 and r["data"][0] == 0 and r["data"][8:16] == b"VBOX    "
    assert r["resid"] == 96 - 36
    assert drv.line.level
    assert drv.dev.bar_read(0x1000, 1) == 1 and not drv.line.level
    r = drv.command(bytes([0x25]) + bytes(9), data_in=8)
    assert struct.unpack(">II", r["data"]) == ((8 << 20) // 512 - 1, 512)
    r = drv.command(bytes([0x9E, 0x10]) + bytes(8) + struct.pack(">I", 32) + bytes(2), data_in=32)
    last, bl = struct.unpack(">QI", r["data"][:12])
    assert (last, bl) == ((8 << 20) // 512 - 1, 512) and r["data"][14] & 0x80
    r = drv.command(bytes([0x12, 1, 0xB1, 0, 64, 0]), data_in=64)
    assert struct.unpack(">H", r["data"][4:6])[0] == 1
    r = drv.command(bytes([0x12, 1, 0xB2, 0, 64, 0]), data_in=64)
    assert r["data"][5] & 0x80
    r = drv.command(bytes([0xA0]) + bytes(5) + struct.pack(">I", 16) + bytes(2), data_in=16)
    assert r["data"][:4] == struct.pack(">I", 8)


def test_rotational_default_and_no_unmap(rig):
    drv, _ = rig()
    r = drv.command(bytes([0x12, 1, 0xB1, 0, 64, 0]), data_in=64)
    assert struct.unpack(">H", r["data"][4:6])[0] == 0
    r = drv.command(bytes([0x42]) + bytes(6) + struct.pack(">H", 24) + b"\0", data_out=bytes(24))
    assert r["status"] == 2 and r["sense"][2] == 0x5 and r["sense"][12] == 0x20


def test_write_read_roundtrip_and_flush(rig):
    drv, img = rig()
    payload = os.urandom(8192)
    r = drv.command(cdb10(0x2A, 100, 16), data_out=payload)
    assert r["status"] == 0 and r["response"] == 0
    assert img.read_at(100 * 512, 8192) == payload
    r = drv.command(struct.pack(">BBQIBB", 0x88, 0, 100, 16, 0, 0), data_in=8192)
    assert r["status"] == 0 and r["data"] == payload and r["resid"] == 0
    assert r["used_len"] == RESP_LEN + 8192
    flushes = img.flushes
    r = drv.command(bytes([0x35]) + bytes(9))
    assert r["status"] == 0 and img.flushes == flushes + 1


def test_write_through_flushes_each_write_and_clears_wce(rig):
    drv, img = rig(write_through=True)
    drv.command(cdb10(0x2A, 0, 1), data_out=bytes(512))
    assert img.flushes == 1
    r = drv.command(bytes([0x1A, 0, 0x08, 0, 64, 0]), data_in=64)
    assert r["data"][4] == 0x08 and not r["data"][6] & 0x04
    drv2, _ = rig()
    r = drv2.command(bytes([0x1A, 0, 0x08, 0, 64, 0]), data_in=64)
    assert r["data"][6] & 0x04


def test_unmap_reaches_discard(rig):
    drv, img = rig(discard=True)
    params = struct.pack(">HH4x", 22, 16) + struct.pack(">QI4x", 2048, 64)
    r = drv.command(bytes([0x42]) + bytes(6) + struct.pack(">H", len(params)) + b"\0", data_out=params)
    assert r["status"] == 0 and img.discarded == [(2048 * 512, 64 * 512)]
    params = struct.pack(">HH4x", 22, 16) + struct.pack(">QI4x", (8 << 20) // 512 - 1, 2)
    r = drv.command(bytes([0x42]) + bytes(6) + struct.pack(">H", len(params)) + b"\0", data_out=params)
    assert r["status"] == 2 and r["sense"][12] == 0x21 and len(img.discarded) == 1


def test_errors_get_sense(rig):
    drv, img = rig()
    blocks = (8 << 20) // 512
    r = drv.command(cdb10(0x28, blocks - 1, 2), data_in=1024)
    assert r["status"] == 2 and r["sense"][2] == 0x5 and r["sense"][12] == 0x21
    r = drv.command(bytes([0x03, 0, 0, 0, 18, 0]), data_in=18)
    assert r["data"][2] == 0x5 and r["data"][12] == 0x21
    r = drv.command(bytes([0xC7]) + bytes(15))
    assert r["sense"][2] == 0x5 and r["sense"][12] == 0x20
    r = drv.command(cdb10(0x28, 0, 8), data_in=512)             # buffer smaller than transfer
    assert r["response"] == 1
    r = drv.command(bytes([0]) * 6, target=1)                    # port without a disk
    assert r["response"] == 3
    r = drv.command(bytes([0]) * 6, lun=1)
    assert r["response"] == 3


def test_read_only_medium(rig):
    drv, img = rig(read_only=True)
    r = drv.command(cdb10(0x2A, 0, 1), data_out=b"\xAA" * 512)
    assert r["status"] == 2 and r["sense"][2] == 0x7 and r["sense"][12] == 0x27
    assert img.read_at(0, 512) == bytes(512)
    r = drv.command(bytes([0x1A, 0, 0x3F, 0, 64, 0]), data_in=64)
    assert r["data"][2] & 0x80


def test_hostile_descriptors_get_failure_and_no_io(rig):
    drv, img = rig()
    img.write_at(0, b"\x55" * 512)
    resp = drv.alloc(RESP_LEN)
    req = drv.alloc(REQ_LEN)
    drv.mem.write(req, bytes([1, 0, 0x40, 0]) + bytes(15) + cdb10(0x28, 0, 1).ljust(32, b"\0"))
    # data-in buffer far outside the 16 MiB of guest RAM
    drv.submit(2, [(req, REQ_LEN, False), (resp, RESP_LEN, True), (0x7000_0000, 512, True)])
    (_, ulen), = drv.used(2)
    assert drv.mem.read(resp + 11, 1) == bytes([9])              # VIRTIO_SCSI_S_FAILURE
    # a request header that is too short
    drv.submit(2, [(req, 10, False), (resp, RESP_LEN, True)])
    assert len(drv.used(2)) == 1 and drv.mem.read(resp + 11, 1) == bytes([9])
    # a chain with a descriptor index beyond the queue: answered, queue keeps working
    st = drv.qs[2]
    h = drv.submit(2, [(req, REQ_LEN, False), (resp, RESP_LEN, True)], kick=False)
    drv.mem.write(st["desc"] + 16 * h + 14, struct.pack("<H", 999))
    drv.dev.bar_write(0x3000 + 8, 2, 2)
    assert len(drv.used(2)) == 1
    assert drv.command(bytes(6))["status"] == 0


def test_corrupt_ring_sets_needs_reset_and_reset_recovers(rig):
    drv, _ = rig()
    st = drv.qs[2]
    drv.mem.write_u16(st["avail"] + 2, 5000)
    drv.dev.bar_write(0x3000 + 8, 2, 2)
    assert drv.dev.bar_read(0x14, 1) & 0x40
    assert drv.dev.bar_read(0x1000, 1) & 2
    drv.dev.bar_write(0x14, 1, 0)
    assert drv.dev.bar_read(0x14, 1) == 0
    drv2 = Driver(drv.dev, drv.mem, drv.line)
    assert drv2.command(bytes(6))["status"] == 0


def test_queue_outside_ram_is_refused(rig):
    drv, _ = rig()
    dev = drv.dev
    dev.bar_write(0x14, 1, 0)
    dev.bar_write(0x14, 1, 1 | 2)
    dev.bar_write(0x16, 2, 2)
    dev.bar_write(0x20, 8, 0xFFFF_0000)
    dev.bar_write(0x1C, 2, 1)
    assert dev.bar_read(0x1C, 2) == 0 and dev.bar_read(0x14, 1) & 0x40


def test_control_queue_tmf_and_an(rig):
    drv, _ = rig()
    req = drv.alloc(64)
    resp = drv.alloc(64)
    drv.mem.write(req, struct.pack("<II", 0, 1) + bytes([1, 0, 0x40, 0]) + bytes(12))
    drv.mem.write(resp, b"\xff")
    drv.submit(0, [(req, 24, False), (resp, 1, True)])
    assert drv.used(0) and drv.mem.read(resp, 1) == b"\x00"
    drv.mem.write(req, struct.pack("<I", 1) + bytes([1, 0, 0x40, 0]) + bytes(4) + struct.pack("<I", 4))
    drv.submit(0, [(req, 16, False), (resp, 5, True)])
    assert drv.used(0) and drv.mem.read(resp, 5) == bytes(5)


def test_features_not_offered_are_refused(rig):
    drv, _ = rig()
    dev = drv.dev
    dev.bar_write(0x14, 1, 0)
    dev.bar_write(0x14, 1, 3)
    dev.bar_write(0x08, 4, 0)
    dev.bar_write(0x0C, 4, 1 << 5)
    dev.bar_write(0x08, 4, 1)
    dev.bar_write(0x0C, 4, 1)
    dev.bar_write(0x14, 1, 3 | 8)
    assert not dev.bar_read(0x14, 1) & 8


def test_saved_state_roundtrip(rig):
    drv, img = rig()
    drv.command(cdb10(0x2A, 3, 1), data_out=b"\x11" * 512)
    state = drv.dev.get_state()
    fresh = VirtioPciTransport(VirtioScsi({0: ScsiDisk(img)}, ports=2), drv.mem, drv.line)
    fresh.set_state(state)
    drv.dev = fresh
    r = drv.command(cdb10(0x28, 3, 1), data_in=512)
    assert r["status"] == 0 and r["data"] == b"\x11" * 512


def test_unmap_on_a_vdi_frees_blocks_and_reads_zero(tmp_path):
    from vmm.storage.create import create_vdi
    img = create_vdi(str(tmp_path / "d.vdi"), 8 << 20)
    mem = GuestMemory(16 << 20)
    dev = VirtioPciTransport(VirtioScsi({0: ScsiDisk(img, DiskOptions(discard=True))}), mem, IrqLine())
    drv = Driver(dev, mem, dev.irq)
    payload = b"\xC3" * (1 << 20)
    assert drv.command(cdb10(0x2A, 2048, 2048), data_out=payload)["status"] == 0
    assert img.allocated_blocks == 1
    params = struct.pack(">HH4x", 22, 16) + struct.pack(">QI4x", 2048, 2048)
    r = drv.command(bytes([0x42]) + bytes(6) + struct.pack(">H", len(params)) + b"\0", data_out=params)
    assert r["status"] == 0 and img.allocated_blocks == 0
    r = drv.command(cdb10(0x28, 2048, 8), data_in=4096)
    assert r["data"] == bytes(4096)
    img.close()
