"""One IDE channel: the ATA task-file registers, two device positions (master and slave) and
the PIO and DMA protocols that move data between the guest and an ATA disk or an ATAPI drive.

Register offsets 0..7 are the command block (0x1F0.. / 0x170..), `write_control` and
`read_alt_status` the control block (0x3F6 / 0x376).  The ATA command itself runs on the
disk's `AtaDisk` (shared with AHCI); this module adds what the parallel interface needs:
CHS addressing, the DRQ block loop of PIO (READ/WRITE SECTORS and MULTIPLE), the PACKET
protocol with its byte-count limit, software reset and device signatures, and a DMA request
that the bus master (`dma_engine`, the controller's BMIDE registers) completes once the guest
starts it.  Everything completes synchronously; a command the device cannot run, a guest
register sequence out of order or an unusable PRD table ends in ERR/ABRT status or an ATAPI
CHECK CONDITION, never in a host exception.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from vmm.devices.ata_disk import ER_ABRT, ER_IDNF, ER_UNC, ST_BSY, ST_DRDY, ST_DRQ, ST_DSC, ST_ERR, AtaDisk
from vmm.devices.ata_disk import AtaTaskfile as _Tf
from vmm.devices.atapi import AtapiDrive, ScsiError, ScsiResult
from vmm.devices.base import IrqLine

SECTOR = 512
PACKET_SIZE = 12
MAX_MULTIPLE = 16

# Command block register offsets
REG_DATA, REG_ERROR, REG_COUNT, REG_LBAL, REG_LBAM, REG_LBAH, REG_DEVICE, REG_STATUS = range(8)
# Device control register bits
CTL_NIEN, CTL_SRST, CTL_HOB = 0x02, 0x04, 0x80
DEV_SLAVE, DEV_LBA = 0x10, 0x40
# ATAPI interrupt reason (sector count register)
IR_COD, IR_IO = 0x01, 0x02

STATUS_READY = ST_DRDY | ST_DSC
ATAPI_SIGNATURE = (0x14, 0xEB)
HARDWARE_ERROR, ASC_INTERNAL_FAILURE = 0x4, (0x44, 0x00)

PIO_READS = {0x20: False, 0x21: False, 0x24: True, 0xC4: False, 0x29: True}     # opcode -> lba48
PIO_WRITES = {0x30: False, 0x31: False, 0x34: True, 0xC5: False, 0x39: True, 0xCE: True}
MULTIPLE = {0xC4, 0x29, 0xC5, 0x39, 0xCE}
DMA_READS = {0xC8: False, 0xC9: False, 0x25: True}
DMA_WRITES = {0xCA: False, 0xCB: False, 0x35: True, 0x3D: True}
VERIFY = {0x40: False, 0x41: False, 0x42: True}
# power states, seek, recalibrate
NO_DATA_OK = {0xE0, 0xE1, 0xE2, 0xE3, 0xE6, 0x70} | set(range(0x10, 0x20))


class DmaEngine(Protocol):
    """What a channel needs from its bus master: the guest's PRD table as memory views."""

    started: bool

    def dma_views(self, length: int) -> tuple[list[memoryview], str]:
        """Views covering `length` bytes; status "ok", "short" (table ends first) or "fault"."""

    def dma_done(self, status: str) -> None:
        """The transfer ended: update the bus master status (active, error)."""


@dataclass
class IdeDeviceState:
    status: int = 0
    error: int = 0
    multiple: int = 0
    heads: int = 16
    spt: int = 63
    xfer_mode: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class IdeChannelState:
    regs: list[int] = field(default_factory=lambda: [0] * 8)     # features, count, lbal, lbam, lbah, device
    hob: list[int] = field(default_factory=lambda: [0] * 8)
    control: int = 0
    irq_pending: bool = False
    in_reset: bool = False
    devices: list[IdeDeviceState] = field(default_factory=lambda: [IdeDeviceState(), IdeDeviceState()])
    mode: str = ""                                     # "", "pio_in", "pio_out", "packet", "dma"
    buf: bytes = b""
    pos: int = 0
    xfer: dict = field(default_factory=dict)


def pata_identify(raw: bytes, multiple: int, xfer_mode: int) -> bytes:
    """AtaDisk's IDENTIFY DEVICE data as a parallel-ATA disk reports it."""
    w = list(struct.unpack("<256H", raw))
    w[47] = 0x8000 | MAX_MULTIPLE
    w[59] = (0x0100 | multiple) if multiple else 0
    w[75] = w[76] = w[77] = w[78] = w[79] = 0          # no NCQ, no SATA capabilities
    w[63], w[88] = _dma_words(xfer_mode)
    w[93] = 0x6001                                     # 80-conductor cable, device 0 passed diagnostics
    out = bytearray(struct.pack("<256H", *w))
    out[511] = (-sum(out[:511])) & 0xFF
    return bytes(out)


def _dma_words(xfer_mode: int) -> tuple[int, int]:
    mw, udma = 0x0007, 0x003F
    if xfer_mode >> 3 == 4:                            # multiword DMA selected
        mw |= 1 << (8 + (xfer_mode & 7))
    elif xfer_mode >> 3 == 8:                          # Ultra DMA selected
        udma |= 1 << (8 + (xfer_mode & 7))
    return mw, udma


def _ata_string(text: str, length: int) -> bytes:
    raw = text.encode("ascii", "replace")[:length].ljust(length)
    return b"".join(raw[i + 1:i + 2] + raw[i:i + 1] for i in range(0, length, 2))


def atapi_identify(serial: str, xfer_mode: int) -> bytes:
    w = [0] * 256
    w[0] = 0x85C0                                      # ATAPI, CD-ROM, removable, 50 us DRQ, 12-byte packets
    w[49] = 0x0B00                                     # IORDY, LBA, DMA
    w[53] = 0x0006                                     # words 64-70 and 88 valid
    w[63], w[88] = _dma_words(xfer_mode)
    w[64] = 0x0003                                     # PIO 3 and 4
    w[65] = w[66] = w[67] = w[68] = 120
    w[71], w[72] = 30, 30
    w[80] = 0x007E                                     # ATA/ATAPI-1 .. 6
    w[82] = 0x4214                                     # NOP, DEVICE RESET, PACKET
    w[83] = w[84] = w[87] = 0x4000
    w[85] = 0x4214
    w[93] = 0x6001
    raw = bytearray(struct.pack("<256H", *w))
    raw[20:40] = _ata_string(serial, 20)
    raw[46:54] = _ata_string("1.0", 8)
    raw[54:94] = _ata_string("VBOX CD-ROM", 40)
    return bytes(raw)


class IdeChannel:
    """`devices[0]`/`devices[1]`: AtaDisk, AtapiDrive or None; `irq`: IRQ 14 or 15."""

    def __init__(self, devices: list[AtaDisk | AtapiDrive | None], irq: IrqLine | None = None,
                 serials: tuple[str, str] = ("", ""), on_irq: Callable[[], None] | None = None):
        if len(devices) != 2:
            raise ValueError("an IDE channel has a master and a slave position")
        self.devices = list(devices)
        self.irq = irq if irq is not None else IrqLine()
        self.serials = serials
        self.on_irq = on_irq
        self.dma_engine: DmaEngine | None = None
        self.s = IdeChannelState()
        self._result: ScsiResult | None = None             # the ATAPI command moving data
        self.power_on()

    # --- helpers ---------------------------------------------------------------------------------
    @property
    def sel(self) -> int:
        return 1 if self.s.regs[REG_DEVICE] & DEV_SLAVE else 0

    @property
    def dev(self):
        return self.devices[self.sel]

    @property
    def ds(self) -> IdeDeviceState:
        return self.s.devices[self.sel]

    def _present(self) -> bool:
        return self.dev is not None

    def power_on(self) -> None:
        self.s = IdeChannelState()
        self._result = None
        self._signatures()
        self._update_irq()

    def _signatures(self) -> None:
        """After reset or EXECUTE DEVICE DIAGNOSTIC: each device's signature, master selected."""
        r = self.s.regs
        r[REG_COUNT], r[REG_LBAL], r[REG_DEVICE] = 1, 1, 0
        r[REG_LBAM], r[REG_LBAH] = ATAPI_SIGNATURE if isinstance(self.devices[0], AtapiDrive) else (0, 0)
        for i, d in enumerate(self.devices):
            st = self.s.devices[i]
            st.error = 0x01
            st.status = 0 if d is None or isinstance(d, AtapiDrive) else STATUS_READY
        self.s.mode, self.s.buf, self.s.pos, self.s.xfer = "", b"", 0, {}
        self._result = None

    def _set_signature_regs(self) -> None:
        r = self.s.regs
        r[REG_COUNT], r[REG_LBAL] = 1, 1
        r[REG_LBAM], r[REG_LBAH] = ATAPI_SIGNATURE if isinstance(self.dev, AtapiDrive) else (0, 0)

    def _raise_irq(self) -> None:
        self.s.irq_pending = True
        if self.on_irq is not None:
            self.on_irq()
        self._update_irq()

    def _update_irq(self) -> None:
        self.irq.set_level(self.s.irq_pending and not self.s.control & CTL_NIEN)

    # --- registers ---------------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if offset == REG_DATA:
            return self._data_read(size)
        if not any(d is not None for d in self.devices):
            return 0xFF                                # nothing on the cable: the bus floats
        if not self._present():
            return 0                                   # absent slave: the master answers 0 for it
        if offset == REG_STATUS:
            self.s.irq_pending = False
            self._update_irq()
            return self.ds.status
        if offset == REG_ERROR:
            return self.s.hob[REG_ERROR] if self.s.control & CTL_HOB else self.ds.error
        if offset == REG_DEVICE:
            return self.s.regs[REG_DEVICE] | 0xA0
        src = self.s.hob if self.s.control & CTL_HOB else self.s.regs
        return src[offset]

    def read_alt_status(self) -> int:
        if not any(d is not None for d in self.devices):
            return 0xFF
        return self.ds.status if self._present() else 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == REG_DATA:
            self._data_write(size, value)
            return
        value &= 0xFF
        self.s.control &= ~CTL_HOB
        if offset == REG_STATUS:
            self._command(value)
            return
        if offset != REG_DEVICE:
            self.s.hob[offset] = self.s.regs[offset]
        self.s.regs[offset] = value

    def write_control(self, value: int) -> None:
        old = self.s.control
        self.s.control = value & (CTL_NIEN | CTL_SRST | CTL_HOB)
        if value & CTL_SRST and not old & CTL_SRST:
            self.s.in_reset = True
            self.s.mode, self._result = "", None
            for st in self.s.devices:
                st.status = ST_BSY
        elif not value & CTL_SRST and self.s.in_reset:
            self.s.in_reset = False
            self.s.irq_pending = False
            self._signatures()
        self._update_irq()

    # --- PIO data port -----------------------------------------------------------------------------
    def _data_read(self, size: int) -> int:
        s = self.s
        if s.mode != "pio_in" or not self._present():
            return 0
        chunk = s.buf[s.pos:s.pos + size]
        s.pos += size
        value = int.from_bytes(chunk.ljust(size, b"\0"), "little")
        if s.pos >= len(s.buf):
            self._pio_block_done()
        return value

    def string_room(self, size: int) -> int:
        """Units of the current PIO-in block a string read may take at once: all but the last,
        whose read ends the block (next sector, status, interrupt) through _data_read."""
        s = self.s
        if s.mode != "pio_in" or size <= 0 or not self._present():
            return 0
        return max(0, (len(s.buf) - s.pos) // size - 1)

    def read_string(self, size: int, count: int) -> bytes:
        """The next min(count, string_room(size)) units of the block, as _data_read gives them."""
        n = min(count, self.string_room(size))
        if n <= 0:
            return b""
        s = self.s
        data = s.buf[s.pos:s.pos + n * size]
        s.pos += n * size
        return data

    def _data_write(self, size: int, value: int) -> None:
        s = self.s
        if s.mode not in ("pio_out", "packet") or not self._present():
            return
        room = len(s.buf) - s.pos
        data = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")[:room]
        s.buf = s.buf[:s.pos] + data + s.buf[s.pos + len(data):]
        s.pos += len(data)
        if s.pos >= len(s.buf):
            if s.mode == "packet":
                self._packet_received(s.buf)
            else:
                self._pio_block_done()

    def _start_pio(self, mode: str, data: bytes, irq: bool = True) -> None:
        self.s.mode, self.s.buf, self.s.pos = mode, bytes(data), 0
        self.ds.status = STATUS_READY | ST_DRQ
        if irq:
            self._raise_irq()

    def _finish(self, status: int = STATUS_READY, error: int = 0, irq: bool = True) -> None:
        self.s.mode, self.s.buf, self.s.pos, self.s.xfer = "", b"", 0, {}
        self._result = None
        self.ds.status, self.ds.error = status, error
        if irq:
            self._raise_irq()

    def _abort(self, error: int = ER_ABRT) -> None:
        self._finish(STATUS_READY | ST_ERR, error)

    def _pio_block_done(self) -> None:
        x = self.s.xfer
        kind = x.get("kind")
        if kind == "ata_read":
            if x["left"]:
                self._ata_read_block()
            else:
                self.s.mode, self.s.buf, self.s.pos = "", b"", 0
                self.ds.status = STATUS_READY
        elif kind == "ata_write":
            self._ata_write_block()
        elif kind == "atapi":
            self._atapi_next_chunk()
        else:                                          # IDENTIFY and other single blocks
            self.s.mode, self.s.buf, self.s.pos = "", b"", 0
            self.ds.status = STATUS_READY

    # --- commands -----------------------------------------------------------------------------------
    def _command(self, op: int) -> None:
        dev = self.dev
        if dev is None or self.s.in_reset:
            return                                     # nobody there to take it
        if self.ds.status & ST_BSY and op != 0x08:
            return
        self.s.irq_pending = False
        self._update_irq()
        self.s.mode, self.s.buf, self.s.pos, self.s.xfer = "", b"", 0, {}
        self._result = None
        if op == 0x90:                                 # EXECUTE DEVICE DIAGNOSTIC
            self._signatures()
            self._raise_irq()
            return
        if op == 0xEF:
            self._set_features(dev)
            return
        if isinstance(dev, AtapiDrive):
            self._atapi_command(dev, op)
        else:
            self._ata_command(dev, op)

    def _set_features(self, dev) -> None:
        sub = self.s.regs[REG_ERROR]
        if sub == 0x03:
            mode = self.s.regs[REG_COUNT]
            if (
                mode >> 3 not in (0, 1, 4, 8)
                or (mode >> 3 == 4 and mode & 7 > 2)
                or (mode >> 3 == 8 and mode & 7 > 5)
            ):
                self._abort()
                return
            self.ds.xfer_mode = mode
            self._finish()
            return
        if isinstance(dev, AtapiDrive):
            self._finish() if sub in (0x02, 0x82, 0x66, 0xCC, 0x55, 0xAA) else self._abort()
            return
        res = dev.execute(_Tf(command=0xEF, features=sub, lba=0, count=0, device=0), [])
        self._finish(res.status, res.error)

    # --- ATA disk ------------------------------------------------------------------------------------
    def _address(self, lba48: bool) -> tuple[int, int] | None:
        """(LBA, sector count) of the command, or None for an invalid CHS address."""
        r, h = self.s.regs, self.s.hob
        if lba48:
            lba = r[REG_LBAL] | r[REG_LBAM] << 8 | r[REG_LBAH] << 16 | h[REG_LBAL] << 24 | h[REG_LBAM] << 32 \
                | h[REG_LBAH] << 40
            count = r[REG_COUNT] | h[REG_COUNT] << 8
            return lba, count or 0x10000
        count = r[REG_COUNT] or 0x100
        if r[REG_DEVICE] & DEV_LBA:
            return r[REG_LBAL] | r[REG_LBAM] << 8 | r[REG_LBAH] << 16 | (r[REG_DEVICE] & 0xF) << 24, count
        ds = self.ds
        cyl, head, sector = r[REG_LBAM] | r[REG_LBAH] << 8, r[REG_DEVICE] & 0xF, r[REG_LBAL]
        if sector == 0 or sector > ds.spt or head >= ds.heads:
            return None
        return (cyl * ds.heads + head) * ds.spt + sector - 1, count

    def _set_address(self, lba: int, lba48: bool) -> None:
        """Leave the next LBA in the registers (what a device reports after a transfer or error)."""
        r, h = self.s.regs, self.s.hob
        r[REG_LBAL], r[REG_LBAM], r[REG_LBAH] = lba & 0xFF, lba >> 8 & 0xFF, lba >> 16 & 0xFF
        if lba48:
            h[REG_LBAL], h[REG_LBAM], h[REG_LBAH] = lba >> 24 & 0xFF, lba >> 32 & 0xFF, lba >> 40 & 0xFF
        elif r[REG_DEVICE] & DEV_LBA:
            r[REG_DEVICE] = (r[REG_DEVICE] & 0xF0) | (lba >> 24 & 0x0F)

    def _ata_command(self, dev: AtaDisk, op: int) -> None:
        if op == 0xEC:
            raw = pata_identify(dev.identify(), self.ds.multiple, self.ds.xfer_mode)
            self._start_pio("pio_in", raw)
            return
        rw = PIO_READS.get(op, PIO_WRITES.get(op, DMA_READS.get(op, DMA_WRITES.get(op, VERIFY.get(op)))))
        if rw is not None:
            self._ata_rw(dev, op, rw)
            return
        if op == 0xC6:                                 # SET MULTIPLE MODE
            n = self.s.regs[REG_COUNT]
            if n > MAX_MULTIPLE or n & (n - 1):
                self._abort()
            else:
                self.ds.multiple = n
                self._finish()
            return
        if op == 0x91:                                 # INITIALIZE DEVICE PARAMETERS
            if not self.s.regs[REG_COUNT]:
                self._abort()
                return
            self.ds.heads, self.ds.spt = (self.s.regs[REG_DEVICE] & 0xF) + 1, self.s.regs[REG_COUNT]
            self._finish()
            return
        if op in (0xF8, 0x27):                         # READ NATIVE MAX ADDRESS (EXT)
            last = max(dev.sectors - 1, 0)
            self._set_address(min(last, 0x0FFF_FFFF) if op == 0xF8 else last, op == 0x27)
            self._finish()
            return
        if op == 0xE5:                                 # CHECK POWER MODE: active
            self.s.regs[REG_COUNT] = 0xFF
            self._finish()
            return
        if op in NO_DATA_OK:
            self._finish()
            return
        if op in (0xE7, 0xEA):
            res = dev.execute(_Tf(command=op, features=0, lba=0, count=0, device=0), [])
            self._finish(res.status, res.error)
            return
        self._abort()                                  # NOP, PACKET, IDENTIFY PACKET, unknown

    def _ata_rw(self, dev: AtaDisk, op: int, lba48: bool) -> None:
        addr = self._address(lba48)
        if addr is None:
            self._abort(ER_IDNF | ER_ABRT)
            return
        lba, count = addr
        writing = op in PIO_WRITES or op in DMA_WRITES
        if lba + count > dev.sectors:
            self._abort(ER_IDNF | ER_ABRT)
            return
        if writing and dev.read_only:
            self._abort()
            return
        if op in MULTIPLE and not self.ds.multiple:
            self._abort()
            return
        if op in VERIFY:
            self._set_address(lba + count - 1, lba48)
            self._finish()
            return
        block = self.ds.multiple if op in MULTIPLE else 1
        self.s.xfer = {"kind": "ata_write" if writing else "ata_read", "lba": lba, "left": count,
                       "block": block, "lba48": lba48, "fua": op in (0x3D, 0xCE)}
        if op in DMA_READS or op in DMA_WRITES:
            self.s.xfer["kind"] = "ata_dma"
            self.s.xfer["write"] = writing
            self._request_dma()
        elif writing:
            n = min(block, count)
            self._start_pio("pio_out", bytes(n * SECTOR), irq=False)
        else:
            self._ata_read_block()

    def _ata_read_block(self) -> None:
        x, dev = self.s.xfer, self.dev
        n = min(x["block"], x["left"])
        buf = bytearray(n * SECTOR)
        res = dev.execute(_Tf(command=0x25, features=0, lba=x["lba"], count=n, device=DEV_LBA),
                          [memoryview(buf)])
        if res.status & ST_ERR:
            self._set_address(x["lba"], x["lba48"])
            self._abort(res.error or ER_UNC)
            return
        x["lba"] += n
        x["left"] -= n
        self._start_pio("pio_in", bytes(buf))

    def _ata_write_block(self) -> None:
        x, dev = self.s.xfer, self.dev
        n = len(self.s.buf) // SECTOR
        res = dev.execute(_Tf(command=0x35, features=0, lba=x["lba"], count=n, device=DEV_LBA),
                          [memoryview(bytearray(self.s.buf))])
        if res.status & ST_ERR:
            self._set_address(x["lba"], x["lba48"])
            self._abort(res.error or ER_ABRT)
            return
        x["lba"] += n
        x["left"] -= n
        if x["left"]:
            self._start_pio("pio_out", bytes(min(x["block"], x["left"]) * SECTOR))
            return
        if x["fua"]:
            dev.execute(_Tf(command=0xE7, features=0, lba=0, count=0, device=0), [])
        self._set_address(x["lba"] - 1, x["lba48"])
        self._finish()

    # --- DMA ----------------------------------------------------------------------------------------
    def _request_dma(self) -> None:
        """The device asserts DMARQ: the transfer runs when the bus master is started."""
        self.s.mode = "dma"
        self.ds.status = STATUS_READY | ST_DRQ
        if self.dma_engine is not None and self.dma_engine.started:
            self.run_dma()

    def dma_pending(self) -> bool:
        return self.s.mode == "dma"

    def run_dma(self) -> None:
        """The bus master was started (or was already running when the command came)."""
        if self.s.mode != "dma" or self.dma_engine is None:
            return
        x = self.s.xfer
        if x.get("kind") == "ata_dma":
            self._ata_dma(x)
        else:
            self._atapi_dma(x)

    def _ata_dma(self, x: dict) -> None:
        dev, length = self.dev, x["left"] * SECTOR
        views, status = self.dma_engine.dma_views(length)
        if status != "ok":
            self.dma_engine.dma_done(status)
            self._abort()
            return
        op = 0x35 if x["write"] else 0x25
        res = dev.execute(_Tf(command=op, features=0, lba=x["lba"], count=x["left"] & 0xFFFF, device=DEV_LBA),
                          views)
        if res.status & ST_ERR:
            self.dma_engine.dma_done("ok")
            self._set_address(x["lba"], x["lba48"])
            self._abort(res.error)
            return
        if x["write"] and x["fua"]:
            dev.execute(_Tf(command=0xE7, features=0, lba=0, count=0, device=0), [])
        self.dma_engine.dma_done("ok")
        self._set_address(x["lba"] + x["left"] - 1, x["lba48"])
        self._finish()

    # --- ATAPI --------------------------------------------------------------------------------------
    def _atapi_command(self, drive: AtapiDrive, op: int) -> None:
        if op == 0xA1:                                 # IDENTIFY PACKET DEVICE
            self._start_pio("pio_in", atapi_identify(self.serials[self.sel], self.ds.xfer_mode))
        elif op == 0xA0:                               # PACKET
            feat = self.s.regs[REG_ERROR]
            bcl = self.s.regs[REG_LBAM] | self.s.regs[REG_LBAH] << 8
            if bcl in (0, 0xFFFF):
                bcl = 0xFFFE
            self.s.xfer = {"kind": "atapi", "dma": bool(feat & 0x01), "bcl": bcl & ~1, "offset": 0}
            self.s.regs[REG_COUNT] = IR_COD
            self._start_pio("packet", bytes(PACKET_SIZE), irq=False)
        elif op == 0x08:                               # DEVICE RESET
            self.ds.error = 0x01
            self.ds.status = 0
            self._set_signature_regs()
            self.s.mode = ""
        elif op in (0xE5, 0xE0, 0xE1, 0xE7, 0xEA):
            if op == 0xE5:
                self.s.regs[REG_COUNT] = 0xFF
            self._finish()
        # IDENTIFY DEVICE and ATA commands: abort with signature
        else:
            self._set_signature_regs()
            self._abort()

    def _packet_received(self, cdb: bytes) -> None:
        drive = self.dev
        x = self.s.xfer
        self.s.mode, self.s.buf, self.s.pos = "", b"", 0
        result = drive.command(cdb)
        if result.check:
            self._atapi_error(result.sense_key)
            return
        self._result = result
        x["cdb"] = bytes(cdb)
        if result.data_in:
            x["total"] = result.data_in
            x["out"] = False
        elif result.out_length:
            x["total"] = result.out_length
            x["out"] = True
        else:
            self._atapi_done()
            return
        if x["dma"]:
            self._request_dma()
        else:
            self._atapi_next_chunk()

    def _atapi_next_chunk(self) -> None:
        x, result = self.s.xfer, self._result
        left = x["total"] - x["offset"]
        if left <= 0 or result is None:
            self._atapi_done()
            return
        n = min(left, x["bcl"])
        if n < left:
            n &= ~1
        self.s.regs[REG_LBAM], self.s.regs[REG_LBAH] = n & 0xFF, n >> 8 & 0xFF
        if x["out"]:
            self.s.regs[REG_COUNT] = 0
            x["offset"] += n
            self._start_pio("pio_out", bytes(n))
            return
        buf = bytearray(n)
        try:
            self.dev.read_data(result, x["offset"], [memoryview(buf)])
        except ScsiError as e:
            self.dev.read_failed(e)
            self._atapi_error(e.key)
            return
        x["offset"] += n
        self.s.regs[REG_COUNT] = IR_IO
        self._start_pio("pio_in", bytes(buf))

    def _atapi_dma(self, x: dict) -> None:
        result, length = self._result, x["total"]
        views, status = self.dma_engine.dma_views(length)
        if status != "ok" or result is None:
            self.dma_engine.dma_done(status)
            self.dev.read_failed(ScsiError(HARDWARE_ERROR, ASC_INTERNAL_FAILURE))
            self._atapi_error(HARDWARE_ERROR)
            return
        if not x["out"]:
            try:
                self.dev.read_data(result, 0, views)
            except ScsiError as e:
                self.dev.read_failed(e)
                self.dma_engine.dma_done("ok")
                self._atapi_error(e.key)
                return
        self.dma_engine.dma_done("ok")
        self._atapi_done()

    def _atapi_done(self) -> None:
        self.s.regs[REG_COUNT] = IR_IO | IR_COD
        self._finish(STATUS_READY)

    def _atapi_error(self, sense_key: int) -> None:
        self.s.regs[REG_COUNT] = IR_IO | IR_COD
        self._finish(ST_DRDY | ST_ERR, sense_key << 4)

    # --- saved state ------------------------------------------------------------------------------------
    def get_state(self) -> IdeChannelState:
        st = IdeChannelState(regs=list(self.s.regs), hob=list(self.s.hob), control=self.s.control,
                             irq_pending=self.s.irq_pending, in_reset=self.s.in_reset,
                             devices=[IdeDeviceState(**vars(d)) for d in self.s.devices], mode=self.s.mode,
                             buf=bytes(self.s.buf), pos=self.s.pos, xfer=dict(self.s.xfer))
        for i, dev in enumerate(self.devices):
            if dev is not None:
                st.devices[i].extra = dev.get_state()
        return st

    def set_state(self, st: IdeChannelState) -> None:
        self.s = IdeChannelState(regs=list(st.regs), hob=list(st.hob), control=st.control,
                                 irq_pending=st.irq_pending, in_reset=st.in_reset,
                                 devices=[IdeDeviceState(**vars(d)) for d in st.devices], mode=st.mode,
                                 buf=bytes(st.buf), pos=st.pos, xfer=dict(st.xfer))
        self._result = None
        for i, dev in enumerate(self.devices):
            if dev is not None and st.devices[i].extra:
                dev.set_state(st.devices[i].extra)
        cdb = self.s.xfer.get("cdb")
        if self.s.xfer.get("kind") == "atapi" and cdb and isinstance(self.dev, AtapiDrive):
            # an interrupted ATAPI transfer: the command is repeated to recreate its data source
            self._result = self.dev.command(cdb)
        self._update_irq()
