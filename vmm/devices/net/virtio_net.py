"""The virtio-net device (virtio 1.x §5.1): MAC, link status, checksum and TSO offload.

Transport-independent like vmm.devices.virtio.scsi: queue 0 receives, queue 1 transmits (no
control queue, no multiqueue).  Every buffer starts with the 12-byte virtio_net_hdr.  Frames
for the guest arrive from the backend on its own thread into a bounded queue; a due-now timer
moves them into the guest's receive buffers on the device thread.  A transmit chain that is
malformed is returned unused; a ring that is corrupt puts the device in DEVICE_NEEDS_RESET.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from vmm.devices.net.offload import ETH_HLEN, insert_checksum, l4_kind, segment_tcp
from vmm.devices.virtio.queue import Virtqueue
from vmm.net.frame import MAX_FRAME, NetBackend, RxQueue
from vmm.tm import Clock

DEVICE_ID = 1
F_CSUM = 1 << 0
F_GUEST_CSUM = 1 << 1
F_MAC = 1 << 5
F_HOST_TSO4 = 1 << 11
F_HOST_UFO = 1 << 14
F_STATUS = 1 << 16
F_VERSION_1 = 1 << 32
F_RING_EVENT_IDX = 1 << 29

RX_QUEUE, TX_QUEUE = 0, 1
QUEUE_SIZE = 256
# flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers
HDR = struct.Struct("<BBHHHHH")
HDR_F_NEEDS_CSUM, HDR_F_DATA_VALID = 1, 2
GSO_NONE, GSO_TCPV4, GSO_UDP = 0, 1, 3
S_LINK_UP = 1


@dataclass
class VirtioNetState:
    mac: bytes
    link_up: bool


class VirtioNet:
    device_id = DEVICE_ID
    num_queues = 2
    queue_max_size = QUEUE_SIZE

    def __init__(self, mac: bytes, backend: NetBackend, clock: Clock, link_up: bool = True,
                 wake: Callable[[], None] | None = None, tap: Callable[[bytes], None] | None = None):
        if len(mac) != 6:
            raise ValueError("a MAC address has 6 bytes")
        self.mac = bytes(mac)
        self.backend = backend
        self.link_up = link_up
        self.tap = tap                      # sees every frame both ways (--nictrace)
        self.device_features = (F_VERSION_1 | F_MAC | F_STATUS | F_CSUM | F_GUEST_CSUM | F_HOST_TSO4
                                | F_RING_EVENT_IDX)
        self.transport = None
        self._rx_timer = clock.new_timer(self._rx_due)
        self._clock = clock
        self._wake = wake
        self.rx = RxQueue(self._frame_arrived)
        self.stats = {"rx_frames": 0, "tx_frames": 0, "rx_dropped": 0, "tx_bad": 0}
        backend.attach(self._from_backend)

    def bind_transport(self, transport) -> None:
        self.transport = transport

    def reset(self) -> None:
        self.rx.clear()

    # --- configuration space: mac[6], status u16 ------------------------------------------------------
    def config_read(self, offset: int, size: int) -> int:
        cfg = self.mac + struct.pack("<H", S_LINK_UP if self.link_up else 0)
        if offset < 0 or offset + size > len(cfg):
            return 0
        return int.from_bytes(cfg[offset:offset + size], "little")

    def config_write(self, offset: int, size: int, value: int) -> None:
        pass                                # the MAC is read-only without VIRTIO_NET_F_CTRL_MAC_ADDR

    def set_link(self, up: bool) -> None:
        """Device thread: cable plugged or pulled (controlvm setlinkstate)."""
        if up == self.link_up:
            return
        self.link_up = up
        if not up:
            self.rx.clear()
        if self.transport is not None:
            self.transport.config_changed()

    # --- receive ---------------------------------------------------------------------------------------
    def _from_backend(self, frame: bytes) -> None:
        """Backend thread."""
        if self.link_up and len(frame) <= MAX_FRAME:
            self.rx.put(frame)

    def _frame_arrived(self) -> None:
        """Backend thread: one wake-up per batch (the timer stays armed until the device thread runs)."""
        if not self._rx_timer.armed:
            self._rx_timer.arm(self._clock.now_ns())
            if self._wake is not None:
                self._wake()

    def _rx_due(self) -> None:
        if self.transport is not None:
            self.transport.notify(RX_QUEUE)

    def _receive(self, vq: Virtqueue) -> None:
        while self.rx.peek() is not None:
            chain = vq.pop()
            if chain is None:
                return                      # no buffers: frames wait for the guest's next notify
            frame = self.rx.pop()
            if chain.error or chain.writable_len < HDR.size + len(frame):
                vq.push(chain.head, 0)
                self.stats["rx_dropped"] += 1
                continue
            flags = HDR_F_DATA_VALID if l4_kind(frame) else 0
            chain.write(0, HDR.pack(flags, GSO_NONE, 0, 0, 0, 0, 1))
            chain.write(HDR.size, frame)
            vq.push(chain.head, HDR.size + len(frame))
            self.stats["rx_frames"] += 1
            if self.tap is not None:
                self.tap(frame)

    # --- transmit --------------------------------------------------------------------------------------
    def _transmit(self, vq: Virtqueue) -> None:
        while (chain := vq.pop()) is not None:
            length = chain.readable_len
            if chain.error or length < HDR.size + ETH_HLEN or length > HDR.size + MAX_FRAME:
                self.stats["tx_bad"] += 1
                vq.push(chain.head, 0)
                continue
            data = chain.read(0, length)
            vq.push(chain.head, 0)
            if not self.link_up:
                continue
            flags, gso, _hdr_len, gso_size, csum_start, csum_offset, _ = HDR.unpack_from(data)
            frame = bytearray(data[HDR.size:])
            for out in self._offload(frame, flags, gso, gso_size, csum_start, csum_offset):
                self.stats["tx_frames"] += 1
                if self.tap is not None:
                    self.tap(out)
                self.backend.send(out)

    def _offload(self, frame: bytearray, flags: int, gso: int, gso_size: int, start: int,
                 offset: int) -> list[bytes]:
        gso &= 0x7F                          # bit 7 is ECN
        if gso in (GSO_TCPV4, GSO_UDP) and flags & HDR_F_NEEDS_CSUM and start + 20 <= len(frame):
            if gso == GSO_TCPV4:
                hdr_len = start + (frame[start + 12] >> 4) * 4
                if self.tap is None and getattr(self.backend, "accepts_large_frames", False):
                    gso_size = max(gso_size, len(frame) - hdr_len)   # the NAT engine takes it whole
                return segment_tcp(bytes(frame), hdr_len, gso_size, ETH_HLEN, start)
            return segment_tcp(bytes(frame), start + 8, gso_size, ETH_HLEN, start, udp=True)
        if flags & HDR_F_NEEDS_CSUM:
            insert_checksum(frame, start, start + offset)
        return [bytes(frame)]

    def handle_queue(self, index: int, vq: Virtqueue) -> None:
        if index == RX_QUEUE:
            self._receive(vq)
        elif index == TX_QUEUE:
            self._transmit(vq)

    # --- saved state --------------------------------------------------------------------------------------
    def get_state(self) -> VirtioNetState:
        return VirtioNetState(self.mac, self.link_up)

    def set_state(self, state: VirtioNetState) -> None:
        self.link_up = state.link_up
        self.rx.clear()
