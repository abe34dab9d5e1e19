"""Creating VMDK images in VirtualBox's variants: monolithicSparse (Standard), monolithicFlat
(Fixed), twoGbMaxExtentSparse/Flat (Split2G), streamOptimized (Stream), and converting any open
image into one (what clonemedium, convertfromraw and appliance export need).

A sparse extent is laid out as VirtualBox and qemu do: header, embedded descriptor, redundant
grain directory and tables, grain directory and tables (all tables preallocated), grains from
the next grain boundary. Files are written under a temporary name and given their name only when
complete, so a crash never leaves a half-made image at the path.
"""

from __future__ import annotations

import os
import struct
import uuid as uuidlib

from vmm.storage.blockio import pwrite_all
from vmm.storage.create import as_uuid, create_new_file, publish_file
from vmm.storage.image import DiskImage, DiskImageError
from vmm.storage.vmdk import VmdkImage
from vmm.storage.vmdk_descriptor import Extent, new_descriptor
from vmm.storage.vmdk_header import SECTOR, new_header
from vmm.storage.vmdk_stream import write_stream

SPLIT_SIZE = 2047 * 1024 * 1024          # VMDK_2G_SPLIT_SIZE in VirtualBox's VMDK.cpp
CREATE_TYPES = {"standard": "monolithicSparse", "fixed": "monolithicFlat", "split2g": "twoGbMaxExtentSparse",
                "split2g-fixed": "twoGbMaxExtentFlat", "stream": "streamOptimized"}


def _sparse_layout(capacity: int, embedded: bool):
    """(header, gt sectors of the redundant and primary tables) for a new hosted sparse extent."""
    h = new_header(capacity, embedded_descriptor=embedded)
    pos = 1 + h.descriptor_size
    rgd = pos
    pos += h.gd_sectors
    rgt = pos
    pos += h.gd_entries * h.gt_sectors
    gd = pos
    pos += h.gd_sectors
    gt = pos
    pos += h.gd_entries * h.gt_sectors
    overhead = -(-pos // h.grain_size) * h.grain_size
    return h.with_(rgd_offset=rgd, gd_offset=gd, overhead=overhead), rgt, gt


def _write_sparse_extent(fd: int, capacity: int, text: bytes | None) -> None:
    h, rgt, gt = _sparse_layout(capacity, text is not None)
    pwrite_all(fd, h.pack(), 0)
    if text is not None:
        if len(text) > h.descriptor_size * SECTOR:
            raise DiskImageError("VMDK: the descriptor is too long for its embedded area")
        pwrite_all(fd, text.ljust(h.descriptor_size * SECTOR, b"\0"), SECTOR)
    for gd_at, first in ((h.rgd_offset, rgt), (h.gd_offset, gt)):
        gd = struct.pack(f"<{h.gd_entries}I",
                         *range(first, first + h.gd_entries * h.gt_sectors, h.gt_sectors))
        pwrite_all(fd, gd, gd_at * SECTOR)
    os.ftruncate(fd, h.overhead * SECTOR)


def _new_file(path: str) -> tuple[str, int]:
    if os.path.lexists(path):
        raise DiskImageError(f"{path}: cannot create the image: the file already exists")
    tmp = f"{path}.{os.getpid()}.creating"
    return tmp, create_new_file(tmp)


def create_vmdk(path: str, size: int, variant: str = "standard", uuid=None,
                adapter: str = "ide") -> VmdkImage:
    """A new empty VMDK of `size` bytes, opened writable (a stream image is opened read-only)."""
    variant = variant.lower()
    if variant not in CREATE_TYPES:
        raise DiskImageError(f"unsupported VMDK variant {variant!r} ({', '.join(CREATE_TYPES)})")
    if size <= 0:
        raise DiskImageError(f"{path}: VMDK: invalid size {size}")
    image_uuid = str(as_uuid(uuid) or uuidlib.uuid4())
    capacity = -(-size // SECTOR)
    ctype = CREATE_TYPES[variant]
    if variant == "stream":
        from vmm.storage.vmdk_stream import StreamWriter

        desc = new_descriptor(ctype, [Extent("RW", capacity, "SPARSE", os.path.basename(path))], image_uuid,
                              adapter)
        StreamWriter(path, capacity * SECTOR, desc).close()
        return VmdkImage.open(path, read_only=True)
    if variant == "standard":
        desc = new_descriptor(ctype, [Extent("RW", capacity, "SPARSE", os.path.basename(path))], image_uuid,
                              adapter)
        tmp, fd = _new_file(path)
        try:
            try:
                _write_sparse_extent(fd, capacity, desc.render().encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            publish_file(tmp, path)
        except OSError as e:
            raise DiskImageError(f"{path}: cannot create the image: {e.strerror or e}") from None
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        return VmdkImage.open(path)
    return _create_multi(path, capacity, variant, ctype, image_uuid, adapter)


def _create_multi(path: str, capacity: int, variant: str, ctype: str, image_uuid: str, adapter: str):
    """A descriptor file plus extent files (<name>-flat.vmdk, <name>-s001.vmdk, <name>-f001.vmdk ...)."""
    base, ext = os.path.splitext(path)
    ext = ext or ".vmdk"
    if variant == "fixed":
        pieces = [(f"{base}-flat{ext}", capacity)]
    else:
        per = SPLIT_SIZE // SECTOR
        letter = "f" if variant == "split2g-fixed" else "s"
        pieces = [(f"{base}-{letter}{i + 1:03d}{ext}", min(per, capacity - start))
                  for i, start in enumerate(range(0, capacity, per))]
    sparse = variant == "split2g"
    made: list[str] = []
    try:
        extents = []
        for fpath, sectors in pieces:
            tmp, fd = _new_file(fpath)
            try:
                if sparse:
                    _write_sparse_extent(fd, sectors, None)
                else:
                    os.ftruncate(fd, sectors * SECTOR)
                    _preallocate(fd, sectors * SECTOR, fpath)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                publish_file(tmp, fpath)
            finally:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
            made.append(fpath)
            extents.append(Extent("RW", sectors, "SPARSE" if sparse else "FLAT", os.path.basename(fpath)))
        desc = new_descriptor(ctype, extents, image_uuid, adapter)
        tmp, fd = _new_file(path)
        try:
            try:
                pwrite_all(fd, desc.render().encode(), 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            publish_file(tmp, path)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
    except BaseException as e:
        for f in made:
            os.unlink(f)
        if isinstance(e, OSError):
            raise DiskImageError(f"{path}: cannot create the image: {e.strerror or e}") from None
        raise
    return VmdkImage.open(path)


def _preallocate(fd: int, size: int, path: str) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        raise DiskImageError(f"{path}: VMDK: cannot allocate {size} bytes: {e.strerror}") from None


def convert_to_vmdk(src: DiskImage, path: str, variant: str = "standard", uuid=None, report=None) -> None:
    """Copy what `src` reads as into a new VMDK of the given variant (zero grains stay unallocated)."""
    variant = variant.lower()
    if variant == "stream":
        image_uuid = str(as_uuid(uuid) or uuidlib.uuid4())
        capacity = -(-src.size // SECTOR)
        desc = new_descriptor("streamOptimized", [Extent("RW", capacity, "SPARSE", os.path.basename(path))],
                              image_uuid)
        write_stream(src, path, desc, report)
        return
    dst = create_vmdk(path, src.size, variant, uuid)
    try:
        copy_image(src, dst, report)
    except BaseException:
        files = dst.extent_files()
        dst.close()
        for f in {path, *files}:
            if os.path.lexists(f):
                os.unlink(f)
        raise
    dst.close()


def copy_image(src: DiskImage, dst: DiskImage, report=None, chunk: int = 1 << 20) -> None:
    """Copy the data of `src` into the (same-size or larger) new image `dst`, skipping zeros."""
    buf = bytearray(chunk)
    zeros = bytes(chunk)
    skip = getattr(src, "next_allocated", None)
    off = 0
    while off < src.size:
        if skip is not None:
            off = max(off, skip(off) // chunk * chunk)
            if off >= src.size:
                break
        n = min(chunk, src.size - off)
        view = memoryview(buf)[:n]
        src.readinto_at(off, view)
        if (buf != zeros) if n == chunk else bytes(view) != zeros[:n]:
            dst.write_at(off, view)
        off += n
        if report:
            report(off, src.size)
