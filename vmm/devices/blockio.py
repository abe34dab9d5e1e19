"""DMA between guest-RAM scatter lists and a DiskImage, shared by the AHCI and SCSI disks.

A guest's buffers are usually scattered 4 KiB pages; one image call per page costs more
than the copy, so a list with many segments goes through one bounce buffer (one image
call, then memoryview slice copies), while a few large segments go straight to the image.
"""

from __future__ import annotations

from vmm.memory import notify_dma
from vmm.storage.image import DiskImage

DIRECT_MAX_SEGMENTS = 4
BOUNCE_CHUNK = 4 << 20


def _trim(views: list[memoryview], length: int) -> list[memoryview]:
    out, left = [], length
    for v in views:
        if left <= 0:
            break
        if len(v) > left:
            v = v[:left]
        out.append(v)
        left -= len(v)
    return out


def _groups(views: list[memoryview]):
    """Consecutive segments in groups of at most BOUNCE_CHUNK bytes (a larger segment alone)."""
    i = 0
    while i < len(views):
        group, size = [], 0
        while i < len(views) and (not group or size + len(views[i]) <= BOUNCE_CHUNK):
            group.append(views[i])
            size += len(views[i])
            i += 1
        yield group, size


def read_into(image: DiskImage, offset: int, views: list[memoryview], length: int) -> int:
    """Fill the first `length` bytes of the views from the image at `offset`; returns bytes moved."""
    views = _trim(views, length)
    try:
        return _read_into(image, offset, views)
    finally:
        notify_dma(views)       # an engine drops code it translated from these pages


def _read_into(image: DiskImage, offset: int, views: list[memoryview]) -> int:
    if len(views) <= DIRECT_MAX_SEGMENTS:
        for v in views:
            image.readinto_at(offset, v)
            offset += len(v)
        return sum(len(v) for v in views)
    done = 0
    for group, size in _groups(views):
        # One image read per chunk of segments, then copy out.
        bounce = memoryview(bytearray(size))
        image.readinto_at(offset + done, bounce)
        pos = 0
        for v in group:
            n = len(v)
            v[:] = bounce[pos:pos + n]
            pos += n
        done += size
    return done


def write_from(image: DiskImage, offset: int, views: list[memoryview], length: int) -> int:
    """Write the first `length` bytes of the views to the image at `offset`; returns bytes moved."""
    views = _trim(views, length)
    if len(views) <= DIRECT_MAX_SEGMENTS:
        for v in views:
            image.write_at(offset, v)
            offset += len(v)
        return sum(len(v) for v in views)
    done = 0
    for group, size in _groups(views):
        image.write_at(offset + done, b"".join(group))
        done += size
    return done
