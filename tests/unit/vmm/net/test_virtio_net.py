"""virtio-net over the modern virtio-pci transport: frames both ways, offloads, link status, and a
hostile driver (bad buffers are skipped, a corrupt ring puts only this device in NEEDS_RESET)."""

import struct

import pytest

from vmm.devices.base import IrqLine
from vmm.devices.net.offload import ones_sum
from vmm.devices.net.virtio_net import HDR, HDR_F_NEEDS_CSUM, VirtioNet
from vmm.devices.virtio.pci import VirtioPciTransport
from vmm.devices.virtio.queue import DESC_F_NEXT, DESC_F_WRITE
from vmm.memory import GuestMemory
from vmm.tm import FakeClock

MAC = bytes.fromhex("080027010203")
QSIZE = 16
RAM = 16 << 20


class Backend:
    def __init__(self):
        self.sent, self.sink = [], None

    def attach(self, sink):
        self.sink = sink

    def send(self, frame):
        self.sent.append(frame)

    def close(self):
        pass


class Driver:
    def __init__(self, dev, mem):
        self.dev, self.mem = dev, mem
        self.qs = {}
        self.next_free = 0x100000
        dev.config_write(0x04, 2, 0x6)
        dev.bar_write(0x14, 1, 1 | 2)
        dev.bar_write(0x08, 4, 0)
        dev.bar_write(0x0C, 4, 1 | (1 << 5) | (1 << 16))       # CSUM, MAC, STATUS
        dev.bar_write(0x08, 4, 1)
        dev.bar_write(0x0C, 4, 1)                               # VERSION_1
        dev.bar_write(0x14, 1, 1 | 2 | 8)
        for q in range(2):
            base = 0x10000 + q * 0x4000
            dev.bar_write(0x16, 2, q)
            dev.bar_write(0x18, 2, QSIZE)
            dev.bar_write(0x20, 8, base)
            dev.bar_write(0x28, 8, base + 0x1000)
            dev.bar_write(0x30, 8, base + 0x2000)
            dev.bar_write(0x1C, 2, 1)
            self.qs[q] = dict(desc=base, avail=base + 0x1000, used=base + 0x2000, idx=0, seen=0, next=0)
        dev.bar_write(0x14, 1, 1 | 2 | 4 | 8)

    def alloc(self, n):
        a = self.next_free
        self.next_free += (n + 0xFFF) & ~0xFFF
        return a

    def submit(self, q, segs, kick=True):
        st = self.qs[q]
        head = st["next"]
        for i, (gpa, ln, wr) in enumerate(segs):
            idx = (head + i) % QSIZE
            flags = (DESC_F_WRITE if wr else 0) | (DESC_F_NEXT if i + 1 < len(segs) else 0)
            self.mem.write(st["desc"] + 16 * idx, struct.pack("<QIHH", gpa, ln, flags, (idx + 1) % QSIZE))
        st["next"] = (head + len(segs)) % QSIZE
        self.mem.write_u16(st["avail"] + 4 + 2 * (st["idx"] % QSIZE), head)
        st["idx"] += 1
        self.mem.write_u16(st["avail"] + 2, st["idx"])
        if kick:
            self.dev.bar_write(0x3000 + 4 * q, 2, q)
        return head

    def used(self, q):
        st = self.qs[q]
        out = []
        while st["seen"] != self.mem.read_u16(st["used"] + 2):
            out.append(struct.unpack("<II", self.mem.read(st["used"] + 4 + 8 * (st["seen"] % QSIZE), 8)))
            st["seen"] += 1
        return out


@pytest.fixture
def rig():
    mem = GuestMemory(RAM)
    clock = FakeClock()
    be = Backend()
    net = VirtioNet(MAC, be, clock)
    line = IrqLine()
    dev = VirtioPciTransport(net, mem, irq=line)
    broken = []
    dev.on_broken = broken.append
    return Driver(dev, mem), net, be, clock, line, broken


def test_identity_and_config(rig):
    drv, net, *_ = rig
    assert drv.dev.config_read(0, 4) == 0x10411AF4 and drv.dev.config_read(0x08, 4) >> 8 == 0x020000
    assert bytes(drv.dev.bar_read(0x2000 + i, 1) for i in range(6)) == MAC
    assert drv.dev.bar_read(0x2006, 2) == 1


def test_receive_waits_for_buffers(rig):
    drv, net, be, clock, line, _ = rig
    frame = MAC + MAC + b"\x08\x06" + bytes(range(42))
    be.sink(frame)
    clock.advance(0)                                   # no buffers yet: the frame waits
    assert drv.used(0) == [] and len(net.rx) == 1
    buf = drv.alloc(2048)
    head = drv.submit(0, [(buf, 2048, True)])
    assert drv.used(0) == [(head, HDR.size + len(frame))]
    assert drv.mem.read(buf + HDR.size, len(frame)) == frame and line.level


def test_transmit_with_checksum_offload(rig):
    drv, net, be, *_ = rig
    payload = b"hello" * 20
    src, dst = bytes([10, 0, 2, 15]), bytes([10, 0, 2, 2])
    udp = bytearray(struct.pack("!HHHH", 1000, 53, 8 + len(payload), 0) + payload)
    struct.pack_into("!H", udp, 6, ones_sum(src + dst + struct.pack("!HH", 17, len(udp))))
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)
    frame = MAC + MAC + b"\x08\x00" + ip + bytes(udp)
    hdr = HDR.pack(HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 6, 0)
    buf = drv.alloc(4096)
    drv.mem.write(buf, hdr + frame)
    drv.submit(1, [(buf, HDR.size, False), (buf + HDR.size, len(frame), False)])
    (sent,) = be.sent
    assert ones_sum(src + dst + struct.pack("!HH", 17, len(udp)) + sent[34:]) == 0xFFFF


def test_link_status_change_interrupts(rig):
    drv, net, be, clock, line, _ = rig
    drv.dev.bar_read(0x1000, 1)
    net.set_link(False)
    assert drv.dev.bar_read(0x2006, 2) == 0 and line.level
    assert drv.dev.bar_read(0x1000, 1) == 2


def test_hostile_buffers_and_rings(rig):
    drv, net, be, clock, line, broken = rig
    drv.submit(1, [(RAM + 0x1000, 100, False)])                 # outside RAM: returned unused
    assert be.sent == [] and len(drv.used(1)) == 1
    drv.submit(1, [(0x200000, 5, False)])                      # shorter than a header: dropped
    assert be.sent == [] and not broken
    st = drv.qs[1]
    drv.mem.write_u16(st["avail"] + 2, st["idx"] + 1000)      # avail index jumps by 1000 on 16 slots
    drv.dev.bar_write(0x3000 + 4, 2, 1)
    assert broken and drv.dev.status & 64                       # DEVICE_NEEDS_RESET, nothing raised
    be.sink(MAC + MAC + b"\x08\x06" + bytes(46))
    clock.advance(0)                                            # the broken device ignores new work
    assert be.sent == []


def test_transmit_gso_tcp_is_segmented_with_valid_checksums(rig):
    drv, net, be, *_ = rig
    src, dst = bytes([10, 0, 2, 15]), bytes([10, 0, 2, 2])
    payload = bytes(i & 0xFF for i in range(4000))
    tcp = bytearray(struct.pack("!HHIIBBHHH", 4000, 80, 77, 0, 5 << 4, 0x19, 500, 0, 0))
    # Linux leaves the pseudo-header sum over the whole super-packet's length in the field
    struct.pack_into("!H", tcp, 16, ones_sum(src + dst + struct.pack("!HH", 6, 20 + len(payload))))
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 9, 0x4000, 64, 6, 0, src, dst)
    frame = MAC + MAC + b"\x08\x00" + ip + bytes(tcp) + payload
    hdr = HDR.pack(HDR_F_NEEDS_CSUM, 1, 54, 1460, 34, 16, 0)            # GSO_TCPV4, MSS 1460
    buf = drv.alloc(8192)
    drv.mem.write(buf, hdr + frame)
    drv.submit(1, [(buf, HDR.size + len(frame), False)])
    assert [len(f) - 54 for f in be.sent] == [1460, 1460, 1080]
    for i, f in enumerate(be.sent):
        seg = f[34:]
        assert ones_sum(f[14:34]) == 0xFFFF
        assert ones_sum(src + dst + struct.pack("!HH", 6, len(seg)) + seg) == 0xFFFF
        assert struct.unpack_from("!I", seg, 4)[0] == 77 + 1460 * i
        assert bool(seg[13] & 0x01) == (i == 2)                          # FIN only on the last
