"""A SCSI direct-access LUN (SBC/SPC subset) over a DiskImage, transport-independent.

virtio-scsi hands it a CDB plus the request's data-out and data-in buffers as memoryviews
over guest RAM; bulk reads and writes go straight between those views and the image
(`readinto_at` / `write_at`), with no per-sector Python loop.  Errors become CHECK
CONDITION with fixed-format sense data, kept for REQUEST SENSE.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vmm.devices.blockio import read_into, write_from
from vmm.storage.image import DiskImage, DiskImageError

BLOCK = 512

GOOD = 0x00
CHECK_CONDITION = 0x02

NO_SENSE = 0x0
MEDIUM_ERROR = 0x3
ILLEGAL_REQUEST = 0x5
UNIT_ATTENTION = 0x6
DATA_PROTECT = 0x7

ASC_INVALID_OPCODE = (0x20, 0x00)
ASC_LBA_OUT_OF_RANGE = (0x21, 0x00)
ASC_INVALID_FIELD_IN_CDB = (0x24, 0x00)
ASC_INVALID_FIELD_IN_PARAM = (0x26, 0x00)
ASC_PARAM_LIST_LENGTH = (0x1A, 0x00)
ASC_WRITE_PROTECTED = (0x27, 0x00)
ASC_READ_ERROR = (0x11, 0x00)
ASC_WRITE_ERROR = (0x0C, 0x00)

MAX_UNMAP_BLOCKS = 0x0040_0000         # 2 GiB per UNMAP descriptor
MAX_UNMAP_DESCRIPTORS = 256
MAX_TRANSFER_BLOCKS = 0xFFFF


class DataOverrun(Exception):
    """The command moves more data than the request's buffers hold (a transport-level error)."""


class ScsiError(Exception):
    def __init__(self, key: int, asc: tuple[int, int]):
        super().__init__(f"sense key {key:#x} asc {asc[0]:#x}/{asc[1]:#x}")
        self.key = key
        self.asc = asc


def fixed_sense(key: int, asc: tuple[int, int]) -> bytes:
    return bytes([0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc[0], asc[1], 0, 0, 0, 0])


@dataclass
class ScsiResult:
    status: int
    sense: bytes = b""
    transferred: int = 0        # bytes moved to/from the data buffers


@dataclass
class DiskOptions:
    """What the attachment says (VirtualBox's storageattach/storagectl flags)."""
    non_rotational: bool = False
    discard: bool = False
    write_through: bool = False      # --hostiocache off: flush every write before completing
    serial: str = "VB00000000-00000000"


def _scatter(views: list[memoryview], data: bytes) -> int:
    done = 0
    for v in views:
        if done >= len(data):
            break
        n = min(len(v), len(data) - done)
        v[:n] = data[done:done + n]
        done += n
    return done


def _gather(views: list[memoryview], length: int) -> bytes:
    out = bytearray()
    for v in views:
        if len(out) >= length:
            break
        out += v[:length - len(out)]
    return bytes(out)


class ScsiDisk:
    def __init__(self, image: DiskImage, options: DiskOptions | None = None):
        self.image = image
        self.options = options or DiskOptions()
        self._sense = fixed_sense(NO_SENSE, (0, 0))

    # The image may be swapped under us (a snapshot's differencing image): always ask it.
    @property
    def blocks(self) -> int:
        return self.image.size // BLOCK

    @property
    def read_only(self) -> bool:
        return bool(self.image.read_only)

    # --- entry point ---------------------------------------------------------------------------
    def execute(self, cdb: bytes, data_out: list[memoryview], data_in: list[memoryview]) -> ScsiResult:
        try:
            n = self._dispatch(cdb, data_out, data_in)
        except ScsiError as e:
            self._sense = fixed_sense(e.key, e.asc)
            return ScsiResult(CHECK_CONDITION, self._sense)
        return ScsiResult(GOOD, b"", n)

    def _dispatch(self, cdb: bytes, out: list[memoryview], din: list[memoryview]) -> int:
        if not cdb:
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_OPCODE)
        op = cdb[0]
        handler = _HANDLERS.get(op)
        if handler is None:
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_OPCODE)
        if len(cdb) < _CDB_LEN.get(op >> 5, 16):
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB)
        return handler(self, cdb, out, din)

    # --- simple commands -------------------------------------------------------------------------
    def _test_unit_ready(self, cdb, out, din) -> int:
        return 0

    def _request_sense(self, cdb, out, din) -> int:
        sense, self._sense = self._sense, fixed_sense(NO_SENSE, (0, 0))
        return _scatter(din, sense[:cdb[4]])

    def _no_op(self, cdb, out, din) -> int:
        return 0

    def _inquiry(self, cdb, out, din) -> int:
        alloc = struct.unpack_from(">H", cdb, 3)[0]
        if cdb[1] & 0x02:                                  # CmdDt is obsolete
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB)
        if cdb[1] & 0x01:
            data = self._vpd(cdb[2])
        else:
            if cdb[2]:
                raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB)
            data = bytes([0x00, 0x00, 0x05, 0x02, 31, 0, 0, 0x02]) + \
                b"VBOX    " + b"HARDDISK        " + b"1.0 "
        return _scatter(din, data[:alloc])

    def _vpd(self, page: int) -> bytes:
        if page == 0x00:
            body = bytes([0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2])
        elif page == 0x80:
            body = self.options.serial.encode()[:20].ljust(20)
        elif page == 0x83:
            ident = b"VBOX    " + self.options.serial.encode()[:20]
            body = bytes([0x02, 0x01, 0x00, len(ident)]) + ident     # T10 vendor id, ASCII
        elif page == 0xB0:
            body = bytearray(60)
            struct.pack_into(">H", body, 2, 1)                        # transfer granularity
            struct.pack_into(">I", body, 4, MAX_TRANSFER_BLOCKS)
            if self.options.discard:
                struct.pack_into(">I", body, 16, MAX_UNMAP_BLOCKS)
                struct.pack_into(">I", body, 20, MAX_UNMAP_DESCRIPTORS)
                struct.pack_into(">I", body, 24, 1)                       # granularity
            body = bytes(body)
        elif page == 0xB1:
            body = bytearray(60)
            struct.pack_into(">H", body, 0, 1 if self.options.non_rotational else 0)
            body = bytes(body)
        elif page == 0xB2:
            body = bytes([0, 0x80 if self.options.discard else 0, 0x02 if self.options.discard else 0, 0])
        else:
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB)
        return bytes([0x00, page]) + struct.pack(">H", len(body)) + body

    def _read_capacity10(self, cdb, out, din) -> int:
        last = min(self.blocks - 1, 0xFFFF_FFFF)
        return _scatter(din, struct.pack(">II", last, BLOCK))

    def _service_action_in(self, cdb, out, din) -> int:
        if cdb[1] & 0x1F != 0x10:
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB)
        alloc = struct.unpack_from(">I", cdb, 10)[0]
        data = bytearray(32)
        struct.pack_into(">QI", data, 0, self.blocks - 1, BLOCK)
        if self.options.discard:
            data[14] = 0x80                                  # LBPME
        return _scatter(din, bytes(data[:alloc]))

    def _report_luns(self, cdb, out, din) -> int:
        alloc = struct.unpack_from(">I", cdb, 6)[0]
        data = struct.pack(">II", 8, 0) + bytes(8)           # one LUN: 0
        return _scatter(din, data[:alloc])

    def _mode_pages(self, page: int, pc: int) -> bytes:
        changeable = pc == 1
        caching = bytearray(20)
        caching[0], caching[1] = 0x08, 18
        if not changeable and not self.options.write_through:
            caching[2] = 0x04                                # WCE: the guest must flush
        control = bytearray(12)
        control[0], control[1] = 0x0A, 10
        pages = {0x08: bytes(caching), 0x0A: bytes(control)}
        if page == 0x3F:
            return b"".join(pages[k] for k in sorted(pages))
        if page not in pages:
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB)
        return pages[page]

    def _mode_sense6(self, cdb, out, din) -> int:
        pages = self._mode_pages(cdb[2] & 0x3F, cdb[2] >> 6)
        hdr = bytes([3 + len(pages), 0, 0x80 if self.read_only else 0, 0])
        return _scatter(din, (hdr + pages)[:cdb[4]])

    def _mode_sense10(self, cdb, out, din) -> int:
        pages = self._mode_pages(cdb[2] & 0x3F, cdb[2] >> 6)
        hdr = struct.pack(">HBBHH", 6 + len(pages), 0, 0x80 if self.read_only else 0, 0, 0)
        alloc = struct.unpack_from(">H", cdb, 7)[0]
        return _scatter(din, (hdr + pages)[:alloc])

    # --- data transfer ---------------------------------------------------------------------------
    def _lba_count(self, cdb: bytes) -> tuple[int, int]:
        op = cdb[0]
        if op in (0x08, 0x0A):
            lba = ((cdb[1] & 0x1F) << 16) | (cdb[2] << 8) | cdb[3]
            count = cdb[4] or 256
        elif op in (0x28, 0x2A, 0x2F):
            lba, count = struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">H", cdb, 7)[0]
        elif op in (0xA8, 0xAA):
            lba, count = struct.unpack_from(">II", cdb, 2)
        else:
            lba, count = struct.unpack_from(">QI", cdb, 2)
        if lba + count > self.blocks:
            raise ScsiError(ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE)
        return lba, count

    def _read(self, cdb, out, din) -> int:
        lba, count = self._lba_count(cdb)
        length = count * BLOCK
        if sum(len(v) for v in din) < length:
            raise DataOverrun()
        try:
            return read_into(self.image, lba * BLOCK, din, length)
        except (DiskImageError, OSError):
            raise ScsiError(MEDIUM_ERROR, ASC_READ_ERROR)

    def _write(self, cdb, out, din) -> int:
        if self.read_only:
            raise ScsiError(DATA_PROTECT, ASC_WRITE_PROTECTED)
        lba, count = self._lba_count(cdb)
        length = count * BLOCK
        if sum(len(v) for v in out) < length:
            raise DataOverrun()
        try:
            done = write_from(self.image, lba * BLOCK, out, length)
            fua = cdb[0] != 0x0A and cdb[1] & 0x08
            if self.options.write_through or fua:
                self.image.flush()
        except (DiskImageError, OSError):
            raise ScsiError(MEDIUM_ERROR, ASC_WRITE_ERROR)
        return done

    def _verify(self, cdb, out, din) -> int:
        self._lba_count(cdb)
        return 0

    def _synchronize_cache(self, cdb, out, din) -> int:
        try:
            self.image.flush()
        except (DiskImageError, OSError):
            raise ScsiError(MEDIUM_ERROR, ASC_WRITE_ERROR)
        return 0

    def _unmap(self, cdb, out, din) -> int:
        if not self.options.discard:
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_OPCODE)
        if self.read_only:
            raise ScsiError(DATA_PROTECT, ASC_WRITE_PROTECTED)
        plen = struct.unpack_from(">H", cdb, 7)[0]
        if plen == 0:
            return 0
        if plen < 8:
            raise ScsiError(ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH)
        params = _gather(out, plen)
        if len(params) < plen:
            raise ScsiError(ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH)
        desc_len = struct.unpack_from(">H", params, 2)[0]
        if desc_len % 16 or 8 + desc_len > plen or desc_len // 16 > MAX_UNMAP_DESCRIPTORS:
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM)
        ranges = []
        for off in range(8, 8 + desc_len, 16):
            lba, count = struct.unpack_from(">QI", params, off)
            if lba + count > self.blocks:
                raise ScsiError(ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE)
            if count > MAX_UNMAP_BLOCKS:
                raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM)
            if count:
                ranges.append((lba, count))
        try:
            for lba, count in ranges:
                self.image.discard(lba * BLOCK, count * BLOCK)
        except (DiskImageError, OSError):
            raise ScsiError(MEDIUM_ERROR, ASC_WRITE_ERROR)
        return 0

    # --- saved state ---------------------------------------------------------------------------
    def get_state(self) -> bytes:
        return self._sense

    def set_state(self, sense: bytes) -> None:
        self._sense = bytes(sense)


# CDB length by group code (opcode >> 5).
_CDB_LEN = {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}

_HANDLERS = {
    0x00: ScsiDisk._test_unit_ready,
    0x03: ScsiDisk._request_sense,
    0x08: ScsiDisk._read,
    0x0A: ScsiDisk._write,
    0x12: ScsiDisk._inquiry,
    0x1A: ScsiDisk._mode_sense6,
    0x1B: ScsiDisk._no_op,                # START STOP UNIT
    0x1E: ScsiDisk._no_op,                # PREVENT ALLOW MEDIUM REMOVAL
    0x25: ScsiDisk._read_capacity10,
    0x28: ScsiDisk._read,
    0x2A: ScsiDisk._write,
    0x2F: ScsiDisk._verify,
    0x35: ScsiDisk._synchronize_cache,
    0x42: ScsiDisk._unmap,
    0x5A: ScsiDisk._mode_sense10,
    0x88: ScsiDisk._read,
    0x8A: ScsiDisk._write,
    0x91: ScsiDisk._synchronize_cache,
    0x9E: ScsiDisk._service_action_in,
    0xA0: ScsiDisk._report_luns,
    0xA8: ScsiDisk._read,
    0xAA: ScsiDisk._write,
}
