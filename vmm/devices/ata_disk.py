"""An ATA hard disk (the ACS command subset libata uses) over a DiskImage, for the AHCI HBA.

The HBA decodes the Register H2D FIS and the PRDT; this module executes the command
against the image: IDENTIFY DEVICE, READ/WRITE DMA (EXT), READ/WRITE SECTORS (EXT) and
the FPDMA QUEUED (NCQ) forms, FLUSH CACHE (EXT), DATA SET MANAGEMENT/TRIM, SET FEATURES,
READ LOG (EXT) directory, power-management no-ops.  Data moves straight between guest-RAM
memoryviews and the image.  A failing command returns ERR status with an ATA error code.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vmm.devices.blockio import read_into, write_from
from vmm.devices.virtio.scsi_disk import DiskOptions
from vmm.storage.image import DiskImage, DiskImageError

SECTOR = 512

ST_ERR, ST_DRQ, ST_DSC, ST_DRDY, ST_BSY = 0x01, 0x08, 0x10, 0x40, 0x80
ER_ABRT, ER_IDNF, ER_UNC = 0x04, 0x10, 0x40
STATUS_OK = ST_DRDY | ST_DSC

NCQ_DEPTH = 32

READS = {0xC8: False, 0x25: True, 0x20: False, 0x24: True, 0x60: True}      # opcode -> lba48
WRITES = {0xCA: False, 0x35: True, 0x30: False, 0x34: True, 0x61: True}
PIO = {0x20, 0x24, 0x30, 0x34, 0xEC, 0x2F}
NCQ = {0x60, 0x61}


@dataclass
class AtaResult:
    status: int = STATUS_OK
    error: int = 0
    transferred: int = 0
    pio: bool = False


class AtaAbort(Exception):
    def __init__(self, error: int = ER_ABRT):
        super().__init__(f"ATA error {error:#x}")
        self.error = error


@dataclass
class AtaTaskfile:
    command: int
    features: int
    lba: int
    count: int
    device: int

    @classmethod
    def from_fis(cls, fis: bytes) -> AtaTaskfile:
        lba = fis[4] | fis[5] << 8 | fis[6] << 16 | fis[8] << 24 | fis[9] << 32 | fis[10] << 40
        return cls(command=fis[2], features=fis[3] | fis[11] << 8, lba=lba,
                   count=fis[12] | fis[13] << 8, device=fis[7])


def _ata_string(text: str, length: int) -> bytes:
    raw = text.encode("ascii", "replace")[:length].ljust(length)
    return b"".join(raw[i + 1:i + 2] + raw[i:i + 1] for i in range(0, length, 2))


def _gather(views: list[memoryview], length: int) -> bytes:
    out = bytearray()
    for v in views:
        if len(out) >= length:
            break
        out += v[:length - len(out)]
    return bytes(out)


def _scatter(views: list[memoryview], data: bytes) -> int:
    done = 0
    for v in views:
        if done >= len(data):
            break
        n = min(len(v), len(data) - done)
        v[:n] = data[done:done + n]
        done += n
    return done


class AtaDisk:
    def __init__(self, image: DiskImage, options: DiskOptions | None = None):
        self.image = image
        self.options = options or DiskOptions()
        self.write_cache = not self.options.write_through

    # The image may be swapped under us (a snapshot's differencing image): always ask it.
    @property
    def sectors(self) -> int:
        return self.image.size // SECTOR

    @property
    def read_only(self) -> bool:
        return bool(self.image.read_only)

    # --- what the HBA needs to know before moving data ------------------------------------------
    @staticmethod
    def transfer_length(tf: AtaTaskfile) -> int:
        """Bytes the command moves through the PRDT (0 for non-data commands)."""
        op = tf.command
        if op in NCQ:
            return (tf.features or 0x10000) * SECTOR
        if op in READS or op in WRITES:
            lba48 = READS.get(op, WRITES.get(op))
            return (tf.count or (0x10000 if lba48 else 0x100)) * SECTOR
        if op == 0xEC:
            return SECTOR
        if op == 0x06:
            return (tf.count or 0x10000) * SECTOR
        if op in (0x2F, 0x47):
            return (tf.count or 0x10000) * SECTOR
        return 0

    # --- execution -------------------------------------------------------------------------------
    def execute(self, tf: AtaTaskfile, views: list[memoryview]) -> AtaResult:
        try:
            return self._dispatch(tf, views)
        except AtaAbort as e:
            return AtaResult(status=STATUS_OK | ST_ERR, error=e.error, pio=tf.command in PIO)

    def _dispatch(self, tf: AtaTaskfile, views: list[memoryview]) -> AtaResult:
        op = tf.command
        if op in READS:
            return self._read(tf, views, READS[op])
        if op in WRITES:
            return self._write(tf, views, WRITES[op])
        if op == 0xEC:
            return AtaResult(transferred=_scatter(views, self.identify()), pio=True)
        if op in (0xE7, 0xEA):
            try:
                self.image.flush()
            except (DiskImageError, OSError):
                raise AtaAbort(ER_ABRT)
            return AtaResult()
        if op == 0x06:
            return self._dsm(tf, views)
        if op == 0xEF:
            return self._set_features(tf)
        if op in (0x2F, 0x47):
            return self._read_log(tf, views)
        if op in (0x40, 0x42):                       # READ VERIFY SECTORS (EXT)
            lba48 = op == 0x42
            count = tf.count or (0x10000 if lba48 else 0x100)
            self._check_range(self._lba(tf, lba48), count)
            return AtaResult()
        if op in (0xC6, 0x91, 0xE0, 0xE1, 0xE2, 0xE3, 0xE5, 0xE6):
            return AtaResult()                       # SET MULTIPLE, INIT PARAMS, power states
        raise AtaAbort(ER_ABRT)

    @staticmethod
    def _lba(tf: AtaTaskfile, lba48: bool) -> int:
        if lba48:
            return tf.lba
        return (tf.lba & 0xFF_FFFF) | (tf.device & 0x0F) << 24

    def _check_range(self, lba: int, count: int) -> None:
        if lba + count > self.sectors:
            raise AtaAbort(ER_IDNF | ER_ABRT)

    def _rw_args(self, tf: AtaTaskfile, lba48: bool) -> tuple[int, int]:
        if tf.command in NCQ:
            count = tf.features or 0x10000
        else:
            count = tf.count or (0x10000 if lba48 else 0x100)
        lba = self._lba(tf, lba48)
        self._check_range(lba, count)
        return lba, count

    def _read(self, tf: AtaTaskfile, views: list[memoryview], lba48: bool) -> AtaResult:
        lba, count = self._rw_args(tf, lba48)
        try:
            done = read_into(self.image, lba * SECTOR, views, count * SECTOR)
        except (DiskImageError, OSError):
            raise AtaAbort(ER_UNC)
        return AtaResult(transferred=done, pio=tf.command in PIO)

    def _write(self, tf: AtaTaskfile, views: list[memoryview], lba48: bool) -> AtaResult:
        if self.read_only:
            raise AtaAbort(ER_ABRT)
        lba, count = self._rw_args(tf, lba48)
        try:
            done = write_from(self.image, lba * SECTOR, views, count * SECTOR)
            fua = tf.command in NCQ and tf.device & 0x80
            if not self.write_cache or self.options.write_through or fua:
                self.image.flush()
        except (DiskImageError, OSError):
            raise AtaAbort(ER_ABRT)
        return AtaResult(transferred=done, pio=tf.command in PIO)

    def _dsm(self, tf: AtaTaskfile, views: list[memoryview]) -> AtaResult:
        if not tf.features & 0x01 or not self.options.discard:
            raise AtaAbort(ER_ABRT)
        if self.read_only:
            raise AtaAbort(ER_ABRT)
        blocks = tf.count or 0x10000
        data = _gather(views, blocks * SECTOR)
        ranges = []
        for off in range(0, len(data) - 7, 8):
            entry = int.from_bytes(data[off:off + 8], "little")
            lba, count = entry & 0xFFFF_FFFF_FFFF, entry >> 48
            if count:
                self._check_range(lba, count)
                ranges.append((lba, count))
        try:
            for lba, count in ranges:
                self.image.discard(lba * SECTOR, count * SECTOR)
        except (DiskImageError, OSError):
            raise AtaAbort(ER_ABRT)
        return AtaResult(transferred=len(data))

    def _set_features(self, tf: AtaTaskfile) -> AtaResult:
        sub = tf.features & 0xFF
        if sub == 0x02:
            self.write_cache = True
        elif sub == 0x82:
            self.write_cache = False
        elif sub not in (0x03, 0xAA, 0x55, 0x66, 0xCC, 0x05, 0x85):
            raise AtaAbort(ER_ABRT)
        return AtaResult()

    def _read_log(self, tf: AtaTaskfile, views: list[memoryview]) -> AtaResult:
        log, page = tf.lba & 0xFF, (tf.lba >> 8) & 0xFFFF
        count = tf.count or 0x10000
        if log != 0x00 or page + count > 1:
            raise AtaAbort(ER_ABRT)
        directory = bytearray(SECTOR)
        directory[0] = 1                              # log directory version 1, no logs
        return AtaResult(transferred=_scatter(views, bytes(directory)), pio=tf.command == 0x2F)

    # --- IDENTIFY DEVICE ---------------------------------------------------------------------------
    def identify(self) -> bytes:
        w = [0] * 256
        total = self.sectors
        cyls = min(total // (16 * 63), 16383)
        w[0] = 0x0040
        w[1], w[3], w[6] = cyls, 16, 63
        w[47] = 0x8010
        w[49] = 0x0B00                                # LBA, DMA, IORDY
        w[50] = 0x4000
        w[53] = 0x0007
        w[54], w[55], w[56] = cyls, 16, 63
        chs = cyls * 16 * 63
        w[57], w[58] = chs & 0xFFFF, chs >> 16
        w[59] = 0x0110
        lba28 = min(total, 0x0FFF_FFFF)
        w[60], w[61] = lba28 & 0xFFFF, lba28 >> 16
        w[63] = 0x0407
        w[64] = 0x0003
        w[65] = w[66] = w[67] = w[68] = 120
        w[75] = NCQ_DEPTH - 1
        w[76] = 0x0106                                # SATA gen1+gen2, NCQ
        w[80] = 0x01F0                                # ATA-4 .. ATA8-ACS
        w[82] = 0x4020                                # NOP, write cache
        w[83] = 0x7400                                # LBA48, FLUSH CACHE (EXT)
        w[84] = 0x4000
        w[85] = 0x4000 | (0x20 if self.write_cache else 0)
        w[86] = 0x3400
        w[87] = 0x4000
        w[88] = 0x407F                                # UDMA0-6, UDMA6 selected
        w[100:104] = [(total >> s) & 0xFFFF for s in (0, 16, 32, 48)]
        w[106] = 0x4000
        if self.options.discard:
            w[69] = 0x4000                            # deterministic read after TRIM
            w[105] = 8                                # 512-byte blocks of ranges per DSM
            w[169] = 0x0001                           # TRIM supported
        w[217] = 1 if self.options.non_rotational else 0
        w[222] = 0x101F
        raw = bytearray(struct.pack("<256H", *w))
        raw[20:40] = _ata_string(self.options.serial, 20)
        raw[46:54] = _ata_string("1.0", 8)
        raw[54:94] = _ata_string("VBOX HARDDISK", 40)
        raw[510] = 0xA5
        raw[511] = (-sum(raw[:511])) & 0xFF
        return bytes(raw)

    # --- saved state -------------------------------------------------------------------------------
    def get_state(self) -> dict:
        return {"write_cache": self.write_cache}

    def set_state(self, state: dict) -> None:
        self.write_cache = bool(state.get("write_cache", True))
