"""The virtio-scsi device (virtio 1.x §5.6): features, config space and request handling.

Transport-independent: the transport hands it the virtqueue that was notified.  Each
request's header names a target; targets are the controller's ports (VirtualBox's
VirtioSCSI controller puts one disk per port at LUN 0) and each is a `ScsiDisk`.  Requests
whose buffers are malformed or too small get a virtio-scsi error response when there is
a place to write one, and are always returned to the driver.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from vmm.devices.virtio.queue import Chain, Virtqueue
from vmm.devices.virtio.scsi_disk import DataOverrun, ScsiDisk

DEVICE_ID = 8
F_VERSION_1 = 1 << 32
F_RING_INDIRECT_DESC = 1 << 28
F_RING_EVENT_IDX = 1 << 29

CONTROL_QUEUE, EVENT_QUEUE, REQUEST_QUEUE = 0, 1, 2

S_OK = 0
S_OVERRUN = 1
S_BAD_TARGET = 3
S_FAILURE = 9
S_FUNCTION_COMPLETE = 0

T_TMF, T_AN_QUERY, T_AN_SUBSCRIBE = 0, 1, 2

DEFAULT_SENSE_SIZE = 96
DEFAULT_CDB_SIZE = 32
MAX_SENSE_SIZE = 252
MAX_CDB_SIZE = 255
QUEUE_SIZE = 1024         # seg_max = QUEUE_SIZE - 2 lets a 1 MiB request of 4 KiB pages fit one chain


@dataclass
class VirtioScsiState:
    sense_size: int
    cdb_size: int
    disks: dict[int, bytes] = field(default_factory=dict)


class VirtioScsi:
    device_id = DEVICE_ID
    num_queues = 3
    queue_max_size = QUEUE_SIZE

    def __init__(self, disks: dict[int, ScsiDisk], ports: int = 1):
        if not 1 <= ports <= 256:
            raise ValueError("a VirtioSCSI controller has 1..256 ports")
        for t in disks:
            if not 0 <= t < ports:
                raise ValueError(f"disk on port {t} but the controller has {ports} ports")
        self.disks = dict(disks)
        self.ports = ports
        self.device_features = F_VERSION_1 | F_RING_INDIRECT_DESC | F_RING_EVENT_IDX
        self.reset()

    def reset(self) -> None:
        self.sense_size = DEFAULT_SENSE_SIZE
        self.cdb_size = DEFAULT_CDB_SIZE

    # --- device configuration space --------------------------------------------------------------
    def _config(self) -> bytes:
        return struct.pack("<IIIIIIIHHI", 1, QUEUE_SIZE - 2, 0xFFFF, 128, 16,
                           self.sense_size, self.cdb_size, 0, self.ports - 1, 0)

    def config_read(self, offset: int, size: int) -> int:
        cfg = self._config()
        if offset < 0 or offset + size > len(cfg):
            return 0
        return int.from_bytes(cfg[offset:offset + size], "little")

    def config_write(self, offset: int, size: int, value: int) -> None:
        # Only sense_size (20) and cdb_size (24) are driver-writable, as whole 32-bit fields.
        if size != 4:
            return
        if offset == 20:
            self.sense_size = min(value, MAX_SENSE_SIZE)
        elif offset == 24:
            self.cdb_size = min(value, MAX_CDB_SIZE)

    # --- queues ------------------------------------------------------------------------------
    def handle_queue(self, index: int, vq: Virtqueue) -> None:
        """Serve every available request of the notified queue (the event queue is kept for later)."""
        if index == EVENT_QUEUE:
            return
        handler = self._control if index == CONTROL_QUEUE else self._request
        while (chain := vq.pop()) is not None:
            vq.push(chain.head, handler(chain))

    def _control(self, chain: Chain) -> int:
        if chain.error or chain.readable_len < 4:
            return chain.write(0, bytes([S_FAILURE]))
        kind = int.from_bytes(chain.read(0, 4), "little")
        if kind == T_TMF:
            # Requests complete synchronously, so there is never a task left to abort or reset.
            return chain.write(0, bytes([S_FUNCTION_COMPLETE]))
        if kind in (T_AN_QUERY, T_AN_SUBSCRIBE):
            return chain.write(0, struct.pack("<IB", 0, S_OK))      # no asynchronous events
        return chain.write(0, bytes([S_FAILURE]))

    def _respond(self, chain: Chain, response: int, status: int = 0, sense: bytes = b"",
                 resid: int = 0) -> int:
        sense = sense[:self.sense_size]
        hdr = struct.pack("<IIHBB", len(sense), resid, 0, status, response) + sense
        hdr = hdr.ljust(12 + self.sense_size, b"\0")
        return chain.write(0, hdr)

    def _request(self, chain: Chain) -> int:
        req_len = 19 + self.cdb_size
        resp_len = 12 + self.sense_size
        if chain.error or chain.readable_len < req_len or chain.writable_len < resp_len:
            return self._respond(chain, S_FAILURE)
        req = chain.read(0, req_len)
        lun = req[0:8]
        target = lun[1]
        lun_id = ((lun[2] << 8) | lun[3]) & 0x3FFF
        disk = self.disks.get(target)
        if lun[0] != 1 or disk is None or lun_id != 0:
            return self._respond(chain, S_BAD_TARGET)
        cdb = req[19:19 + self.cdb_size]
        data_out = chain.readable_views(req_len)
        data_in = chain.writable_views(resp_len)
        try:
            result = disk.execute(cdb, data_out, data_in)
        except DataOverrun:
            return self._respond(chain, S_OVERRUN)
        buffered = sum(len(v) for v in (data_in if data_in else data_out))
        resid = max(0, buffered - result.transferred)
        written = self._respond(chain, S_OK, result.status, result.sense, resid)
        return written + (result.transferred if data_in else 0)

    # --- saved state ---------------------------------------------------------------------------
    def get_state(self) -> VirtioScsiState:
        return VirtioScsiState(self.sense_size, self.cdb_size,
                               {t: d.get_state() for t, d in self.disks.items()})

    def set_state(self, state: VirtioScsiState) -> None:
        self.sense_size = min(state.sense_size, MAX_SENSE_SIZE)
        self.cdb_size = min(state.cdb_size, MAX_CDB_SIZE)
        for t, sense in state.disks.items():
            if t in self.disks:
                self.disks[t].set_state(sense)
