"""Modern virtio-pci transport (virtio 1.x §4.1): capabilities pointing into one memory BAR.

BAR4 (16 KiB) holds the common configuration (0x0000), the ISR byte (0x1000), the
device-specific configuration (0x2000) and the notification area (0x3000, one 32-bit
register per queue).  Interrupts are INTx only (no MSI-X without a local APIC): the ISR
bit 0 reports used-buffer notifications, bit 1 configuration changes; reading the ISR
clears it and drops the line.  A queue the driver corrupts puts the device in
DEVICE_NEEDS_RESET, as the specification asks, instead of raising into the vCPU loop.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from vmm.devices.base import IrqLine
from vmm.devices.pci import BAR_MEM32, PciFunction, PciFunctionState
from vmm.devices.virtio.queue import QueueBroken, Virtqueue
from vmm.memory import GuestMemory, GuestMemoryError

VIRTIO_VENDOR = 0x1AF4
BAR_INDEX = 4
BAR_SIZE = 0x4000
COMMON_OFF, ISR_OFF, DEVICE_OFF, NOTIFY_OFF = 0x0000, 0x1000, 0x2000, 0x3000
COMMON_LEN = 0x38
NOTIFY_MULTIPLIER = 4

CAP_COMMON, CAP_NOTIFY, CAP_ISR, CAP_DEVICE, CAP_PCI = 1, 2, 3, 4, 5

S_ACKNOWLEDGE, S_DRIVER, S_DRIVER_OK, S_FEATURES_OK, S_NEEDS_RESET, S_FAILED = 1, 2, 4, 8, 64, 128
NO_VECTOR = 0xFFFF
F_RING_EVENT_IDX = 1 << 29

# PCI class for each virtio device id we provide (base class, subclass, prog-if).
_CLASS = {8: 0x010000, 2: 0x010000, 1: 0x020000}


class VirtioDevice(Protocol):
    device_id: int
    num_queues: int
    queue_max_size: int
    device_features: int

    def reset(self) -> None: ...
    def config_read(self, offset: int, size: int) -> int: ...
    def config_write(self, offset: int, size: int, value: int) -> None: ...
    def handle_queue(self, index: int, vq: Virtqueue) -> None: ...


@dataclass
class QueueConfig:
    size: int
    desc: int = 0
    avail: int = 0
    used: int = 0
    enabled: bool = False
    last_avail: int = 0
    used_idx: int = 0


@dataclass
class VirtioPciState:
    pci: PciFunctionState
    status: int
    driver_features: int
    device_feature_select: int
    driver_feature_select: int
    queue_select: int
    isr: int
    generation: int
    queues: list[QueueConfig] = field(default_factory=list)
    device: object = None


class _Bar:
    """The memory BAR's register device; routes to the transport's four regions."""

    __slots__ = ("t",)

    def __init__(self, transport: VirtioPciTransport):
        self.t = transport

    def read(self, offset: int, size: int) -> int:
        return self.t.bar_read(offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.t.bar_write(offset, size, value)


class VirtioPciTransport(PciFunction):
    def __init__(self, device: VirtioDevice, memory: GuestMemory, irq: IrqLine | None = None):
        super().__init__(VIRTIO_VENDOR, 0x1040 + device.device_id, _CLASS.get(device.device_id, 0xFF0000),
                         revision=1, subsystem_vendor_id=VIRTIO_VENDOR, subsystem_id=0x1100,
                         interrupt_pin=1, irq=irq)
        self.device = device
        self.memory = memory
        self.add_bar(BAR_INDEX, BAR_SIZE, BAR_MEM32, _Bar(self))
        self._cap(CAP_COMMON, COMMON_OFF, COMMON_LEN)
        self._cap(CAP_ISR, ISR_OFF, 1)
        self._cap(CAP_DEVICE, DEVICE_OFF, 0x1000)
        self._cap(CAP_NOTIFY, NOTIFY_OFF, NOTIFY_MULTIPLIER * device.num_queues,
                  struct.pack("<I", NOTIFY_MULTIPLIER))
        self._pci_cfg_cap = self._cap(CAP_PCI, 0, 0, bytes(4))
        self.generation = 0
        self.on_broken: Callable[[str], None] | None = None     # the VM log hears of a broken queue
        self._reset_transport()
        bind = getattr(device, "bind_transport", None)
        if bind is not None:
            bind(self)

    def _cap(self, cfg_type: int, offset: int, length: int, extra: bytes = b"") -> int:
        body = struct.pack("<BBBBHII", 16 + len(extra), cfg_type, BAR_INDEX, 0, 0, offset, length) + extra
        return self.add_capability(0x09, body)

    def _reset_transport(self) -> None:
        self.status = 0
        self.driver_features = 0
        self.device_feature_select = 0
        self.driver_feature_select = 0
        self.queue_select = 0
        self.isr = 0
        self.queues = [QueueConfig(self.device.queue_max_size) for _ in range(self.device.num_queues)]
        self.vqs: list[Virtqueue | None] = [None] * self.device.num_queues
        self.device.reset()
        self.set_intx(False)

    # --- BAR dispatch ------------------------------------------------------------------------------
    def bar_read(self, offset: int, size: int) -> int:
        if offset < COMMON_LEN:
            return self._common_read(offset, size)
        if offset == ISR_OFF:
            isr, self.isr = self.isr, 0
            self.set_intx(False)
            return isr
        if DEVICE_OFF <= offset < DEVICE_OFF + 0x1000:
            return self.device.config_read(offset - DEVICE_OFF, size)
        return 0

    def bar_write(self, offset: int, size: int, value: int) -> None:
        if offset < COMMON_LEN:
            self._common_write(offset, size, value)
        elif DEVICE_OFF <= offset < DEVICE_OFF + 0x1000:
            self.device.config_write(offset - DEVICE_OFF, size, value)
        elif NOTIFY_OFF <= offset < NOTIFY_OFF + NOTIFY_MULTIPLIER * self.device.num_queues:
            self.notify((offset - NOTIFY_OFF) // NOTIFY_MULTIPLIER)

    # --- common configuration --------------------------------------------------------------------
    def _common_bytes(self) -> bytes:
        q = self.queues[self.queue_select] if self.queue_select < len(self.queues) else None
        feats = self.device.device_features
        dev_feat = (feats >> (32 * self.device_feature_select)) & 0xFFFF_FFFF \
            if self.device_feature_select < 2 else 0
        drv_feat = (self.driver_features >> (32 * self.driver_feature_select)) & 0xFFFF_FFFF \
            if self.driver_feature_select < 2 else 0
        return struct.pack(
            "<IIIIHHBBHHHHHQQQ", self.device_feature_select, dev_feat, self.driver_feature_select,
            drv_feat, NO_VECTOR, self.device.num_queues, self.status, self.generation,
            self.queue_select, q.size if q else 0, NO_VECTOR, int(q.enabled) if q else 0,
            self.queue_select if q else 0, q.desc if q else 0, q.avail if q else 0, q.used if q else 0)

    def _common_read(self, offset: int, size: int) -> int:
        raw = self._common_bytes()
        return int.from_bytes(raw[offset:offset + size], "little")

    def _common_write(self, offset: int, size: int, value: int) -> None:
        value &= (1 << (8 * size)) - 1
        q = self.queues[self.queue_select] if self.queue_select < len(self.queues) else None
        if offset == 0x00 and size == 4:
            self.device_feature_select = value
        elif offset == 0x08 and size == 4:
            self.driver_feature_select = value
        elif offset == 0x0C and size == 4:
            if self.driver_feature_select < 2 and not self.status & S_FEATURES_OK:
                shift = 32 * self.driver_feature_select
                self.driver_features = (self.driver_features & ~(0xFFFF_FFFF << shift)) | (value << shift)
        elif offset == 0x14 and size == 1:
            self._write_status(value)
        elif offset == 0x16 and size == 2:
            self.queue_select = value
        elif q is None or q.enabled:
            return                                  # queue fields freeze once the queue is enabled
        elif offset == 0x18 and size == 2:
            if value and not value & (value - 1) and value <= self.device.queue_max_size:
                q.size = value
        elif offset == 0x1C and size == 2:
            if value == 1:
                self._enable_queue(self.queue_select)
        elif 0x20 <= offset < 0x38 and size in (4, 8):
            name = ("desc", "avail", "used")[(offset - 0x20) // 8]
            shift = 32 * ((offset - 0x20) % 8 // 4)
            mask = ((1 << (8 * size)) - 1) << shift
            setattr(q, name, (getattr(q, name) & ~mask) | (value << shift))

    def _write_status(self, value: int) -> None:
        if value == 0:
            self._reset_transport()
            return
        if value & S_FEATURES_OK and not self.status & S_FEATURES_OK:
            # Refuse feature sets we did not offer (or lacking VERSION_1): FEATURES_OK won't stick.
            offered = self.device.device_features
            if self.driver_features & ~offered or not self.driver_features & (1 << 32):
                value &= ~S_FEATURES_OK
        self.status = value & 0xFF | (self.status & S_NEEDS_RESET)

    def _enable_queue(self, index: int) -> None:
        q = self.queues[index]
        try:
            vq = Virtqueue(self.memory, q.size, q.desc, q.avail, q.used,
                           event_idx=bool(self.driver_features & F_RING_EVENT_IDX))
        except (QueueBroken, GuestMemoryError) as e:
            self._needs_reset(f"queue {index}: {e}")
            return
        vq.restore_positions(q.last_avail, q.used_idx)
        q.enabled = True
        self.vqs[index] = vq

    # --- notifications and interrupts -----------------------------------------------------------------
    def notify(self, index: int) -> None:
        if index >= len(self.vqs) or not self.status & S_DRIVER_OK or self.status & S_NEEDS_RESET:
            return
        vq = self.vqs[index]
        if vq is None or not self.bus_master:
            return
        try:
            self.device.handle_queue(index, vq)
        except (QueueBroken, GuestMemoryError) as e:
            self._needs_reset(f"queue {index}: {e}")
            return
        if vq.should_notify():
            self.isr |= 1
            self.set_intx(True)

    def config_changed(self) -> None:
        """The device changed its configuration space (a NIC's link status): tell the driver."""
        if self.status & S_DRIVER_OK:
            self.isr |= 2
            self.set_intx(True)

    def _needs_reset(self, why: str = "") -> None:
        if why and not self.status & S_NEEDS_RESET and self.on_broken is not None:
            self.on_broken(why)
        self.status |= S_NEEDS_RESET
        if self.status & S_DRIVER_OK:
            self.isr |= 2
            self.set_intx(True)

    # --- the VIRTIO_PCI_CAP_PCI_CFG window (BAR access through configuration space) ------------------
    def _window(self) -> tuple[int, int] | None:
        cap = self._pci_cfg_cap
        bar_off = int.from_bytes(self.config[cap + 8:cap + 12], "little")
        length = int.from_bytes(self.config[cap + 12:cap + 16], "little")
        if self.config[cap + 4] != BAR_INDEX or length not in (1, 2, 4) or bar_off + length > BAR_SIZE:
            return None
        return bar_off, length

    def config_write(self, offset: int, size: int, value: int) -> None:
        data = self._pci_cfg_cap + 16
        if data <= offset < data + 4:
            win = self._window()
            if win is not None and offset == data and size == 4:
                self.bar_write(win[0], win[1], value & ((1 << (8 * win[1])) - 1))
            return
        super().config_write(offset, size, value)
        # The driver may set the window's bar/offset/length fields.
        cap = self._pci_cfg_cap
        if cap + 4 <= offset < cap + 16:
            for i in range(size):
                off = offset + i
                if cap + 4 <= off < cap + 5 or cap + 8 <= off < cap + 16:
                    self.config[off] = (value >> (8 * i)) & 0xFF

    def config_read(self, offset: int, size: int) -> int:
        data = self._pci_cfg_cap + 16
        if data <= offset < data + 4:
            win = self._window()
            if win is not None and offset == data and size == 4:
                return self.bar_read(*win)
            return 0
        return super().config_read(offset, size)

    # --- saved state ---------------------------------------------------------------------------------
    def get_state(self) -> VirtioPciState:
        queues = []
        for q, vq in zip(self.queues, self.vqs, strict=True):
            la, ui = vq.positions() if vq is not None else (q.last_avail, q.used_idx)
            queues.append(QueueConfig(q.size, q.desc, q.avail, q.used, q.enabled, la, ui))
        get_dev = getattr(self.device, "get_state", None)
        return VirtioPciState(super().get_state(), self.status, self.driver_features,
                              self.device_feature_select, self.driver_feature_select, self.queue_select,
                              self.isr, self.generation, queues, get_dev() if get_dev else None)

    def set_state(self, state: VirtioPciState) -> None:
        if len(state.queues) != self.device.num_queues:
            raise ValueError("saved virtio state has a different number of queues")
        self.status = state.status
        self.driver_features = state.driver_features
        self.device_feature_select = state.device_feature_select
        self.driver_feature_select = state.driver_feature_select
        self.queue_select = state.queue_select
        self.generation = state.generation
        self.queues = [QueueConfig(q.size, q.desc, q.avail, q.used, False, q.last_avail, q.used_idx)
                       for q in state.queues]
        self.vqs = [None] * self.device.num_queues
        for i, q in enumerate(state.queues):
            if q.enabled:
                self._enable_queue(i)
        if state.device is not None and hasattr(self.device, "set_state"):
            self.device.set_state(state.device)
        super().set_state(state.pci)
        self.isr = state.isr
