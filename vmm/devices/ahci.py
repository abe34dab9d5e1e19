"""Intel AHCI SATA HBA (ICH8M, as VirtualBox's IntelAhci controller) as a PCI function.

ABAR (BAR5, 8 KiB of MMIO) holds the generic host control registers and one register
block per port.  When the guest sets bits in PxCI the HBA fetches the command header from
the port's command list, the command FIS and PRDT from the command table, runs the ATA
command on the port's `AtaDisk` (or, for an ATAPI command, the CDB on the port's CD/DVD
`AtapiDrive`) with the PRDT as zero-copy views of guest RAM, posts the
D2H / PIO Setup / Set Device Bits FIS into the received-FIS area and raises PxIS, which
drives INTx through the PCI function.  Commands complete synchronously in the doorbell
write.  Structures the guest points outside RAM end in a host bus fatal error on that port
(PxIS.HBFS + TFES), never in a host exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from vmm.devices.ata_disk import (
    ER_ABRT,
    NCQ,
    NCQ_DEPTH,
    ST_BSY,
    ST_DRQ,
    ST_ERR,
    STATUS_OK,
    AtaDisk,
    AtaResult,
    AtaTaskfile,
)
from vmm.devices.atapi import AtapiDrive, ScsiError
from vmm.devices.base import IrqLine
from vmm.devices.ide import atapi_identify
from vmm.devices.pci import BAR_MEM32, PciFunction, PciFunctionState
from vmm.memory import GuestMemory, GuestMemoryError

ABAR_INDEX = 5
ABAR_SIZE = 0x2000
MAX_PORTS = 30
PORT_BASE, PORT_SIZE = 0x100, 0x80

# Generic host control
HBA_CAP, HBA_GHC, HBA_IS, HBA_PI, HBA_VS, HBA_CAP2 = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x24
GHC_HR, GHC_IE, GHC_AE = 1 << 0, 1 << 1, 1 << 31
CAP_S64A, CAP_SNCQ, CAP_SAM, CAP_SCLO = 1 << 31, 1 << 30, 1 << 18, 1 << 24
CAP_ISS_GEN2 = 2 << 20

# Port registers
P_CLB, P_CLBU, P_FB, P_FBU, P_IS, P_IE, P_CMD = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18
P_TFD, P_SIG, P_SSTS, P_SCTL, P_SERR, P_SACT, P_CI, P_SNTF = 0x20, 0x24, 0x28, 0x2C, 0x30, 0x34, 0x38, 0x3C

CMD_ST, CMD_SUD, CMD_POD, CMD_CLO, CMD_FRE = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4
CMD_FR, CMD_CR = 1 << 14, 1 << 15
CMD_WRITABLE = CMD_ST | CMD_SUD | CMD_POD | CMD_FRE | 0xFC00_0000 | (1 << 24) | (1 << 22)

IS_DHRS, IS_PSS, IS_SDBS, IS_DPS = 1 << 0, 1 << 1, 1 << 3, 1 << 5
IS_HBDS, IS_HBFS, IS_TFES = 1 << 28, 1 << 29, 1 << 30
IS_VALID = 0xFDC0_00FF

SIG_ATA = 0x0000_0101
SIG_ATAPI = 0xEB14_0101
ACMD_OFFSET = 0x40            # the ATAPI command (CDB) in the command table
SSTS_PRESENT = 0x123          # IPM active, Gen2, device present with PHY communication

RFIS_DSFIS, RFIS_PSFIS, RFIS_RFIS, RFIS_SDBFIS = 0x00, 0x20, 0x40, 0x58
_PRD = struct.Struct("<Q4xI")


def _copy_into(views: list[memoryview], data: bytes) -> int:
    done = 0
    for v in views:
        n = min(len(v), len(data) - done)
        if n <= 0:
            break
        v[:n] = data[done:done + n]
        done += n
    return done


class _Fault(Exception):
    """The guest's command structures are unusable (outside RAM, too short)."""


@dataclass
class AhciPortState:
    clb: int = 0
    fb: int = 0
    is_: int = 0
    ie: int = 0
    cmd: int = 0
    tfd: int = 0x7F
    sig: int = 0xFFFF_FFFF
    ssts: int = 0
    sctl: int = 0
    serr: int = 0
    sact: int = 0
    ci: int = 0
    halted: bool = False
    disk: dict | None = None


@dataclass
class AhciState:
    pci: PciFunctionState
    ghc: int
    ports: list[AhciPortState] = field(default_factory=list)


class AhciPort:
    def __init__(self, hba: Ahci, index: int, disk: AtaDisk | AtapiDrive | None):
        self.hba = hba
        self.index = index
        self.disk = disk
        self.s = AhciPortState()
        self.power_on()

    def power_on(self) -> None:
        s = self.s = AhciPortState()
        s.cmd = CMD_SUD | CMD_POD                 # no staggered spin-up: the device is spun up
        if self.disk is not None:
            s.tfd, s.sig, s.ssts = STATUS_OK, self._signature, SSTS_PRESENT

    @property
    def _signature(self) -> int:
        return SIG_ATAPI if isinstance(self.disk, AtapiDrive) else SIG_ATA

    # --- registers -----------------------------------------------------------------------------
    def read(self, reg: int) -> int:
        s = self.s
        return {P_CLB: s.clb & 0xFFFF_FFFF, P_CLBU: s.clb >> 32, P_FB: s.fb & 0xFFFF_FFFF,
                P_FBU: s.fb >> 32, P_IS: s.is_, P_IE: s.ie, P_CMD: self._cmd_value(), P_TFD: s.tfd,
                P_SIG: s.sig, P_SSTS: s.ssts, P_SCTL: s.sctl, P_SERR: s.serr, P_SACT: s.sact,
                P_CI: s.ci}.get(reg, 0)

    def _cmd_value(self) -> int:
        v = self.s.cmd
        if v & CMD_ST:
            v |= CMD_CR
        if v & CMD_FRE:
            v |= CMD_FR
        return v

    def write(self, reg: int, value: int) -> None:
        s = self.s
        if reg == P_CLB:
            s.clb = (s.clb & ~0xFFFF_FFFF) | (value & 0xFFFF_FC00)
        elif reg == P_CLBU:
            s.clb = (s.clb & 0xFFFF_FFFF) | value << 32
        elif reg == P_FB:
            s.fb = (s.fb & ~0xFFFF_FFFF) | (value & 0xFFFF_FF00)
        elif reg == P_FBU:
            s.fb = (s.fb & 0xFFFF_FFFF) | value << 32
        elif reg == P_IS:
            s.is_ &= ~value
            self.hba.update_irq()
        elif reg == P_IE:
            s.ie = value & IS_VALID
            self.hba.update_irq()
        elif reg == P_CMD:
            self._write_cmd(value)
        elif reg == P_SCTL:
            self._write_sctl(value)
        elif reg == P_SERR:
            s.serr &= ~value
        elif reg == P_SACT:
            if s.cmd & CMD_ST:
                s.sact |= value
        elif reg == P_CI:
            if s.cmd & CMD_ST:
                s.ci |= value
                self.process()

    def _write_cmd(self, value: int) -> None:
        s = self.s
        old = s.cmd
        s.cmd = (old & ~CMD_WRITABLE) | (value & CMD_WRITABLE)
        if value & CMD_CLO:
            s.tfd &= ~(ST_BSY | ST_DRQ)
        if old & CMD_ST and not s.cmd & CMD_ST:
            s.ci = s.sact = 0                     # stopping the engine drops outstanding commands
            s.halted = False
        if s.cmd & CMD_FRE and not old & CMD_FRE and self.disk is not None and s.ssts & 0xF == 3:
            self._post_d2h(s.tfd & 0xFF, s.tfd >> 8, signature=True, irq=False)
        if s.cmd & CMD_ST and not old & CMD_ST and s.ci:
            self.process()

    def _write_sctl(self, value: int) -> None:
        s = self.s
        s.sctl = value & 0xFFF
        if value & 0xF == 1:                      # COMRESET asserted
            s.ssts = 0
            s.tfd = 0x80 if self.disk is not None else 0x7F
        elif value & 0xF == 0 and self.disk is not None and s.ssts & 0xF != 3:
            self.reset_device()

    def reset_device(self) -> None:
        """COMRESET (or SRST) done: the device signs on with its signature D2H FIS."""
        s = self.s
        s.ssts, s.sig, s.tfd = SSTS_PRESENT, self._signature, STATUS_OK
        s.serr |= 1 << 26                         # DIAG.X: device presence changed
        if s.cmd & CMD_FRE:
            self._post_d2h(STATUS_OK, 0, signature=True, irq=True)

    # --- received FIS area ---------------------------------------------------------------------------
    def _fis_write(self, offset: int, data: bytes) -> None:
        if self.s.cmd & CMD_FRE:
            try:
                self.hba.memory.write(self.s.fb + offset, data)
            except GuestMemoryError:
                self._set_is(IS_HBFS)

    def _post_d2h(self, status: int, error: int, signature: bool = False, irq: bool = True,
                  tf: AtaTaskfile | None = None) -> None:
        fis = bytearray(20)
        fis[0], fis[1], fis[2], fis[3] = 0x34, 0x40, status, error
        if signature:
            fis[4], fis[12] = 1, 1                # LBA low 1, count 1: an ATA device ...
            if isinstance(self.disk, AtapiDrive):
                fis[5], fis[6] = 0x14, 0xEB       # ... or, with LBA mid/high 14h/EBh, a packet device
        elif tf is not None:
            lba = tf.lba
            fis[4:7] = (lba & 0xFF_FFFF).to_bytes(3, "little")
            fis[7] = tf.device
            fis[8:11] = (lba >> 24 & 0xFF_FFFF).to_bytes(3, "little")
            fis[12:14] = (tf.count & 0xFFFF).to_bytes(2, "little")
        self._fis_write(RFIS_RFIS, bytes(fis))
        self.s.tfd = status | error << 8
        if irq:
            self._set_is(IS_DHRS)

    def _set_is(self, bits: int) -> None:
        self.s.is_ |= bits
        self.hba.update_irq()

    # --- command processing --------------------------------------------------------------------------
    def process(self) -> None:
        s = self.s
        while s.ci and s.cmd & CMD_ST and not s.halted and self.hba.bus_master:
            slot = (s.ci & -s.ci).bit_length() - 1
            try:
                self._run_slot(slot)
            except _Fault:
                s.halted = True
                s.tfd = (STATUS_OK | ST_ERR) | ER_ABRT << 8
                self._set_is(IS_HBFS | IS_TFES)
                return

    def _run_slot(self, slot: int) -> None:
        s, mem = self.s, self.hba.memory
        hdr_addr = s.clb + 32 * slot
        try:
            dw0, _, ctba = struct.unpack("<IIQ", mem.read(hdr_addr, 16))
        except GuestMemoryError:
            raise _Fault()
        cfl, prdtl = dw0 & 0x1F, dw0 >> 16
        ctba &= ~0x7F
        try:
            cfis = mem.read(ctba, 20)
            prdt_raw = mem.read(ctba + 0x80, 16 * prdtl) if prdtl else b""
        except GuestMemoryError:
            raise _Fault()
        if cfis[0] != 0x27 or cfl < 5:
            raise _Fault()
        bit = 1 << slot
        if self.disk is None:
            s.ci &= ~bit
            self._complete_error(slot, bit, 0)
            return
        if not cfis[1] & 0x80:                    # control register update (SRST)
            s.ci &= ~bit
            self._write_prdbc(hdr_addr, 0)
            if not cfis[15] & 0x04:
                self.reset_device()
            return
        tf = AtaTaskfile.from_fis(cfis)
        views = self._prdt_views(prdt_raw)
        if isinstance(self.disk, AtapiDrive):
            try:
                cdb = mem.read(ctba + ACMD_OFFSET, 16)
            except GuestMemoryError:
                raise _Fault()
            self._run_atapi(slot, bit, hdr_addr, tf, cdb if dw0 & (1 << 5) else None, views)
            return
        need = self.disk.transfer_length(tf)
        if dw0 & (1 << 5) or sum(len(v) for v in views) < need:
            # ATAPI is not provided; a PRDT smaller than the transfer is a driver bug
            result = AtaResult(status=STATUS_OK | ST_ERR, error=ER_ABRT)
        else:
            result = self.disk.execute(tf, views)
        self._write_prdbc(hdr_addr, result.transferred)
        if tf.command in NCQ and not result.status & ST_ERR:
            tag = (tf.count >> 3) & 0x1F
            s.ci &= ~bit
            self._post_d2h(STATUS_OK, 0, irq=False)
            s.sact &= ~(1 << tag)
            sdb = struct.pack("<BBBBI", 0xA1, 0x40, STATUS_OK & 0x77, 0, 1 << tag)
            self._fis_write(RFIS_SDBFIS, sdb)
            self._set_is(IS_SDBS)
            return
        s.ci &= ~bit
        if result.status & ST_ERR:
            self._complete_error(slot, bit, result.error)
            return
        if result.pio:
            psfis = bytearray(20)
            psfis[0], psfis[1], psfis[2], psfis[15] = 0x5F, 0x60, STATUS_OK | ST_DRQ, STATUS_OK
            psfis[16:18] = (result.transferred & 0xFFFF).to_bytes(2, "little")
            self._fis_write(RFIS_PSFIS, bytes(psfis))
            self._set_is(IS_PSS)
        self._post_d2h(STATUS_OK, 0, tf=tf)

    def _run_atapi(self, slot: int, bit: int, hdr_addr: int, tf: AtaTaskfile, cdb: bytes | None,
                   views: list[memoryview]) -> None:
        """A command for the CD/DVD drive: PACKET (the CDB), IDENTIFY PACKET DEVICE, housekeeping."""
        drive: AtapiDrive = self.disk
        s = self.s
        s.ci &= ~bit
        op, done, pio = tf.command, 0, False
        if op == 0xA0 and cdb is not None:
            result = drive.command(cdb)
            if result.check:
                self._write_prdbc(hdr_addr, 0)
                s.sact &= ~bit
                s.halted = True
                self._post_d2h(STATUS_OK | ST_ERR, result.sense_key << 4, irq=False)
                self._set_is(IS_TFES | IS_DHRS)
                return
            if result.data_in:
                try:
                    done = drive.read_data(result, 0, views)
                except ScsiError as e:
                    drive.read_failed(e)
                    self._write_prdbc(hdr_addr, 0)
                    self._complete_error(slot, bit, e.key << 4)
                    return
            else:
                done = min(result.out_length, sum(len(v) for v in views))    # parameters taken, ignored
            pio = not tf.features & 0x01 and bool(result.data_in)
        elif op == 0xA1:
            done = _copy_into(views, atapi_identify(f"VB-SATA-CD{self.index:02d}", 0))
            pio = True
        elif op == 0xEC:                              # IDENTIFY DEVICE: abort with the packet signature
            self._write_prdbc(hdr_addr, 0)
            s.halted = True
            self._post_d2h(STATUS_OK | ST_ERR, ER_ABRT, signature=True, irq=False)
            self._set_is(IS_TFES | IS_DHRS)
            return
        elif op not in (0xEF, 0xE5, 0xE0, 0xE1, 0xE7, 0xEA, 0x08):
            self._write_prdbc(hdr_addr, 0)
            self._complete_error(slot, bit, ER_ABRT)
            return
        self._write_prdbc(hdr_addr, done)
        if pio:
            psfis = bytearray(20)
            psfis[0], psfis[1], psfis[2], psfis[15] = 0x5F, 0x60, STATUS_OK | ST_DRQ, STATUS_OK
            psfis[16:18] = (done & 0xFFFF).to_bytes(2, "little")
            self._fis_write(RFIS_PSFIS, bytes(psfis))
            self._set_is(IS_PSS)
        self._post_d2h(STATUS_OK, 0, tf=tf)

    def _complete_error(self, slot: int, bit: int, error: int) -> None:
        s = self.s
        s.sact &= ~bit
        s.halted = True                           # the HBA stops until software restarts the port
        self._post_d2h(STATUS_OK | ST_ERR, error or ER_ABRT, irq=False)
        self._set_is(IS_TFES | IS_DHRS)

    def _write_prdbc(self, hdr_addr: int, count: int) -> None:
        self.hba.memory.write_u32(hdr_addr + 4, count)

    def _prdt_views(self, raw: bytes) -> list[memoryview]:
        mem = self.hba.memory
        base, ram_len, _ = mem.regions[0]
        # Views are taken per command, never kept: GuestMemory must stay closable.
        ram = mem.view(0, ram_len) if base == 0 else memoryview(b"")
        ram_len = len(ram)
        views: list[memoryview] = []
        run_start = run_len = 0
        for dba, dw3 in _PRD.iter_unpack(raw):
            length = (dw3 & 0x3F_FFFF) + 1
            dba &= ~1
            if dba + length > ram_len and not mem.contains(dba, length):
                raise _Fault()
            if run_len and run_start + run_len == dba:
                run_len += length                 # physically contiguous entries: one view
                continue
            if run_len:
                views.append(ram[run_start:run_start + run_len] if run_start + run_len <= ram_len
                             else mem.view(run_start, run_len))
            run_start, run_len = dba, length
        if run_len:
            views.append(ram[run_start:run_start + run_len] if run_start + run_len <= ram_len
                         else mem.view(run_start, run_len))
        return views

    # --- saved state -----------------------------------------------------------------------------------
    def get_state(self) -> AhciPortState:
        st = AhciPortState(**{k: v for k, v in vars(self.s).items() if k != "disk"})
        st.disk = self.disk.get_state() if self.disk is not None else None
        return st

    def set_state(self, st: AhciPortState) -> None:
        self.s = AhciPortState(**{k: v for k, v in vars(st).items() if k != "disk"})
        if self.disk is not None and st.disk is not None:
            self.disk.set_state(st.disk)


class _Abar:
    __slots__ = ("hba",)

    def __init__(self, hba: Ahci):
        self.hba = hba

    def read(self, offset: int, size: int) -> int:
        base = offset & ~3
        shift = 8 * (offset - base)
        return (self.hba.reg_read(base) >> shift) & ((1 << (8 * size)) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        base = offset & ~3
        shift = 8 * (offset - base)
        if size == 8 and shift == 0:
            self.hba.reg_write(base, value & 0xFFFF_FFFF)
            self.hba.reg_write(base + 4, value >> 32)
            return
        if size != 4:
            mask = ((1 << (8 * size)) - 1) << shift
            if not self.hba.is_w1(base):
                value = (self.hba.reg_read(base) & ~mask) | ((value << shift) & mask)
            else:
                value = (value << shift) & mask
        self.hba.reg_write(base, value & 0xFFFF_FFFF)


class Ahci(PciFunction):
    """The HBA: `disks` maps port number -> AtaDisk or AtapiDrive; `ports` is the controller's PortCount."""

    def __init__(self, memory: GuestMemory, disks: dict[int, AtaDisk | AtapiDrive], ports: int = MAX_PORTS,
                 irq: IrqLine | None = None):
        if not 1 <= ports <= MAX_PORTS:
            raise ValueError(f"an IntelAhci controller has 1..{MAX_PORTS} ports")
        for p in disks:
            if not 0 <= p < ports:
                raise ValueError(f"disk on port {p} but the controller has {ports} ports")
        super().__init__(0x8086, 0x2829, 0x010601, revision=2, subsystem_vendor_id=0x8086,
                         subsystem_id=0x2829, interrupt_pin=1, irq=irq)
        self.memory = memory
        self.nports = ports
        self.ports = [AhciPort(self, i, disks.get(i)) for i in range(ports)]
        self.ghc = GHC_AE
        self.cap = (CAP_S64A | CAP_SNCQ | CAP_SAM | CAP_SCLO | CAP_ISS_GEN2
                    | (NCQ_DEPTH - 1) << 8 | (ports - 1))
        self.add_bar(ABAR_INDEX, ABAR_SIZE, BAR_MEM32, _Abar(self))

    def device_at(self, port: int, device: int = 0) -> AtaDisk | AtapiDrive | None:
        """The disk or drive on SATA `port` (None: nothing or no such port)."""
        if device != 0 or not 0 <= port < self.nports:
            return None
        return self.ports[port].disk

    def hba_reset(self) -> None:
        self.ghc = GHC_AE
        for p in self.ports:
            p.power_on()
        self.update_irq()

    def is_w1(self, reg: int) -> bool:
        if reg == HBA_IS:
            return True
        if reg >= PORT_BASE:
            return (reg - PORT_BASE) % PORT_SIZE in (P_IS, P_SERR, P_CI, P_SACT)
        return False

    def _port(self, reg: int) -> tuple[AhciPort, int] | None:
        if reg < PORT_BASE:
            return None
        index, preg = divmod(reg - PORT_BASE, PORT_SIZE)
        if index >= self.nports:
            return None
        return self.ports[index], preg

    def reg_read(self, reg: int) -> int:
        hit = self._port(reg)
        if hit is not None:
            return hit[0].read(hit[1])
        if reg == HBA_CAP:
            return self.cap
        if reg == HBA_GHC:
            return self.ghc
        if reg == HBA_IS:
            return self._pending_ports()
        if reg == HBA_PI:
            return (1 << self.nports) - 1
        if reg == HBA_VS:
            return 0x0001_0300
        return 0

    def reg_write(self, reg: int, value: int) -> None:
        hit = self._port(reg)
        if hit is not None:
            hit[0].write(hit[1], value)
        elif reg == HBA_GHC:
            if value & GHC_HR:
                self.hba_reset()                  # completes at once: HR reads back 0
            else:
                self.ghc = GHC_AE | (value & GHC_IE)
                self.update_irq()
        elif reg == HBA_IS:
            # Port bits stay set while the port still has an enabled cause pending.
            self.update_irq()

    def _pending_ports(self) -> int:
        bits = 0
        for p in self.ports:
            if p.s.is_ & p.s.ie:
                bits |= 1 << p.index
        return bits

    def update_irq(self) -> None:
        self.set_intx(bool(self.ghc & GHC_IE and self._pending_ports()))

    # --- saved state -----------------------------------------------------------------------------------
    def get_state(self) -> AhciState:
        return AhciState(super().get_state(), self.ghc, [p.get_state() for p in self.ports])

    def set_state(self, state: AhciState) -> None:
        if len(state.ports) != self.nports:
            raise ValueError("saved AHCI state has a different port count")
        self.ghc = state.ghc
        for p, st in zip(self.ports, state.ports, strict=True):
            p.set_state(st)
        super().set_state(state.pci)
