"""Turn a raw disk image built by the guest builders into a dynamic VDI with the project's own
storage code, so the media the tests attach are written by the same VDI layer that reads them.

Holes of a sparse raw file are skipped (SEEK_DATA/SEEK_HOLE) and all-zero blocks stay
unallocated, so a 2 GiB disk with 700 MB of files makes a VDI of about 700 MB.
"""

from __future__ import annotations

import os
import uuid as uuidlib
from pathlib import Path

from vmm.storage.create import create_vdi

CHUNK = 1 << 20


def _data_ranges(fd: int, size: int):
    """(start, end) of the data regions of a file; the whole file where SEEK_DATA is missing."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:         # ENXIO: no data after pos
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size)
        pos = end


def raw_to_vdi(raw: Path, vdi: Path, image_uuid: uuidlib.UUID) -> None:
    """Write `vdi` (replacing it) with the contents of `raw`; the UUID is given so a rebuild of the
    same inputs yields the same medium identity."""
    size = raw.stat().st_size
    tmp = vdi.with_name(vdi.name + ".tmp")
    tmp.unlink(missing_ok=True)
    image = create_vdi(str(tmp), size, uuid=image_uuid)
    try:
        fd = os.open(raw, os.O_RDONLY)
        try:
            for start, end in _data_ranges(fd, size):
                pos = start - start % CHUNK
                while pos < end:
                    data = os.pread(fd, min(CHUNK, size - pos), pos)
                    image.write_at(pos, data)
                    pos += len(data)
        finally:
            os.close(fd)
        image.flush()
    finally:
        image.close()
    os.replace(tmp, vdi)
