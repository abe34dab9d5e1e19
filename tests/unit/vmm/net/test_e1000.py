"""The e1000 model driven like Linux's e1000 driver: EEPROM and PHY at probe, rings, offloads,
link changes, and a hostile guest whose broken rings stop the NIC and nothing else."""

import struct

import pytest

from vmm.devices.base import IrqLine
from vmm.devices.net import e1000_regs as R
from vmm.devices.net.e1000 import E1000
from vmm.devices.net.e1000_phy import EEPROM_SUM
from vmm.devices.net.offload import ones_sum
from vmm.memory import GuestMemory
from vmm.tm import FakeClock

MAC = bytes.fromhex("080027aabbcc")
RAM = 16 << 20
TX_RING, RX_RING, BUFS = 0x10000, 0x20000, 0x100000
COUNT = 16


class Backend:
    def __init__(self):
        self.sent = []
        self.sink = None

    def attach(self, sink):
        self.sink = sink

    def send(self, frame):
        self.sent.append(frame)

    def close(self):
        pass


@pytest.fixture
def nic():
    mem = GuestMemory(RAM)
    clock = FakeClock()
    line = IrqLine()
    be = Backend()
    dev = E1000(mem, MAC, be, clock, irq=line)
    dev.config_write(0x04, 2, 0x7)               # I/O, memory, bus master
    broken = []
    dev.on_broken = broken.append
    return dev, mem, clock, line, be, broken


def w(dev, reg, value):
    dev.reg_write(reg, value)


def r(dev, reg):
    return dev.reg_read(reg)


def eeprom_read(dev, addr):
    """Microwire read by bit-banging EECD as e1000_read_eeprom does for the 82540."""
    w(dev, R.EECD, R.EECD_REQ)
    assert r(dev, R.EECD) & R.EECD_GNT
    base = R.EECD_REQ | R.EECD_CS

    def clock_bit(bit):
        di = R.EECD_DI if bit else 0
        w(dev, R.EECD, base | di)
        w(dev, R.EECD, base | di | R.EECD_SK)
        w(dev, R.EECD, base | di)
    w(dev, R.EECD, base)
    for i in range(2, -1, -1):
        clock_bit((0b110 >> i) & 1)
    for i in range(5, -1, -1):
        clock_bit((addr >> i) & 1)
    value = 0
    for _ in range(16):
        w(dev, R.EECD, base | R.EECD_SK)
        value = (value << 1) | (1 if r(dev, R.EECD) & R.EECD_DO else 0)
        w(dev, R.EECD, base)
    w(dev, R.EECD, R.EECD_REQ)
    return value


def mdic_read(dev, reg, phy=1):
    w(dev, R.MDIC, (R.MDIC_OP_READ << 26) | (phy << 21) | (reg << 16))
    v = r(dev, R.MDIC)
    assert v & R.MDIC_READY
    return v


def test_pci_identity_and_eeprom(nic):
    dev = nic[0]
    assert dev.config_read(0, 4) == 0x100E8086
    assert dev.config_read(0x2C, 4) == 0x001E8086
    words = [eeprom_read(dev, a) for a in range(64)]
    assert sum(words) & 0xFFFF == EEPROM_SUM
    assert b"".join(struct.pack("<H", x) for x in words[:3]) == MAC
    w(dev, R.EERD, (5 << 8) | 1)
    assert r(dev, R.EERD) >> 16 == words[5] and r(dev, R.EERD) & R.EERD_DONE


def test_phy_through_mdic(nic):
    dev = nic[0]
    assert mdic_read(dev, 2) & 0xFFFF == 0x0141 and mdic_read(dev, 3) & 0xFFFF == 0x0C20
    assert mdic_read(dev, 1) & 0x0004                  # link up
    assert mdic_read(dev, 1, phy=2) & R.MDIC_ERROR     # no PHY at address 2
    assert r(dev, R.STATUS) & R.STATUS_LU


def setup_rings(dev, mem, count=COUNT):
    for i in range(count):
        mem.write(RX_RING + 16 * i, struct.pack("<QQ", BUFS + 2048 * i, 0))
    w(dev, R.RDBAL, RX_RING)
    w(dev, R.RDLEN, 16 * count)
    w(dev, R.RDH, 0)
    w(dev, R.RDT, count - 1)
    w(dev, R.RCTL, R.RCTL_EN | R.RCTL_BAM | R.RCTL_SECRC)
    w(dev, R.TDBAL, TX_RING)
    w(dev, R.TDLEN, 16 * count)
    w(dev, R.TDH, 0)
    w(dev, R.TDT, 0)
    w(dev, R.TCTL, R.TCTL_EN)
    w(dev, R.IMS, R.ICR_RXT0 | R.ICR_TXDW | R.ICR_LSC)


def test_receive_into_guest_buffers(nic):
    dev, mem, clock, line, be, broken = nic
    setup_rings(dev, mem)
    frame = MAC + bytes.fromhex("525400123502") + b"\x08\x06" + bytes(range(46))
    be.sink(frame)
    be.sink(bytes.fromhex("0a0000000001") + MAC + b"\x08\x06" + bytes(46))   # not for us: filtered
    clock.advance(0)
    length, _, status = struct.unpack_from("<HHB", mem.read(RX_RING + 8, 5))
    assert status & R.RXD_STAT_DD and status & R.RXD_STAT_EOP and length == len(frame)
    assert mem.read(BUFS, len(frame)) == frame
    assert r(dev, R.RDH) == 1 and line.level
    assert r(dev, R.ICR) & R.ICR_RXT0 and not line.level
    assert dev.stats["rx_filtered"] == 1


def test_transmit_legacy_and_tso(nic):
    dev, mem, clock, line, be, broken = nic
    setup_rings(dev, mem)
    pkt = MAC + MAC + b"\x08\x06" + bytes(50)
    mem.write(BUFS, pkt)
    mem.write(TX_RING, struct.pack("<QHBBBBH", BUFS, len(pkt), 0, R.TXD_CMD_EOP | R.TXD_CMD_RS, 0, 0, 0))
    w(dev, R.TDT, 1)
    assert be.sent == [pkt]
    assert mem.read(TX_RING + 12, 1)[0] & R.TXD_STAT_DD and r(dev, R.TDH) == 1
    # TSO: context descriptor + one data descriptor with a 3000-byte TCP payload, MSS 1000
    ip_hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 7, 0x4000, 64, 6, 0, bytes([10, 0, 2, 15]),
                                   bytes([10, 0, 2, 2])))
    tcp_hdr = bytearray(struct.pack("!HHIIBBHHH", 1000, 80, 5000, 0, 5 << 4, 0x18, 1000, 0, 0))
    src, dst = bytes(ip_hdr[12:16]), bytes(ip_hdr[16:20])
    struct.pack_into("!H", tcp_hdr, 16, ones_sum(src + dst + b"\x00\x06"))   # pseudo header, no length
    payload = bytes(i & 0xFF for i in range(3000))
    big = MAC + MAC + b"\x08\x00" + bytes(ip_hdr) + bytes(tcp_hdr) + payload
    mem.write(BUFS + 0x1000, big)
    ctx_lower = 14 | (14 + 10) << 8 | (14 + 19) << 16
    ctx_upper = 34 | (34 + 16) << 8
    cmd = (R.TUCMD_TCP | R.TUCMD_IP | R.TUCMD_TSE | R.TXD_CMD_DEXT) << 24
    mem.write(TX_RING + 16, struct.pack("<IIII", ctx_lower, ctx_upper, cmd | 3000, (1000 << 16) | (54 << 8)))
    dcmd = (R.TXD_CMD_EOP | R.TXD_CMD_RS | R.TXD_CMD_DEXT | R.TXD_CMD_TSE) << 24 | R.TXD_DTYP_DATA << 20
    popts = (R.TXD_POPTS_IXSM | R.TXD_POPTS_TXSM) << 8
    mem.write(TX_RING + 32, struct.pack("<QII", BUFS + 0x1000, dcmd | len(big), popts))
    w(dev, R.TDT, 3)
    segs = be.sent[1:]
    assert [len(s) - 54 for s in segs] == [1000, 1000, 1000]
    for i, s in enumerate(segs):
        ip = s[14:34]
        assert ones_sum(ip) == 0xFFFF and struct.unpack_from("!H", ip, 2)[0] == 1040
        seq = struct.unpack_from("!I", s, 38)[0]
        assert seq == 5000 + 1000 * i and s[54:] == payload[1000 * i:1000 * (i + 1)]
        tcp = s[34:]
        assert ones_sum(src + dst + struct.pack("!HH", 6, len(tcp)) + tcp) == 0xFFFF
        assert (s[47] & 0x08 != 0) == (i == 2)          # PSH only on the last segment


def test_link_change_raises_lsc(nic):
    dev, mem, clock, line, be, broken = nic
    setup_rings(dev, mem)
    r(dev, R.ICR)
    dev.set_link(False)
    assert line.level and r(dev, R.ICR) & R.ICR_LSC
    assert not r(dev, R.STATUS) & R.STATUS_LU and not mdic_read(dev, 1) & 0x0004
    be.sink(MAC + MAC + b"\x08\x06" + bytes(46))          # frames while unplugged are lost
    clock.advance(0)
    assert r(dev, R.RDH) == 0
    dev.set_link(True)
    assert r(dev, R.ICR) & R.ICR_LSC and r(dev, R.STATUS) & R.STATUS_LU


@pytest.mark.parametrize("attack", ["ring_outside_ram", "tail_beyond_ring", "tx_buffer_outside",
                                    "rx_buffer_outside", "huge_length"])
def test_hostile_rings_stop_only_the_nic(nic, attack):
    dev, mem, clock, line, be, broken = nic
    setup_rings(dev, mem)
    if attack == "ring_outside_ram":
        w(dev, R.TDBAL, RAM - 0x40)
        w(dev, R.TDT, 1)
    elif attack == "tail_beyond_ring":
        w(dev, R.TDT, COUNT + 5)
    elif attack == "tx_buffer_outside":
        mem.write(TX_RING, struct.pack("<QHBBBBH", RAM + 0x1000, 100, 0, R.TXD_CMD_EOP, 0, 0, 0))
        w(dev, R.TDT, 1)
    elif attack == "rx_buffer_outside":
        mem.write(RX_RING, struct.pack("<QQ", (1 << 40), 0))
        be.sink(MAC + MAC + b"\x08\x06" + bytes(46))
        clock.advance(0)
    else:
        mem.write(TX_RING, struct.pack("<QII", BUFS, (R.TXD_CMD_DEXT << 24) | (1 << 20) | 0xFFFFF, 0))
        w(dev, R.TDT, 1)
    if attack == "huge_length":
        assert not broken and be.sent == []              # in RAM but too long: dropped, not sent
        return
    assert len(broken) == 1 and dev.broken
    be.sink(MAC + MAC + b"\x08\x06" + bytes(46))
    clock.advance(0)
    w(dev, R.TDT, 2)
    assert len(broken) == 1 and be.sent == []
    w(dev, R.CTRL, R.CTRL_RST)                           # the driver's reset revives it
    assert dev.broken is None
    setup_rings(dev, mem)
    pkt = MAC + MAC + b"\x08\x06" + bytes(50)
    mem.write(BUFS, pkt)
    mem.write(TX_RING, struct.pack("<QHBBBBH", BUFS, len(pkt), 0, R.TXD_CMD_EOP | R.TXD_CMD_RS, 0, 0, 0))
    w(dev, R.TDT, 1)
    assert be.sent == [pkt]


def test_saved_state_round_trip(nic):
    dev, mem, clock, line, be, broken = nic
    setup_rings(dev, mem)
    state = dev.get_state()
    other = E1000(mem, MAC, Backend(), clock, irq=IrqLine())
    other.set_state(state)
    assert other.reg_read(R.RDT) == COUNT - 1 and other.reg_read(R.RCTL) & R.RCTL_EN
    assert other.config_read(0x04, 2) & 0x4


def test_82543gc_phy_through_bit_banged_mdio():
    """The 82543GC has no MDIC: e1000_read_phy_reg_ex clocks MII frames through CTRL's pins."""
    dev = E1000(GuestMemory(RAM), MAC, Backend(), FakeClock(), irq=IrqLine(), chip="I82543GC")
    assert dev.config_read(0, 4) == 0x10048086
    base = R.CTRL_DEFAULT | R.CTRL_MDC_DIR

    def out_bits(value, n):
        for i in range(n - 1, -1, -1):
            d = base | R.CTRL_MDIO_DIR | (R.CTRL_MDIO if value >> i & 1 else 0)
            w(dev, R.CTRL, d)
            w(dev, R.CTRL, d | R.CTRL_MDC)
            w(dev, R.CTRL, d)

    def clock_in():
        w(dev, R.CTRL, base | R.CTRL_MDC)
        bit = 1 if r(dev, R.CTRL) & R.CTRL_MDIO else 0
        w(dev, R.CTRL, base)
        return bit

    def read(reg, phy=1):
        out_bits(0xFFFFFFFF, 32)
        out_bits(reg | phy << 5 | 0b10 << 10 | 0b01 << 12, 14)
        w(dev, R.CTRL, base)
        clock_in()                                   # turnaround
        value = 0
        for _ in range(16):
            value = value << 1 | clock_in()
        clock_in()
        return value

    def write(reg, data, phy=1):
        out_bits(0xFFFFFFFF, 32)
        out_bits(data | 0b10 << 16 | reg << 18 | phy << 23 | 0b01 << 28 | 0b01 << 30, 32)

    assert (read(2), read(3)) == (0x0141, 0x0C50)    # M88E1000 (E), the 82543GC's PHY
    assert read(1) & 0x0004
    write(4, 0x0DE1)
    assert read(4) == 0x0DE1
    assert read(2, phy=3) == 0xFFFF                  # nobody at address 3


def test_interrupt_throttling_register_spaces_interrupts(nic):
    dev, mem, clock, line, be, broken = nic
    setup_rings(dev, mem)
    w(dev, R.ITR, 1000)                              # at most one interrupt per 256 us
    w(dev, R.ICS, R.ICR_TXDW)
    assert line.level
    r(dev, R.ICR)
    assert not line.level
    w(dev, R.ICS, R.ICR_TXDW)
    assert not line.level                            # too soon: held back
    clock.advance(200_000)
    assert not line.level
    clock.advance(60_000)
    assert line.level
