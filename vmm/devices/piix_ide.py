"""The PIIX3/PIIX4/ICH6 IDE controller as a PCI function (VirtualBox's "piix3ide" device).

Two channels in compatibility mode on the legacy ports (the VM builder places the command
blocks at 0x1F0/0x170, the control registers at 0x3F6/0x376, IRQ 14/15), and the bus-master
IDE registers (BMIDE) behind BAR4: per channel a command register (start, direction), a
status register (active, error, interrupt) and the PRD table address.  A PRD entry is a
32-bit address, a byte count (0 meaning 64 KiB) and the end-of-table bit; the walk is
bounded (a table of 8192 entries covers 512 MiB), and an entry outside guest RAM sets the
error bit and fails the command instead of touching host memory.  Register layout as in
Intel's 82371SB (PIIX3) and 82371AB (PIIX4) datasheets.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from vmm.devices.ata_disk import AtaDisk
from vmm.devices.atapi import AtapiDrive
from vmm.devices.base import IrqLine
from vmm.devices.ide import REG_DATA, IdeChannel, IdeChannelState
from vmm.devices.pci import BAR_IO, PciFunction, PciFunctionState
from vmm.memory import GuestMemory, GuestMemoryError

# VirtualBox's StorageControllerType names -> PCI device ID
DEVICE_IDS = {"PIIX3": 0x7010, "PIIX4": 0x7111, "ICH6": 0x269E}
CLASS_IDE = 0x01018A                # mass storage, IDE, bus master, both channels in compatibility mode
BMIDE_BAR = 4
BMIDE_SIZE = 16
IDETIM = (0x40, 0x42)               # per-channel timing registers; bit 15 enables the channel's decode
IDETIM_DECODE = 0x8000

# Legacy placement (compatibility mode): (command block, control register, IRQ) per channel
LEGACY = ((0x1F0, 0x3F6, 14), (0x170, 0x376, 15))

BM_CMD, BM_STATUS, BM_PRD = 0, 2, 4
BM_START, BM_READ = 0x01, 0x08      # READ: the device writes to memory
BM_ACTIVE, BM_ERROR, BM_INT = 0x01, 0x02, 0x04
BM_STATUS_RW = 0x60                 # "drive 0/1 DMA capable" bits, kept for software
PRD_EOT = 0x8000
MAX_PRD_ENTRIES = 8192
_PRD = struct.Struct("<IHH")


@dataclass
class BusMasterState:
    cmd: int = 0
    status: int = 0
    prd: int = 0


@dataclass
class PiixIdeState:
    pci: PciFunctionState
    channels: list[IdeChannelState] = field(default_factory=list)
    bus_master: list[BusMasterState] = field(default_factory=list)


class BusMaster:
    """One channel's BMIDE registers and its PRD walk (the channel's `dma_engine`)."""

    def __init__(self, controller: PiixIde, channel: IdeChannel):
        self.ctl = controller
        self.channel = channel
        self.s = BusMasterState()
        self._eot_reached = False

    @property
    def started(self) -> bool:
        return bool(self.s.cmd & BM_START) and self.ctl.bus_master

    def read(self, offset: int, size: int) -> int:
        raw = bytes((self.s.cmd, 0, self.s.status, 0)) + struct.pack("<I", self.s.prd)
        return int.from_bytes(raw[offset:offset + size].ljust(size, b"\xff"), "little")

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            reg, byte = offset + i, (value >> (8 * i)) & 0xFF
            if reg == BM_CMD:
                self._write_cmd(byte)
            elif reg == BM_STATUS:
                self.s.status = (self.s.status & ~(byte & (BM_ERROR | BM_INT)) & ~BM_STATUS_RW) \
                    | (byte & BM_STATUS_RW)
            elif BM_PRD <= reg < BM_PRD + 4:
                shift = 8 * (reg - BM_PRD)
                self.s.prd = ((self.s.prd & ~(0xFF << shift)) | byte << shift) & 0xFFFF_FFFC

    def _write_cmd(self, byte: int) -> None:
        old = self.s.cmd
        self.s.cmd = byte & (BM_START | BM_READ)
        if byte & BM_START and not old & BM_START:
            self.s.status |= BM_ACTIVE
            if self.started and self.channel.dma_pending():
                self.channel.run_dma()
        elif not byte & BM_START:
            # stopping aborts nothing in flight: transfers are synchronous
            self.s.status &= ~BM_ACTIVE

    def dma_views(self, length: int) -> tuple[list[memoryview], str]:
        mem = self.ctl.memory
        views: list[memoryview] = []
        done, addr = 0, self.s.prd
        self._eot_reached = False
        for _ in range(MAX_PRD_ENTRIES):
            try:
                base, count, flags = _PRD.unpack(mem.read(addr, 8))
            except GuestMemoryError:
                return views, "fault"
            size = count & 0xFFFE or 0x10000
            take = min(size, length - done)
            try:
                views.append(mem.view(base & ~1, take))
            except GuestMemoryError:
                return views, "fault"
            done += take
            eot = bool(flags & PRD_EOT)
            if done >= length:
                self._eot_reached = eot and take == size
                return views, "ok"
            if eot:
                self._eot_reached = True
                return views, "short"
            addr = (addr + 8) & 0xFFFF_FFFF
        return views, "short"                    # no end-of-table within the largest possible table

    def dma_done(self, status: str) -> None:
        if status == "fault":
            self.s.status |= BM_ERROR
        if status != "ok" or self._eot_reached:
            self.s.status &= ~BM_ACTIVE          # a larger table leaves ACTIVE set, as on the PIIX

    def interrupt(self) -> None:
        self.s.status |= BM_INT


class _Bmide:
    """BAR4: the two channels' bus-master blocks (8 bytes each)."""

    def __init__(self, bus_masters: list[BusMaster]):
        self.bm = bus_masters

    def read(self, offset: int, size: int) -> int:
        return self.bm[offset >> 3 & 1].read(offset & 7, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.bm[offset >> 3 & 1].write(offset & 7, size, value)


class CommandBlock:
    """A channel's 8 command-block ports (0x1F0..0x1F7 or 0x170..0x177)."""

    def __init__(self, channel: IdeChannel):
        self.channel = channel

    def read(self, offset: int, size: int) -> int:
        return self.channel.read(offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.channel.write(offset, size, value)

    def string_room(self, offset: int, size: int) -> int:
        return self.channel.string_room(size) if offset == REG_DATA else 0

    def read_string(self, offset: int, size: int, count: int) -> bytes:
        return self.channel.read_string(size, count) if offset == REG_DATA else b""


class ControlBlock:
    """A channel's alternate status / device control port (0x3F6 or 0x376)."""

    def __init__(self, channel: IdeChannel):
        self.channel = channel

    def read(self, offset: int, size: int) -> int:
        return self.channel.read_alt_status() if offset == 0 else 0xFF

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            self.channel.write_control(value & 0xFF)


Device = AtaDisk | AtapiDrive | None


class PiixIde(PciFunction):
    """`devices[(channel, position)]`: the disk or drive at IDE port `channel`, device `position`."""

    def __init__(self, memory: GuestMemory, devices: dict[tuple[int, int], Device], model: str = "PIIX4",
                 irqs: tuple[IrqLine, IrqLine] | None = None,
                 serials: dict[tuple[int, int], str] | None = None):
        if model not in DEVICE_IDS:
            raise ValueError(f"unknown IDE controller model {model!r} ({', '.join(DEVICE_IDS)})")
        for ch, pos in devices:
            if ch not in (0, 1) or pos not in (0, 1):
                raise ValueError(f"IDE port {ch} device {pos}: an IDE controller has ports 0-1 "
                                 f"and devices 0-1")
        super().__init__(0x8086, DEVICE_IDS[model], CLASS_IDE, revision=0 if model == "PIIX3" else 1)
        self.memory = memory
        self.model = model
        irqs = irqs or (IrqLine(), IrqLine())
        serials = serials or {}
        self.channels: list[IdeChannel] = []
        self.bus_masters: list[BusMaster] = []
        for ch in (0, 1):
            channel = IdeChannel([devices.get((ch, 0)), devices.get((ch, 1))], irqs[ch],
                                 (serials.get((ch, 0), f"VB{ch}0-IDE"), serials.get((ch, 1), f"VB{ch}1-IDE")))
            bm = BusMaster(self, channel)
            channel.dma_engine = bm
            channel.on_irq = bm.interrupt
            self.channels.append(channel)
            self.bus_masters.append(bm)
        for reg in range(0x40, 0x58):
            self._wmask[reg] = 0xFF                 # timing and Ultra DMA control registers
        for reg in IDETIM:
            self._put(reg, 2, IDETIM_DECODE)
        self.add_bar(BMIDE_BAR, BMIDE_SIZE, BAR_IO, _Bmide(self.bus_masters))

    def legacy_windows(self) -> list[tuple[str, int, int, object, int]]:
        """(name, port, span, register device, IRQ) for the VM builder's placement."""
        out = []
        for ch, (cmd, ctl, irq) in enumerate(LEGACY):
            name = "ide.primary" if ch == 0 else "ide.secondary"
            out.append((name, cmd, 8, CommandBlock(self.channels[ch]), irq))
            out.append((name + ".ctl", ctl, 1, ControlBlock(self.channels[ch]), irq))
        return out

    def device_at(self, channel: int, position: int) -> Device:
        """The disk or drive at IDE port `channel`, device `position` (None: nothing or no such place)."""
        if channel not in (0, 1) or position not in (0, 1):
            return None
        return self.channels[channel].devices[position]

    # --- saved state ---------------------------------------------------------------------------------
    def get_state(self) -> PiixIdeState:
        return PiixIdeState(super().get_state(), [c.get_state() for c in self.channels],
                            [BusMasterState(**vars(b.s)) for b in self.bus_masters])

    def set_state(self, state: PiixIdeState) -> None:
        if len(state.channels) != 2 or len(state.bus_master) != 2:
            raise ValueError("saved IDE state does not have two channels")
        for bm, st in zip(self.bus_masters, state.bus_master, strict=True):
            bm.s = BusMasterState(**vars(st))
        for ch, st in zip(self.channels, state.channels, strict=True):
            ch.set_state(st)
        super().set_state(state.pci)
