"""Intel PRO/1000 MT Desktop (82540EM) and its siblings 82543GC / 82545EM: VirtualBox's default NIC.

A PCI function with the MAC's registers in a 128 KiB memory BAR and the IOADDR/IODATA window
in an 8-byte I/O BAR.  The guest's descriptor rings live in guest RAM: legacy and extended
transmit descriptors (context descriptors for checksum offload and TCP segmentation), legacy
receive descriptors.  Frames go to and come from a backend through vmm.net's frame interface;
received frames wait in a bounded queue until the guest gives buffers.

The guest is hostile: a ring base, length or index that does not make sense, or a buffer
outside guest RAM, stops this NIC (`broken` holds the reason and `on_broken` tells the VM
log) until the guest resets it (CTRL.RST) — the rest of the VM runs on.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from vmm.devices.base import IrqLine
from vmm.devices.net import e1000_regs as R
from vmm.devices.net.e1000_phy import Eeprom, MdioBitBang, Phy, eeprom_image
from vmm.devices.net.offload import checksum, insert_checksum, l4_kind, segment_tcp
from vmm.devices.pci import BAR_IO, BAR_MEM32, PciFunction, PciFunctionState
from vmm.memory import GuestMemory
from vmm.net.frame import NetBackend, RxQueue
from vmm.tm import Clock

MAX_TX_PACKET = 65536 + 256        # a TSO packet's header plus 64 KiB of payload
MIN_FRAME = 60
_DESC = struct.Struct("<QQ")
_BROADCAST = b"\xff" * 6


class RingBroken(Exception):
    """The guest's ring registers or descriptors point where they must not."""


@dataclass
class TxContext:
    ipcss: int = 0
    ipcso: int = 0
    ipcse: int = 0
    tucss: int = 0
    tucso: int = 0
    tucse: int = 0
    paylen: int = 0
    tucmd: int = 0
    hdr_len: int = 0
    mss: int = 0


@dataclass
class E1000State:
    pci: PciFunctionState
    regs: bytes
    phy: list
    eecd_old: int
    context: TxContext
    link_up: bool
    broken: str | None


class _Mmio:
    __slots__ = ("d",)

    def __init__(self, dev: E1000):
        self.d = dev

    def read(self, offset: int, size: int) -> int:
        word = self.d.reg_read(offset & ~3)
        return (word >> (8 * (offset & 3))) & ((1 << (8 * size)) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 4 and not offset & 3:
            self.d.reg_write(offset, value)
            return
        shift = 8 * (offset & 3)
        mask = ((1 << (8 * size)) - 1) << shift
        cur = self.d.regs[(offset & ~3) >> 2]
        self.d.reg_write(offset & ~3, (cur & ~mask) | ((value << shift) & mask))


class _Io:
    """IOADDR (offset 0) selects a register, IODATA (offset 4) reads or writes it."""

    __slots__ = ("d", "addr")

    def __init__(self, dev: E1000):
        self.d = dev
        self.addr = 0

    def read(self, offset: int, size: int) -> int:
        if offset == 0:
            return self.addr
        if offset == 4 and self.addr < R.MMIO_SIZE:
            return self.d.reg_read(self.addr & ~3)
        return (1 << (8 * size)) - 1

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            self.addr = value & (R.MMIO_SIZE - 1) & ~3
        elif offset == 4:
            self.d.reg_write(self.addr, value)


class E1000(PciFunction):
    def __init__(self, memory: GuestMemory, mac: bytes, backend: NetBackend, clock: Clock,
                 irq: IrqLine | None = None, chip: str = "I82540EM", link_up: bool = True,
                 wake: Callable[[], None] | None = None, tap: Callable[[bytes], None] | None = None):
        if chip not in R.CHIPS:
            raise ValueError(f"unknown e1000 chip {chip}")
        if len(mac) != 6:
            raise ValueError("a MAC address has 6 bytes")
        device_id, sub_vendor, sub_id, phy_id = R.CHIPS[chip]
        super().__init__(0x8086, device_id, 0x020000, revision=0, subsystem_vendor_id=sub_vendor,
                         subsystem_id=sub_id, interrupt_pin=1, irq=irq)
        self.memory = memory
        self.mac = bytes(mac)
        self.chip = chip
        self.backend = backend
        self.tap = tap
        self._clock = clock
        self._wake = wake
        self.add_bar(0, R.MMIO_SIZE, BAR_MEM32, _Mmio(self))
        self.add_bar(2, R.IO_SIZE, BAR_IO, _Io(self))
        self.eeprom = Eeprom(eeprom_image(self.mac, device_id, sub_vendor, sub_id))
        self.phy = Phy(phy_id, link_up)
        self.mdio = MdioBitBang(self.phy)      # the 82543GC's PHY access
        self.link_up = link_up
        self.broken: str | None = None
        self.on_broken: Callable[[str], None] | None = None
        self.rx = RxQueue(self._frame_arrived)
        self._rx_timer = clock.new_timer(self._rx_pump)
        self._itr_timer = clock.new_timer(self._update_irq)
        self._next_irq_ns = 0
        self.stats = {"rx_frames": 0, "tx_frames": 0, "rx_filtered": 0, "tx_dropped": 0}
        self._tx_packet = bytearray()
        self._tx_drop = False
        self._tx_popts = 0
        self._tx_tse = False
        self._legacy_css = self._legacy_cso = -1
        self._reset_mac()
        backend.attach(self._from_backend)

    # --- reset and state ---------------------------------------------------------------------------
    def _reset_mac(self) -> None:
        self.regs = [0] * (R.MMIO_SIZE // 4)
        self._rset(R.CTRL, R.CTRL_DEFAULT)
        self._rset(R.EECD, R.EECD_DEFAULT)
        self._rset(R.LEDCTL, 0x07068302)
        self._rset(R.PBA, 0x00100030)
        self._rset(R.RXCSUM, R.RXCSUM_IPOFL)
        self._rset(R.RAL0, int.from_bytes(self.mac[:4], "little"))
        self._rset(R.RAH0, int.from_bytes(self.mac[4:], "little") | R.RAH_AV)
        self.context = TxContext()
        self._tx_packet = bytearray()
        self._tx_drop = False
        self.eeprom.reset_protocol()
        self.mdio.reset()
        self.rx.clear()
        self._update_irq()

    def _rget(self, reg: int) -> int:
        return self.regs[reg >> 2]

    def _rset(self, reg: int, value: int) -> None:
        self.regs[reg >> 2] = value & 0xFFFF_FFFF

    def get_state(self) -> E1000State:
        return E1000State(super().get_state(), struct.pack(f"<{len(self.regs)}I", *self.regs),
                          list(self.phy.regs), self._rget(R.EECD), TxContext(**vars(self.context)),
                          self.link_up, self.broken)

    def set_state(self, state: E1000State) -> None:
        self.regs = list(struct.unpack(f"<{R.MMIO_SIZE // 4}I", state.regs))
        self.phy.regs = list(state.phy)
        self.context = TxContext(**vars(state.context))
        self.broken = state.broken
        self._tx_packet = bytearray()
        self.eeprom.reset_protocol()
        self.rx.clear()
        super().set_state(state.pci)
        self._update_irq()

    # --- link (device thread) ------------------------------------------------------------------------
    def set_link(self, up: bool) -> None:
        if up == self.link_up:
            return
        self.link_up = self.phy.link_up = up
        if not up:
            self.rx.clear()
        self._raise(R.ICR_LSC)

    # --- registers -------------------------------------------------------------------------------------
    def reg_read(self, reg: int) -> int:
        if reg == R.STATUS:
            v = R.STATUS_FD | R.STATUS_SPEED_1000 | (R.STATUS_LU if self.link_up else 0)
            return v | (1 << 19 if self._rget(R.CTRL) & R.CTRL_SLU else 0)
        if reg == R.CTRL:
            v = self._rget(R.CTRL)
            if self.mdio.state == MdioBitBang.READ and not v & R.CTRL_MDIO_DIR:
                v = (v & ~R.CTRL_MDIO) | (R.CTRL_MDIO if self.mdio.out else 0)
            return v
        if reg == R.ICR:
            v = self._rget(R.ICR)
            self._rset(R.ICR, 0)
            self._update_irq()
            return v
        if reg == R.EECD:
            v = self._rget(R.EECD) & ~(R.EECD_DO | R.EECD_GNT)
            if v & R.EECD_REQ:
                v |= R.EECD_GNT
            return v | (R.EECD_DO if self.eeprom.data_out() else 0)
        if R.STATS_START <= reg < R.STATS_END:
            v = self._rget(reg)
            self._rset(reg, 0)                  # statistics clear on read
            return v
        if reg == R.IMC or reg == R.ICS:
            return 0
        if 0 <= reg < R.MMIO_SIZE:
            return self.regs[reg >> 2]
        return 0

    def reg_write(self, reg: int, value: int) -> None:
        value &= 0xFFFF_FFFF
        if reg == R.CTRL:
            if value & R.CTRL_RST:
                self._reset_mac()
                self.broken = None             # a software reset gives the guest a fresh start
                return
            old = self._rget(R.CTRL)
            self._rset(reg, value & ~R.CTRL_PHY_RST)
            if value & R.CTRL_MDC and not old & R.CTRL_MDC and value & R.CTRL_MDC_DIR:
                self.mdio.clock(bool(value & R.CTRL_MDIO) if value & R.CTRL_MDIO_DIR else None)
        elif reg == R.EECD:
            old = self._rget(R.EECD)
            keep = R.EECD_SK | R.EECD_CS | R.EECD_DI | R.EECD_REQ
            new = (old & ~keep) | (value & keep)
            self.eeprom.clock(old, new, R.EECD_CS, R.EECD_SK, R.EECD_DI)
            self._rset(reg, new)
        elif reg == R.EERD:
            if value & R.EERD_START:
                addr = (value >> 8) & 0xFF
                self._rset(reg, (self.eeprom.read_word(addr) << 16) | (addr << 8) | R.EERD_DONE)
        elif reg == R.MDIC:
            self._mdic(value)
        elif reg == R.ICR:
            self._rset(R.ICR, self._rget(R.ICR) & ~value)
            self._update_irq()
        elif reg == R.ICS:
            self._raise(value)
        elif reg == R.IMS:
            self._rset(R.IMS, self._rget(R.IMS) | value)
            self._update_irq()
        elif reg == R.IMC:
            self._rset(R.IMS, self._rget(R.IMS) & ~value)
            self._update_irq()
        elif reg == R.RCTL:
            self._rset(reg, value)
            self._schedule_rx()
        elif reg == R.RDT:
            self._rset(reg, value & 0xFFFF)
            self._schedule_rx()
        elif reg in (R.RDH, R.TDH):
            self._rset(reg, value & 0xFFFF)
        elif reg in (R.RDLEN, R.TDLEN):
            self._rset(reg, value & 0xFFF80)
        elif reg == R.TDT:
            self._rset(reg, value & 0xFFFF)
            self._transmit()
        elif reg == R.STATUS or R.STATS_START <= reg < R.STATS_END:
            pass
        elif 0 <= reg < R.MMIO_SIZE:
            self._rset(reg, value)

    def _mdic(self, value: int) -> None:
        op = (value >> 26) & 3
        phy_addr = (value >> 21) & 0x1F
        reg = (value >> 16) & 0x1F
        out = value & ~(R.MDIC_READY | R.MDIC_ERROR) & 0x3FFF_FFFF | (value & R.MDIC_INT_EN)
        if phy_addr != 1 or op not in (R.MDIC_OP_READ, R.MDIC_OP_WRITE):
            out |= R.MDIC_ERROR
        elif op == R.MDIC_OP_READ:
            out = (out & ~R.MDIC_DATA_MASK) | self.phy.read(reg)
        else:
            self.phy.write(reg, value & R.MDIC_DATA_MASK)
        self._rset(R.MDIC, out | R.MDIC_READY)
        if value & R.MDIC_INT_EN:
            self._raise(R.ICR_MDAC)

    # --- interrupts ----------------------------------------------------------------------------------
    def _raise(self, causes: int) -> None:
        self._rset(R.ICR, self._rget(R.ICR) | causes)
        self._update_irq()

    def _update_irq(self) -> None:
        """INTx follows ICR & IMS, no more often than the throttling register (ITR, 256 ns units) allows."""
        if not self._rget(R.ICR) & self._rget(R.IMS):
            self.set_intx(False)
            return
        if self._intx_request:
            return
        interval = (self._rget(R.ITR) & 0xFFFF) * 256
        now = self._clock.now_ns()
        if interval and now < self._next_irq_ns:
            if not self._itr_timer.armed:
                self._itr_timer.arm(self._next_irq_ns)
            return
        self._next_irq_ns = now + interval
        self.set_intx(True)

    # --- rings ---------------------------------------------------------------------------------------
    def _ring(self, bal: int, bah: int, dlen: int, head: int, tail: int) -> tuple[int, int, int, int]:
        base = self._rget(bal) | self._rget(bah) << 32
        length = self._rget(dlen)
        count = length // 16
        h, t = self._rget(head), self._rget(tail)
        if not count or base & 0xF or not self.memory.contains(base, length):
            raise RingBroken(f"descriptor ring {base:#x}+{length:#x} is not in guest RAM")
        if h >= count or t >= count:
            raise RingBroken(f"ring index head {h} / tail {t} beyond {count} descriptors")
        return base, count, h, t

    def _stop(self, why: str) -> None:
        if self.broken is None:
            self.broken = why
            self.rx.clear()
            if self.on_broken is not None:
                self.on_broken(why)

    # --- transmit ------------------------------------------------------------------------------------
    def _transmit(self) -> None:
        if self.broken or not self._rget(R.TCTL) & R.TCTL_EN or not self.bus_master:
            return
        try:
            base, count, head, tail = self._ring(R.TDBAL, R.TDBAH, R.TDLEN, R.TDH, R.TDT)
            done = 0
            while head != tail:
                addr = base + 16 * head
                buf, lower_upper = _DESC.unpack(self.memory.read(addr, 16))
                lower, upper = lower_upper & 0xFFFF_FFFF, lower_upper >> 32
                cmd = lower >> 24
                if self._tx_descriptor(buf, lower, upper) and cmd & R.TXD_CMD_RS:
                    self.memory.write(addr + 12, bytes([(upper & 0xFF) | R.TXD_STAT_DD]))
                head = (head + 1) % count
                self._rset(R.TDH, head)
                done += 1
        except RingBroken as e:
            self._stop(f"transmit ring: {e}")
            return
        if done:
            self._raise(R.ICR_TXDW | R.ICR_TXQE)

    def _tx_descriptor(self, buf: int, lower: int, upper: int) -> bool:
        """One descriptor; True if it carries a status byte to write back (data descriptors)."""
        cmd = lower >> 24
        if cmd & R.TXD_CMD_DEXT:
            dtyp = (lower >> 20) & 0xF
            if dtyp == R.TXD_DTYP_CONTEXT:
                c = self.context
                c.ipcss, c.ipcso, c.ipcse = buf & 0xFF, (buf >> 8) & 0xFF, (buf >> 16) & 0xFFFF
                c.tucss, c.tucso, c.tucse = (buf >> 32) & 0xFF, (buf >> 40) & 0xFF, (buf >> 48) & 0xFFFF
                c.paylen, c.tucmd = lower & 0xFFFFF, cmd
                c.hdr_len, c.mss = (upper >> 8) & 0xFF, upper >> 16
                return True
            if dtyp != R.TXD_DTYP_DATA:
                return True
            length = lower & 0xFFFFF
            if not self._tx_packet:
                self._tx_popts = (upper >> 8) & 0xFF
                self._tx_tse = bool(cmd & R.TXD_CMD_TSE)
        else:
            length = lower & 0xFFFF
            if not self._tx_packet:
                self._tx_popts = 0
                self._tx_tse = False
                self._legacy_css, self._legacy_cso = (upper >> 8) & 0xFF, (lower >> 16) & 0xFF
                if not cmd & R.TXD_CMD_IC:
                    self._legacy_cso = -1
        if length:
            if not self.memory.contains(buf, length):
                raise RingBroken(f"transmit buffer {buf:#x}+{length:#x} is outside guest RAM")
            if len(self._tx_packet) + length > MAX_TX_PACKET:
                self._tx_drop = True
            elif not self._tx_drop:
                self._tx_packet += self.memory.view(buf, length)
        if cmd & R.TXD_CMD_EOP:
            packet, drop = self._tx_packet, self._tx_drop
            self._tx_packet, self._tx_drop = bytearray(), False
            if drop or not packet:
                self.stats["tx_dropped"] += 1
            else:
                self._send(packet, cmd & R.TXD_CMD_DEXT)
        return True

    def _send(self, packet: bytearray, extended: int) -> None:
        c = self.context
        if extended and self._tx_tse:
            mss = c.mss
            if self.tap is None and getattr(self.backend, "accepts_large_frames", False):
                mss = max(mss, len(packet) - c.hdr_len)      # one segment: the NAT engine takes it whole
            frames = segment_tcp(bytes(packet), c.hdr_len, mss, c.ipcss, c.tucss,
                                 ipv4=bool(c.tucmd & R.TUCMD_IP), udp=not c.tucmd & R.TUCMD_TCP)
        else:
            if extended:
                if self._tx_popts & R.TXD_POPTS_IXSM and c.ipcso + 2 <= len(packet):
                    struct.pack_into("<H", packet, c.ipcso, 0)
                    end = c.ipcse + 1 if c.ipcse else len(packet)
                    if c.ipcss < end <= len(packet):
                        struct.pack_into("!H", packet, c.ipcso, checksum(memoryview(packet)[c.ipcss:end]))
                if self._tx_popts & R.TXD_POPTS_TXSM:
                    insert_checksum(packet, c.tucss, c.tucso, c.tucse)
            elif self._legacy_cso >= 0:
                insert_checksum(packet, self._legacy_css, self._legacy_cso)
            frames = [bytes(packet)]
        if not self.link_up:
            return
        for f in frames:
            self.stats["tx_frames"] += 1
            self._count(R.GPTC, R.TPT, R.GOTCL, len(f))
            if self.tap is not None:
                self.tap(f)
            self.backend.send(f)

    def _count(self, packets: int, total: int, octets_low: int, n: int) -> None:
        self._rset(packets, self._rget(packets) + 1)
        self._rset(total, self._rget(total) + 1)
        low = self._rget(octets_low) + n
        self._rset(octets_low, low)
        if low >> 32:
            self._rset(octets_low + 4, self._rget(octets_low + 4) + 1)

    # --- receive -------------------------------------------------------------------------------------
    def _from_backend(self, frame: bytes) -> None:
        """Backend thread."""
        if self.link_up and not self.broken:
            self.rx.put(frame)

    def _frame_arrived(self) -> None:
        """Backend thread: one wake-up per batch (the timer stays armed until the device thread runs)."""
        if self._schedule_rx() and self._wake is not None:
            self._wake()

    def _schedule_rx(self) -> bool:
        if len(self.rx) and not self._rx_timer.armed:
            self._rx_timer.arm(self._clock.now_ns())
            return True
        return False

    def _accept(self, frame: bytes) -> bool:
        rctl = self._rget(R.RCTL)
        dst = frame[:6]
        if rctl & R.RCTL_UPE:
            return True
        if dst == _BROADCAST:
            return bool(rctl & R.RCTL_BAM)
        if dst[0] & 1:
            return True if rctl & R.RCTL_MPE else self._multicast_hit(dst)
        for i in range(16):
            high = self._rget(R.RAH0 + 8 * i)
            if high & R.RAH_AV and dst == (self._rget(R.RAL0 + 8 * i).to_bytes(4, "little")
                                           + (high & 0xFFFF).to_bytes(2, "little")):
                return True
        return False

    def _multicast_hit(self, dst: bytes) -> bool:
        shift = (4, 3, 2, 0)[(self._rget(R.RCTL) >> 12) & 3]
        index = ((dst[4] >> shift) | (dst[5] << (8 - shift))) & 0xFFF
        return bool(self._rget(R.MTA + 4 * (index >> 5)) >> (index & 31) & 1)

    def _buffer_size(self) -> int:
        rctl = self._rget(R.RCTL)
        size = (2048, 1024, 512, 256)[(rctl >> R.RCTL_BSIZE_SHIFT) & 3]
        return size * 16 if rctl & R.RCTL_BSEX and size != 2048 else size

    def _rx_pump(self) -> None:
        """Device thread: move queued frames into the guest's receive descriptors."""
        if self.broken or not self._rget(R.RCTL) & R.RCTL_EN or not self.bus_master:
            return
        delivered = 0
        try:
            while (frame := self.rx.peek()) is not None:
                if not self._accept(frame):
                    self.rx.pop()
                    self.stats["rx_filtered"] += 1
                    continue
                if not self._deliver(frame):
                    break
                self.rx.pop()
                delivered += 1
        except RingBroken as e:
            self._stop(f"receive ring: {e}")
            return
        if delivered:
            causes = R.ICR_RXT0
            base, count, head, tail = self._ring(R.RDBAL, R.RDBAH, R.RDLEN, R.RDH, R.RDT)
            free = (tail - head) % count
            if free <= count >> (1 + ((self._rget(R.RCTL) >> R.RCTL_RDMTS_SHIFT) & 3)):
                causes |= R.ICR_RXDMT0
            self._raise(causes)

    def _deliver(self, frame: bytes) -> bool:
        base, count, head, tail = self._ring(R.RDBAL, R.RDBAH, R.RDLEN, R.RDH, R.RDT)
        rctl = self._rget(R.RCTL)
        data = frame if len(frame) >= MIN_FRAME else frame + bytes(MIN_FRAME - len(frame))
        if not rctl & R.RCTL_SECRC:
            data = data + zlib.crc32(data).to_bytes(4, "little")
        size = self._buffer_size()
        needed = -(-len(data) // size)
        if (tail - head) % count < needed:
            return False                    # wait for the guest to give buffers
        status_csum = 0
        kind = l4_kind(frame)
        if kind is not None and self._rget(R.RXCSUM) & R.RXCSUM_TUOFL:
            status_csum = R.RXD_STAT_TCPCS | (R.RXD_STAT_IPCS if self._rget(R.RXCSUM) & R.RXCSUM_IPOFL else 0)
        elif kind is None:
            status_csum = R.RXD_STAT_IXSM
        pos = 0
        for i in range(needed):
            addr = base + 16 * head
            buf = int.from_bytes(self.memory.read(addr, 8), "little")
            chunk = data[pos:pos + size]
            if not self.memory.contains(buf, len(chunk)):
                raise RingBroken(f"receive buffer {buf:#x}+{len(chunk):#x} is outside guest RAM")
            self.memory.write(buf, chunk)
            pos += len(chunk)
            last = i == needed - 1
            status = R.RXD_STAT_DD | ((R.RXD_STAT_EOP | status_csum) if last else 0)
            self.memory.write(addr + 8, struct.pack("<HHBBH", len(chunk), 0, status, 0, 0))
            head = (head + 1) % count
        self._rset(R.RDH, head)
        self.stats["rx_frames"] += 1
        self._count(R.GPRC, R.TPR, R.GORCL, len(data))
        if self.tap is not None:
            self.tap(frame)
        return True
