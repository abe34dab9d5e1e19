"""A CD/DVD-ROM drive (the MMC command subset of VirtualBox's ATAPI drive) over a read-only image.

The transport (the IDE channel's PACKET protocol, AHCI's ATAPI commands) hands a 12-byte
CDB to `AtapiDrive.command`; the drive answers with a `ScsiResult`: GOOD with the data the
command returns (small replies as bytes, sector reads as an image range the transport pulls
piece by piece, so a wild READ(12) never builds a large buffer), or CHECK CONDITION with the
sense data kept for REQUEST SENSE.  An ISO 9660 image is a sequence of 2048-byte sectors;
the drive may be empty, and a medium change raises UNIT ATTENTION and a media event as a
real drive does, which is what Linux's sr driver and its GET EVENT STATUS NOTIFICATION
polling look for.  Command set and replies follow VirtualBox's ATAPI code
(src/VBox/Devices/Storage/ATAPIPassthrough.cpp, DevATA.cpp: atapiR3*).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vmm.devices.blockio import read_into
from vmm.storage.image import DiskImage, DiskImageError

BLOCK = 2048
CD_MAX_BLOCKS = 360_000                 # an 80-minute CD; larger images are DVDs

# Sense keys and (ASC, ASCQ) pairs
NO_SENSE, NOT_READY, MEDIUM_ERROR, ILLEGAL_REQUEST, UNIT_ATTENTION = 0x0, 0x2, 0x3, 0x5, 0x6
ASC_NONE = (0x00, 0x00)
ASC_INVALID_OPCODE = (0x20, 0x00)
ASC_LBA_OUT_OF_RANGE = (0x21, 0x00)
ASC_INVALID_FIELD = (0x24, 0x00)
ASC_MEDIUM_CHANGED = (0x28, 0x00)
ASC_SAVING_NOT_SUPPORTED = (0x39, 0x00)
ASC_NO_MEDIUM = (0x3A, 0x00)
ASC_READ_ERROR = (0x11, 0x00)
ASC_REMOVAL_PREVENTED = (0x53, 0x02)

# Operation codes
TEST_UNIT_READY, REQUEST_SENSE, INQUIRY, MODE_SELECT_6, MODE_SENSE_6 = 0x00, 0x03, 0x12, 0x15, 0x1A
START_STOP_UNIT, PREVENT_ALLOW, READ_FORMAT_CAPACITIES, READ_CAPACITY = 0x1B, 0x1E, 0x23, 0x25
READ_10, SEEK_10, VERIFY_10, READ_TOC, GET_CONFIGURATION = 0x28, 0x2B, 0x2F, 0x43, 0x46
GET_EVENT_STATUS, READ_DISC_INFO, READ_TRACK_INFO = 0x4A, 0x51, 0x52
MODE_SELECT_10, MODE_SENSE_10 = 0x55, 0x5A
READ_12, SET_STREAMING, MECHANISM_STATUS, READ_CD, SET_CD_SPEED = 0xA8, 0xB6, 0xBD, 0xBE, 0xBB

# Profiles and media events (MMC-6)
PROFILE_NONE, PROFILE_CD_ROM, PROFILE_DVD_ROM = 0x0000, 0x0008, 0x0010
EVENT_NONE, EVENT_NEW_MEDIA, EVENT_MEDIA_REMOVAL = 0, 2, 3

# Commands that report data without first reporting a pending UNIT ATTENTION
_NO_ATTENTION = {INQUIRY, REQUEST_SENSE, GET_CONFIGURATION, GET_EVENT_STATUS}
MAX_OUT = 0x10000                       # MODE SELECT parameter lists are accepted up to this size


@dataclass
class ScsiResult:
    """GOOD (check=False) with data-in (`data`, or `length` bytes of the image from `offset`),
    a data-out phase of `out_length` bytes, or CHECK CONDITION with `sense_key`."""
    check: bool = False
    sense_key: int = NO_SENSE
    data: bytes = b""
    image_offset: int | None = None     # data is this many bytes of the image from here
    length: int = 0
    out_length: int = 0

    @property
    def data_in(self) -> int:
        return self.length if self.image_offset is not None else len(self.data)


class ScsiError(Exception):
    def __init__(self, key: int, asc: tuple[int, int]):
        super().__init__(f"sense {key:#x}/{asc[0]:02x}/{asc[1]:02x}")
        self.key, self.asc = key, asc


def _be(value: int, size: int) -> bytes:
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "big")


def _msf(lba: int) -> bytes:
    frames = lba + 150
    return bytes((0, frames // (75 * 60) & 0xFF, frames // 75 % 60, frames % 75))


def _ascii(text: str, length: int) -> bytes:
    return text.encode("ascii", "replace")[:length].ljust(length)


class AtapiDrive:
    """The drive: `image` is the inserted medium (None: empty), `on_eject` hears a guest eject."""

    def __init__(self, image: DiskImage | None = None, serial: str = "VB0-CDROM",
                 on_eject: Callable[[], None] | None = None):
        self.image = image
        self.serial = serial
        self.on_eject = on_eject
        self.locked = False
        self.sense = (NO_SENSE, ASC_NONE)
        self.attention = False          # UNIT ATTENTION pending (medium may have changed)
        self.event = EVENT_NONE         # media event for GET EVENT STATUS NOTIFICATION

    # --- medium ----------------------------------------------------------------------------------
    @property
    def blocks(self) -> int:
        return self.image.size // BLOCK if self.image is not None else 0

    @property
    def profile(self) -> int:
        if self.image is None:
            return PROFILE_NONE
        return PROFILE_DVD_ROM if self.blocks > CD_MAX_BLOCKS else PROFILE_CD_ROM

    def insert(self, image: DiskImage | None) -> None:
        """The host changes the disc (None: eject); the guest sees a medium change."""
        self.image = image
        self.attention = True
        self.event = EVENT_NEW_MEDIA if image is not None else EVENT_MEDIA_REMOVAL
        if image is None:
            self.locked = False

    # --- command execution -----------------------------------------------------------------------
    def command(self, cdb: bytes) -> ScsiResult:
        cdb = bytes(cdb[:16]).ljust(16, b"\0")
        op = cdb[0]
        try:
            if self.attention and op not in _NO_ATTENTION:
                self.attention = False
                raise ScsiError(UNIT_ATTENTION, ASC_MEDIUM_CHANGED)
            handler = _HANDLERS.get(op)
            if handler is None:
                raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_OPCODE)
            result = handler(self, cdb)
        except ScsiError as e:
            self.sense = (e.key, e.asc)
            return ScsiResult(check=True, sense_key=e.key)
        if op != REQUEST_SENSE:
            self.sense = (NO_SENSE, ASC_NONE)
        return result

    def read_data(self, result: ScsiResult, offset: int, views: list[memoryview]) -> int:
        """Copy data-in bytes [offset, offset + len(views)) of `result` into the views."""
        want = sum(len(v) for v in views)
        want = max(0, min(want, result.data_in - offset))
        if result.image_offset is None:
            chunk, done = result.data[offset:offset + want], 0
            for v in views:
                n = min(len(v), len(chunk) - done)
                if n <= 0:
                    break
                v[:n] = chunk[done:done + n]
                done += n
            return done
        if self.image is None:
            raise ScsiError(NOT_READY, ASC_NO_MEDIUM)
        try:
            return read_into(self.image, result.image_offset + offset, views, want)
        except (DiskImageError, OSError):
            raise ScsiError(MEDIUM_ERROR, ASC_READ_ERROR)

    def read_failed(self, error: ScsiError) -> None:
        """The transport caught a read error while moving data: remember it for REQUEST SENSE."""
        self.sense = (error.key, error.asc)

    def _need_medium(self) -> None:
        if self.image is None:
            raise ScsiError(NOT_READY, ASC_NO_MEDIUM)

    @staticmethod
    def _reply(data: bytes, alloc: int) -> ScsiResult:
        return ScsiResult(data=bytes(data[:alloc]))

    # --- commands ----------------------------------------------------------------------------------
    def _test_unit_ready(self, cdb: bytes) -> ScsiResult:
        self._need_medium()
        return ScsiResult()

    def _request_sense(self, cdb: bytes) -> ScsiResult:
        key, (asc, ascq) = self.sense
        if key == NO_SENSE and self.attention:
            self.attention = False
            key, (asc, ascq) = UNIT_ATTENTION, ASC_MEDIUM_CHANGED
        data = bytearray(18)
        data[0], data[2], data[7], data[12], data[13] = 0x70, key, 10, asc, ascq
        self.sense = (NO_SENSE, ASC_NONE)
        return self._reply(data, cdb[4])

    def _inquiry(self, cdb: bytes) -> ScsiResult:
        if cdb[1] & 0x01 or cdb[2]:
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD)        # no vital product data pages
        data = bytes((0x05, 0x80, 0x00, 0x21, 31, 0, 0, 0)) + _ascii("VBOX", 8) + _ascii("CD-ROM", 16) \
            + _ascii("1.0", 4)
        return self._reply(data, cdb[3] << 8 | cdb[4])

    def _start_stop(self, cdb: bytes) -> ScsiResult:
        load_eject, start = cdb[4] & 0x02, cdb[4] & 0x01
        if load_eject and not start:
            if self.locked:
                raise ScsiError(ILLEGAL_REQUEST, ASC_REMOVAL_PREVENTED)
            if self.image is not None:
                self.image = None
                self.event = EVENT_MEDIA_REMOVAL
                if self.on_eject is not None:
                    self.on_eject()
        return ScsiResult()

    def _prevent_allow(self, cdb: bytes) -> ScsiResult:
        self.locked = bool(cdb[4] & 0x01)
        return ScsiResult()

    def _read_capacity(self, cdb: bytes) -> ScsiResult:
        self._need_medium()
        return ScsiResult(data=_be(self.blocks - 1, 4) + _be(BLOCK, 4))

    def _read_format_capacities(self, cdb: bytes) -> ScsiResult:
        if self.image is None:
            desc = _be(CD_MAX_BLOCKS, 4) + bytes((0x03,)) + _be(BLOCK, 3)   # no medium: maximum capacity
        else:
            desc = _be(self.blocks, 4) + bytes((0x02,)) + _be(BLOCK, 3)     # formatted medium
        return self._reply(bytes((0, 0, 0, 8)) + desc, cdb[7] << 8 | cdb[8])

    def _read(self, lba: int, count: int) -> ScsiResult:
        self._need_medium()
        if lba + count > self.blocks:
            raise ScsiError(ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE)
        return ScsiResult(image_offset=lba * BLOCK, length=count * BLOCK)

    def _read10(self, cdb: bytes) -> ScsiResult:
        return self._read(int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[7:9], "big"))

    def _read12(self, cdb: bytes) -> ScsiResult:
        return self._read(int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[6:10], "big"))

    def _read_cd(self, cdb: bytes) -> ScsiResult:
        sector_type = cdb[1] >> 2 & 0x7
        lba, count = int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[6:9], "big")
        if sector_type not in (0, 2) or cdb[10] & 0x7:                  # mode 1 data only, no sub-channel
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD)
        if cdb[9] & 0xF8 == 0x10:                                        # user data only
            return self._read(lba, count)
        if cdb[9] & 0xF8 == 0:
            self._read(lba, count)
            return ScsiResult()
        raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD)             # raw sectors are not synthesised

    def _seek(self, cdb: bytes) -> ScsiResult:
        self._need_medium()
        if int.from_bytes(cdb[2:6], "big") >= self.blocks:
            raise ScsiError(ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE)
        return ScsiResult()

    def _verify(self, cdb: bytes) -> ScsiResult:
        self._read10(cdb)
        return ScsiResult()

    def _no_data(self, cdb: bytes) -> ScsiResult:
        return ScsiResult()

    def _read_toc(self, cdb: bytes) -> ScsiResult:
        self._need_medium()
        msf, fmt = bool(cdb[1] & 0x02), cdb[2] & 0x0F
        if not fmt:
            fmt = cdb[9] >> 6                                            # the older SFF-8020 field
        track, alloc = cdb[6], cdb[7] << 8 | cdb[8]
        addr = _msf if msf else (lambda lba: _be(lba, 4))
        if fmt == 0:
            if track > 1 and track != 0xAA:
                raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD)
            body = b"" if track == 0xAA else bytes((0, 0x14, 1, 0)) + addr(0)
            body += bytes((0, 0x14, 0xAA, 0)) + addr(self.blocks)
            return self._reply(_be(len(body) + 2, 2) + bytes((1, 1)) + body, alloc)
        if fmt == 1:                                                     # multi-session: one session
            body = bytes((0, 0x14, 1, 0)) + addr(0)
            return self._reply(_be(len(body) + 2, 2) + bytes((1, 1)) + body, alloc)
        if fmt == 2:                                                     # raw TOC, always MSF
            lead_out = _msf(self.blocks)
            entries = [bytes((1, 0x14, 0, 0xA0, 0, 0, 0, 0, 1, 0, 0)),
                       bytes((1, 0x14, 0, 0xA1, 0, 0, 0, 0, 1, 0, 0)),
                       bytes((1, 0x14, 0, 0xA2, 0, 0, 0, 0)) + lead_out[1:],
                       bytes((1, 0x14, 0, 1, 0, 0, 0, 0)) + _msf(0)[1:]]
            body = b"".join(entries)
            return self._reply(_be(len(body) + 2, 2) + bytes((1, 1)) + body, alloc)
        raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD)

    def _features(self) -> list[tuple[int, bytes, bool]]:
        """(feature code, descriptor, current) in code order."""
        has = self.image is not None
        cur = self.profile
        profiles = b"".join(_be(p, 2) + bytes((int(p == cur), 0)) for p in (PROFILE_DVD_ROM, PROFILE_CD_ROM))
        out = [(0x0000, profiles, True),
               (0x0001, _be(2, 4) + bytes(4), True),                    # core: ATAPI
               (0x0002, bytes((0x02, 0, 0, 0)), True),                  # morphing: OCEvent (polled GESN)
               (0x0003, bytes((0x29, 0, 0, 0)), True),                  # removable: tray, eject, lock
               (0x0010, _be(BLOCK, 4) + _be(1, 2) + bytes(2), has),     # random readable
               (0x001E, bytes(4), cur == PROFILE_CD_ROM),               # CD read
               (0x001F, bytes(4), cur == PROFILE_DVD_ROM),              # DVD read
               (0x0100, b"", True),                                     # power management
               (0x0105, b"", True)]                                     # timeout
        return out

    def _get_configuration(self, cdb: bytes) -> ScsiResult:
        rt, start, alloc = cdb[1] & 0x03, cdb[2] << 8 | cdb[3], cdb[7] << 8 | cdb[8]
        if rt == 3:
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD)
        body = b""
        for code, data, current in self._features():
            if code < start or (rt == 1 and not current) or (rt == 2 and code != start):
                continue
            version = 1 if code in (0x0001, 0x0002) else 0
            persistent = code in (0x0000, 0x0001, 0x0002, 0x0003, 0x0100, 0x0105)
            body += _be(code, 2) + bytes((version << 2 | persistent << 1 | current, len(data))) + data
        header = _be(len(body) + 4, 4) + bytes(2) + _be(self.profile, 2)
        return self._reply(header + body, alloc)

    def _event_status(self, cdb: bytes) -> ScsiResult:
        if not cdb[1] & 0x01:
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD)         # only polled mode
        alloc = cdb[7] << 8 | cdb[8]
        if not cdb[4] & 0x10:                                            # media class not asked for
            return self._reply(_be(2, 2) + bytes((0x80, 0x10)), alloc)
        event, self.event = self.event, EVENT_NONE
        desc = bytes((event, 0x02 if self.image is not None else 0x00, 0, 0))
        return self._reply(_be(2 + len(desc), 2) + bytes((0x04, 0x10)) + desc, alloc)

    def _disc_info(self, cdb: bytes) -> ScsiResult:
        if cdb[1] & 0x07:
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD)
        self._need_medium()
        data = bytearray(34)
        data[0:2] = _be(32, 2)
        data[2] = 0x0E                         # last session complete, disc complete
        data[3] = data[4] = data[5] = data[6] = 1
        data[7] = 0x20                         # unrestricted use
        data[16:24] = b"\xff" * 8              # no lead-in/lead-out start times
        return self._reply(data, cdb[7] << 8 | cdb[8])

    def _track_info(self, cdb: bytes) -> ScsiResult:
        self._need_medium()
        kind, number = cdb[1] & 0x03, int.from_bytes(cdb[2:6], "big")
        if (kind == 1 and number not in (1, 0xFF)) or (kind == 0 and number >= self.blocks) or kind > 1:
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD)
        data = bytearray(36)
        data[0:2] = _be(34, 2)
        data[2] = data[3] = 1                  # track 1, session 1
        data[5], data[6] = 0x04, 0x01          # data track, data mode 1
        data[24:28] = _be(self.blocks, 4)      # track size
        return self._reply(data, cdb[7] << 8 | cdb[8])

    def _mode_page(self, page: int, control: int) -> bytes:
        if page == 0x01:                       # read/write error recovery
            body = bytes((0x01, 0x06, 0, 5, 0, 0, 0, 0))
        elif page == 0x2A:                     # CD/DVD capabilities and mechanical status
            body = bytearray(28)
            body[0], body[1] = 0x2A, 26
            body[2] = 0x3B                     # reads CD-R, CD-RW, method 2, DVD-ROM, DVD-R
            body[4] = 0x71                     # audio play, composite, digital ports, multi-session
            body[5] = 0xFF                     # CD-DA, accurate stream, R-W, C2 pointers, ISRC, UPC, barcode
            body[6] = 0x29 | (0x02 if self.locked else 0)     # tray, eject, lock (and its state)
            body[8:10] = _be(5632, 2)          # maximum read speed (32x) in kB/s
            body[10:12] = _be(256, 2)
            body[12:14] = _be(2048, 2)         # buffer size in KiB
            body[14:16] = _be(5632, 2)
            body = bytes(body)
        else:
            raise ScsiError(ILLEGAL_REQUEST, ASC_INVALID_FIELD)
        if control == 1:                       # changeable values: none
            body = body[:2] + bytes(len(body) - 2)
        return body

    def _mode_sense(self, page: int, control: int) -> bytes:
        if control == 3:
            raise ScsiError(ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED)
        if page == 0x3F:
            return self._mode_page(0x01, control) + self._mode_page(0x2A, control)
        return self._mode_page(page, control)

    def _mode_sense10(self, cdb: bytes) -> ScsiResult:
        pages = self._mode_sense(cdb[2] & 0x3F, cdb[2] >> 6)
        medium = 0x70 if self.image is None else 0x01                    # no disc / 120 mm data disc
        header = _be(len(pages) + 6, 2) + bytes((medium, 0, 0, 0, 0, 0))
        return self._reply(header + pages, cdb[7] << 8 | cdb[8])

    def _mode_sense6(self, cdb: bytes) -> ScsiResult:
        pages = self._mode_sense(cdb[2] & 0x3F, cdb[2] >> 6)
        medium = 0x70 if self.image is None else 0x01
        return self._reply(bytes((len(pages) + 3 & 0xFF, medium, 0, 0)) + pages, cdb[4])

    def _mode_select(self, cdb: bytes) -> ScsiResult:
        length = cdb[7] << 8 | cdb[8] if cdb[0] == MODE_SELECT_10 else cdb[4]
        return ScsiResult(out_length=min(length, MAX_OUT))            # accepted, nothing is changeable

    def _set_streaming(self, cdb: bytes) -> ScsiResult:
        return ScsiResult(out_length=min(int.from_bytes(cdb[9:11], "big"), MAX_OUT))   # accepted, ignored

    def _mechanism_status(self, cdb: bytes) -> ScsiResult:
        return self._reply(bytes(8), int.from_bytes(cdb[8:10], "big"))

    # --- saved state ----------------------------------------------------------------------------------
    def get_state(self) -> dict:
        key, (asc, ascq) = self.sense
        return {"locked": self.locked, "sense": [key, asc, ascq], "attention": self.attention,
                "event": self.event, "present": self.image is not None}

    def set_state(self, state: dict) -> None:
        self.locked = bool(state.get("locked", False))
        key, asc, ascq = state.get("sense", [0, 0, 0])
        self.sense = (key, (asc, ascq))
        self.attention = bool(state.get("attention", False))
        self.event = int(state.get("event", EVENT_NONE))


_HANDLERS: dict[int, Callable[[AtapiDrive, bytes], ScsiResult]] = {
    TEST_UNIT_READY: AtapiDrive._test_unit_ready,
    REQUEST_SENSE: AtapiDrive._request_sense,
    INQUIRY: AtapiDrive._inquiry,
    START_STOP_UNIT: AtapiDrive._start_stop,
    PREVENT_ALLOW: AtapiDrive._prevent_allow,
    READ_FORMAT_CAPACITIES: AtapiDrive._read_format_capacities,
    READ_CAPACITY: AtapiDrive._read_capacity,
    READ_10: AtapiDrive._read10,
    READ_12: AtapiDrive._read12,
    READ_CD: AtapiDrive._read_cd,
    SEEK_10: AtapiDrive._seek,
    VERIFY_10: AtapiDrive._verify,
    READ_TOC: AtapiDrive._read_toc,
    GET_CONFIGURATION: AtapiDrive._get_configuration,
    GET_EVENT_STATUS: AtapiDrive._event_status,
    READ_DISC_INFO: AtapiDrive._disc_info,
    READ_TRACK_INFO: AtapiDrive._track_info,
    MODE_SENSE_6: AtapiDrive._mode_sense6,
    MODE_SENSE_10: AtapiDrive._mode_sense10,
    MODE_SELECT_6: AtapiDrive._mode_select,
    MODE_SELECT_10: AtapiDrive._mode_select,
    MECHANISM_STATUS: AtapiDrive._mechanism_status,
    SET_CD_SPEED: AtapiDrive._no_data,
    SET_STREAMING: AtapiDrive._set_streaming,
}
