"""PCI: the host bridge (configuration mechanism #1 at 0xCF8/0xCFC) and the PCI function base.

A PCI device model (AHCI, virtio-pci, ...) subclasses `PciFunction`: it declares its IDs,
its BARs (each BAR's registers are a plain register device) and its capabilities.  The
guest sizes and programs the BARs through configuration space; when it enables I/O or
memory decoding in the command register, the BAR windows are placed on the `Bus`
objects the host bridge was given, and removed again when decoding is disabled or the BAR
moves.  A guest that programs a BAR over another device's range simply gets no decoding
for that BAR (the conflict is recorded in `bar_conflicts`), never a host error.

The host bridge itself is function 00:00.0 (an i440FX, as VirtualBox's PIIX3 chipset).
Without firmware, `PciHostBridge.assign_resources()` does what the BIOS would do: place
every BAR, enable decoding and bus mastering.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vmm.bus import Bus, RegisterDevice
from vmm.devices.base import IrqLine

# Configuration space offsets (type 0 header).
VENDOR_ID = 0x00
DEVICE_ID = 0x02
COMMAND = 0x04
STATUS = 0x06
REVISION_ID = 0x08
CLASS_PROG = 0x09
HEADER_TYPE = 0x0E
BAR0 = 0x10
SUBSYSTEM_VENDOR_ID = 0x2C
SUBSYSTEM_ID = 0x2E
CAPABILITIES_POINTER = 0x34
INTERRUPT_LINE = 0x3C
INTERRUPT_PIN = 0x3D

CMD_IO = 1 << 0
CMD_MEMORY = 1 << 1
CMD_BUS_MASTER = 1 << 2
CMD_INTX_DISABLE = 1 << 10
STATUS_INTERRUPT = 1 << 3
STATUS_CAP_LIST = 1 << 4

BAR_IO = "io"
BAR_MEM32 = "mem32"

# Status bits that the guest clears by writing 1 (parity/abort/SERR reporting).
_STATUS_W1C = 0xF900
# Command bits a guest may set: I/O, memory, bus master, parity, SERR, INTx disable.
_COMMAND_WRITABLE = CMD_IO | CMD_MEMORY | CMD_BUS_MASTER | (1 << 6) | (1 << 8) | CMD_INTX_DISABLE


class _BarWindow:
    """A distinct object per BAR mapping, so one BAR can be unregistered from a bus alone."""

    __slots__ = ("read", "write", "direct_ram")

    def __init__(self, handler: RegisterDevice):
        self.read = handler.read
        self.write = handler.write
        self.direct_ram = getattr(handler, "direct_ram", None)


@dataclass
class PciBar:
    index: int
    size: int
    kind: str
    handler: RegisterDevice
    mapped_at: int | None = None
    window: _BarWindow | None = None


@dataclass
class PciFunctionState:
    config: bytes
    intx_level: bool = False
    extra: dict = field(default_factory=dict)


class PciFunction:
    """One PCI function: a 256-byte configuration space, BARs, capabilities and an INTx line."""

    def __init__(self, vendor_id: int, device_id: int, class_code: int, revision: int = 0,
                 subsystem_vendor_id: int = 0, subsystem_id: int = 0, interrupt_pin: int = 0,
                 irq: IrqLine | None = None):
        if not 0 <= interrupt_pin <= 4:
            raise ValueError("interrupt pin must be 0 (none) or 1..4 (INTA..INTD)")
        self.config = bytearray(256)
        self._wmask = bytearray(256)     # bits the guest may change outside the special registers
        self._put(VENDOR_ID, 2, vendor_id)
        self._put(DEVICE_ID, 2, device_id)
        self._put(REVISION_ID, 1, revision)
        self._put(CLASS_PROG, 3, class_code)
        self._put(SUBSYSTEM_VENDOR_ID, 2, subsystem_vendor_id)
        self._put(SUBSYSTEM_ID, 2, subsystem_id)
        self._put(INTERRUPT_PIN, 1, interrupt_pin)
        self._wmask[0x0C] = 0xFF          # cache line size
        self._wmask[0x0D] = 0xFF          # latency timer
        self._wmask[INTERRUPT_LINE] = 0xFF
        self.irq = irq if irq is not None else IrqLine()
        self._intx_request = False
        self.bars: dict[int, PciBar] = {}
        self.bar_conflicts: dict[int, str] = {}
        self._cap_last: int | None = None
        self._cap_next_free = 0x40
        self.io_bus: Bus | None = None
        self.mmio_bus: Bus | None = None

    # --- helpers -------------------------------------------------------------------------------
    def _put(self, offset: int, size: int, value: int) -> None:
        self.config[offset:offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    def _get(self, offset: int, size: int) -> int:
        return int.from_bytes(self.config[offset:offset + size], "little")

    @property
    def command(self) -> int:
        return self._get(COMMAND, 2)

    @property
    def bus_master(self) -> bool:
        return bool(self.command & CMD_BUS_MASTER)

    @property
    def interrupt_line(self) -> int:
        return self.config[INTERRUPT_LINE]

    @interrupt_line.setter
    def interrupt_line(self, value: int) -> None:
        """What firmware writes: the platform IRQ this function's INTx pin is wired to."""
        self.config[INTERRUPT_LINE] = value & 0xFF

    # --- declaration by subclasses ---------------------------------------------------------------
    def add_bar(self, index: int, size: int, kind: str, handler: RegisterDevice) -> None:
        if not 0 <= index <= 5 or index in self.bars:
            raise ValueError(f"bad or duplicate BAR index {index}")
        if size <= 0 or size & (size - 1):
            raise ValueError("BAR size must be a power of two")
        if kind == BAR_IO:
            if not 4 <= size <= 256:
                raise ValueError("I/O BAR size must be 4..256 bytes")
            self._put(BAR0 + 4 * index, 4, 0x1)
        elif kind == BAR_MEM32:
            if size < 16:
                raise ValueError("memory BAR size must be at least 16 bytes")
            self._put(BAR0 + 4 * index, 4, 0x0)
        else:
            raise ValueError(f"unknown BAR kind {kind!r}")
        self.bars[index] = PciBar(index, size, kind, handler)

    def add_capability(self, cap_id: int, body: bytes) -> int:
        """Append a capability (id, next, body) to the list; returns its config-space offset."""
        length = (2 + len(body) + 3) & ~3
        offset = self._cap_next_free
        if offset + length > 256:
            raise ValueError("configuration space full")
        self.config[offset] = cap_id
        self.config[offset + 1] = 0
        self.config[offset + 2:offset + 2 + len(body)] = body
        if self._cap_last is None:
            self.config[CAPABILITIES_POINTER] = offset
            self._put(STATUS, 2, self._get(STATUS, 2) | STATUS_CAP_LIST)
        else:
            self.config[self._cap_last + 1] = offset
        self._cap_last = offset
        self._cap_next_free = offset + length
        return offset

    # --- configuration space access ------------------------------------------------------------
    def config_read(self, offset: int, size: int) -> int:
        if size not in (1, 2, 4) or offset < 0 or offset + size > 256:
            return (1 << (8 * size)) - 1 if size in (1, 2, 4) else 0
        return self._get(offset, size)

    def config_write(self, offset: int, size: int, value: int) -> None:
        if size not in (1, 2, 4) or offset < 0 or offset + size > 256:
            return
        value &= (1 << (8 * size)) - 1
        remap = False
        for i in range(size):
            off = offset + i
            byte = (value >> (8 * i)) & 0xFF
            if COMMAND <= off < COMMAND + 2:
                mask = (_COMMAND_WRITABLE >> (8 * (off - COMMAND))) & 0xFF
                self.config[off] = (self.config[off] & ~mask) | (byte & mask)
                remap = True
            elif STATUS <= off < STATUS + 2:
                w1c = (_STATUS_W1C >> (8 * (off - STATUS))) & 0xFF
                self.config[off] &= ~(byte & w1c) & 0xFF
            elif BAR0 <= off < BAR0 + 24:
                self._write_bar_byte(off, byte)
                remap = True
            else:
                mask = self._wmask[off]
                if mask:
                    self.config[off] = (self.config[off] & ~mask) | (byte & mask)
        if remap:
            self._update_mappings()
            self._update_intx()

    def _write_bar_byte(self, off: int, byte: int) -> None:
        index, pos = divmod(off - BAR0, 4)
        bar = self.bars.get(index)
        if bar is None:
            return                                   # unimplemented BARs read as zero
        shift = 8 * pos
        flags = 0x1 if bar.kind == BAR_IO else 0x0
        addr_mask = (~(bar.size - 1)) & 0xFFFF_FFFF
        if bar.kind == BAR_IO:
            addr_mask &= 0xFFFF_FFFC
        else:
            addr_mask &= 0xFFFF_FFF0
        cur = self._get(BAR0 + 4 * index, 4)
        new = (cur & ~(0xFF << shift)) | (byte << shift)
        self._put(BAR0 + 4 * index, 4, (new & addr_mask) | flags)

    def bar_address(self, index: int) -> int:
        bar = self.bars[index]
        raw = self._get(BAR0 + 4 * index, 4)
        return raw & (0xFFFF_FFFC if bar.kind == BAR_IO else 0xFFFF_FFF0)

    # --- BAR placement on the buses ------------------------------------------------------------
    def attach_buses(self, io_bus: Bus | None, mmio_bus: Bus | None) -> None:
        self.io_bus = io_bus
        self.mmio_bus = mmio_bus
        self._update_mappings()

    def _wanted_address(self, bar: PciBar) -> int | None:
        cmd = self.command
        addr = self.bar_address(bar.index)
        if bar.kind == BAR_IO:
            if not cmd & CMD_IO or addr == 0 or addr + bar.size > 0x10000:
                return None
        else:
            if not cmd & CMD_MEMORY or addr == 0 or addr + bar.size > 1 << 32:
                return None
        return addr

    def _update_mappings(self) -> None:
        for bar in self.bars.values():
            bus = self.io_bus if bar.kind == BAR_IO else self.mmio_bus
            want = self._wanted_address(bar) if bus is not None else None
            if want == bar.mapped_at:
                continue
            if bar.mapped_at is not None:
                bus.unregister(bar.window)
                bar.mapped_at = bar.window = None
            self.bar_conflicts.pop(bar.index, None)
            if want is None:
                continue
            window = _BarWindow(bar.handler)
            try:
                bus.register(want, bar.size, window)
            except ValueError as e:
                self.bar_conflicts[bar.index] = str(e)
                continue
            bar.window = window
            bar.mapped_at = want

    # --- INTx ----------------------------------------------------------------------------------
    def set_intx(self, level: bool) -> None:
        """The device model's interrupt request; INTx-disable masks it, status bit 3 reflects it."""
        self._intx_request = bool(level)
        self._update_intx()

    def _update_intx(self) -> None:
        status = self._get(STATUS, 2)
        if self._intx_request:
            status |= STATUS_INTERRUPT
        else:
            status &= ~STATUS_INTERRUPT
        self._put(STATUS, 2, status)
        self.irq.set_level(self._intx_request and not self.command & CMD_INTX_DISABLE
                           and self.config[INTERRUPT_PIN] != 0)

    # --- saved state -----------------------------------------------------------------------------
    def get_state(self) -> PciFunctionState:
        return PciFunctionState(config=bytes(self.config), intx_level=self._intx_request)

    def set_state(self, state: PciFunctionState) -> None:
        if len(state.config) != 256:
            raise ValueError("PCI config space state must be 256 bytes")
        self.config[:] = state.config
        self._intx_request = state.intx_level
        self._update_mappings()
        self._update_intx()


class PciHostBridgeFunction(PciFunction):
    """00:00.0: the i440FX host bridge (what VirtualBox's PIIX3 chipset presents)."""

    def __init__(self) -> None:
        super().__init__(vendor_id=0x8086, device_id=0x1237, class_code=0x060000, revision=2)
        self._put(COMMAND, 2, CMD_MEMORY)


@dataclass
class PciHostBridgeState:
    """Only the bridge's own state: each PCI device saves its own (config space included)."""
    address: int
    host: PciFunctionState


class PciHostBridge:
    """Configuration mechanism #1: the register device for ports 0xCF8..0xCFF (8 bytes).

    Offset 0 (32-bit only) is CONFIG_ADDRESS; offsets 4..7 are CONFIG_DATA.  A byte write to
    offset 1 (port 0xCF9) is the PIIX reset control register: bit 2 with bit 1 asks for a
    reset through `reset`.
    """

    def __init__(self, io_bus: Bus | None = None, mmio_bus: Bus | None = None,
                 reset: Callable[[], None] | None = None, host: PciFunction | None = None):
        self.io_bus = io_bus
        self.mmio_bus = mmio_bus
        self._reset = reset
        self._address = 0
        self._rcr = 0
        self.functions: dict[tuple[int, int], PciFunction] = {}
        self.host = host if host is not None else PciHostBridgeFunction()
        self.add_function(self.host, 0, 0)

    def add_function(self, fn: PciFunction, slot: int, function: int = 0) -> None:
        if not 0 <= slot < 32 or not 0 <= function < 8:
            raise ValueError("slot must be 0..31 and function 0..7")
        if (slot, function) in self.functions:
            raise ValueError(f"PCI slot {slot}.{function} is taken")
        self.functions[(slot, function)] = fn
        # function 0 says "multi-function" whichever of the slot's functions came first
        first = self.functions.get((slot, 0))
        if first is not None and any(s == slot and f for s, f in self.functions):
            first.config[HEADER_TYPE] |= 0x80
        fn.attach_buses(self.io_bus, self.mmio_bus)

    def function_at(self, slot: int, function: int = 0) -> PciFunction | None:
        return self.functions.get((slot, function))

    # --- register device -----------------------------------------------------------------------
    def _target(self) -> tuple[PciFunction | None, int]:
        a = self._address
        if not a & 0x8000_0000 or (a >> 16) & 0xFF != 0:
            return None, 0
        fn = self.functions.get(((a >> 11) & 0x1F, (a >> 8) & 0x7))
        return fn, a & 0xFC

    def read(self, offset: int, size: int) -> int:
        if offset == 0 and size == 4:
            return self._address
        if offset == 1 and size == 1:
            return self._rcr
        if 4 <= offset < 8:
            fn, reg = self._target()
            if fn is not None and offset - 4 + size <= 4:
                return fn.config_read(reg + offset - 4, size)
        return (1 << (8 * size)) - 1

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0 and size == 4:
            self._address = value & 0x80FF_FFFC
        elif offset == 1 and size == 1:
            self._rcr = value & 0x0A
            if value & 0x04 and self._reset is not None:
                self._reset()
        elif 4 <= offset < 8:
            fn, reg = self._target()
            if fn is not None and offset - 4 + size <= 4:
                fn.config_write(reg + offset - 4, size, value)

    # --- firmware duty ---------------------------------------------------------------------------
    def assign_resources(self, io_base: int = 0xC000, io_limit: int = 0x10000,
                         mmio_base: int = 0xE000_0000, mmio_limit: int = 0xFEC0_0000) -> None:
        """Place every BAR (naturally aligned, in slot order) and enable decoding + bus mastering."""
        io_next, mmio_next = io_base, mmio_base
        for (_slot, _func), fn in sorted(self.functions.items()):
            cmd = 0
            for bar in sorted(fn.bars.values(), key=lambda b: -b.size):
                if bar.kind == BAR_IO:
                    addr = (io_next + bar.size - 1) & ~(bar.size - 1)
                    if addr + bar.size > io_limit:
                        raise ValueError("PCI I/O window exhausted")
                    io_next = addr + bar.size
                    cmd |= CMD_IO
                else:
                    addr = (mmio_next + bar.size - 1) & ~(bar.size - 1)
                    if addr + bar.size > mmio_limit:
                        raise ValueError("PCI memory window exhausted")
                    mmio_next = addr + bar.size
                    cmd |= CMD_MEMORY
                fn.config_write(BAR0 + 4 * bar.index, 4, addr)
            if fn.bars:
                fn.config_write(COMMAND, 2, fn.command | cmd | CMD_BUS_MASTER)

    # --- saved state -----------------------------------------------------------------------------
    def get_state(self) -> PciHostBridgeState:
        return PciHostBridgeState(address=self._address, host=self.host.get_state())

    def set_state(self, state: PciHostBridgeState) -> None:
        self._address = state.address
        self.host.set_state(state.host)
