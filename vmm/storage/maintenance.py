"""Whole-image media operations of IMedium: clone (to VDI, VMDK or raw, flattening a chain or not),
resize (grow) and compact. Each takes an optional progress callback receiving a fraction 0..1."""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable

from vmm.storage.create import create_raw, create_vdi, write_new_vdi
from vmm.storage.image import DiskImage, DiskImageError
from vmm.storage.locking import open_image_file
from vmm.storage.opener import ImageInfo, ParentResolver, image_info, open_image
from vmm.storage.vdi import VdiImage
from vmm.storage.vdi_header import BLOCK_FREE, BLOCK_ZERO, DEFAULT_BLOCK_SIZE, SECTOR, new_header

Progress = Callable[[float], None] | None
_CHUNK = DEFAULT_BLOCK_SIZE


def _acquire(image_or_path, read_only: bool, resolver: ParentResolver | None) -> tuple[DiskImage, bool]:
    """(image, we_opened_it): accept an open image or a path."""
    if isinstance(image_or_path, str | os.PathLike):
        return open_image(os.fspath(image_or_path), read_only=read_only, parent_resolver=resolver), True
    return image_or_path, False


class _Reporter:
    """Passes progress on about every 1/256 of the work, never backwards, 1.0 once at the end."""

    def __init__(self, progress: Progress):
        self._cb = progress
        self._last = -1.0

    def __call__(self, done: int, total: int) -> None:
        if not self._cb:
            return
        f = min(1.0, done / total) if total else 1.0
        if f > self._last and (f >= 1.0 or f - self._last >= 1 / 256):
            self._last = f
            self._cb(f)


def clone_image(src, dst_path: str, fmt: str = "VDI", fixed: bool = False, flatten: bool = True,
                progress: Progress = None, uuid=None, parent_resolver: ParentResolver | None = None,
                variant: str | None = None) -> ImageInfo:
    """Copy `src` (path or open image) to a new image at `dst_path` and return the new image's facts.

    flatten=True copies what the whole chain reads as into a standalone base image; flatten=False on a
    differencing image makes a new differencing image with the same parent and the same own blocks.
    A VMDK target takes `variant` (standard, fixed, split2g, split2g-fixed, stream; default from `fixed`).
    """
    fmt = fmt.upper()
    if fmt not in ("VDI", "RAW", "VMDK"):
        raise DiskImageError(f"unsupported target format {fmt!r} (VDI, VMDK or RAW)")
    report = _Reporter(progress)
    img, owned = _acquire(src, True, parent_resolver)
    try:
        if fmt == "VMDK":
            from vmm.storage.vmdk_create import convert_to_vmdk

            convert_to_vmdk(img, dst_path, variant or ("fixed" if fixed else "standard"), uuid, report)
        elif not flatten and getattr(img, "variant", None) == "differencing":
            if fmt != "VDI" or fixed:
                raise DiskImageError("an unflattened clone of a differencing image must be a dynamic VDI")
            _clone_diff(img, dst_path, uuid, report)
        else:
            _clone_flat(img, dst_path, fmt, fixed, uuid, report)
    finally:
        if owned:
            img.close()
    report(1, 1)
    return image_info(dst_path)


def _clone_flat(img: DiskImage, dst_path: str, fmt: str, fixed: bool, uuid, report: _Reporter) -> None:
    size = -(-img.size // SECTOR) * SECTOR
    if fmt == "RAW":
        dst = create_raw(dst_path, img.size)
    else:
        dst = create_vdi(dst_path, size, fixed=fixed, uuid=uuid)
    try:
        buf = bytearray(_CHUNK)
        zeros = bytes(_CHUNK)
        skip = getattr(img, "next_allocated", None)
        off = 0
        while off < img.size:
            if skip is not None:                # jump over space no image of the chain has data for
                off = max(off, skip(off) // _CHUNK * _CHUNK)
                if off >= img.size:
                    break
            n = min(_CHUNK, img.size - off)
            view = memoryview(buf)[:n]
            img.readinto_at(off, view)
            is_zero = buf == zeros if n == _CHUNK else bytes(view) == zeros[:n]
            if not is_zero:             # the new image already reads zeros there
                dst.write_at(off, view)
            off += n
            report(off, img.size)
    except BaseException:
        dst.close()
        os.unlink(dst_path)
        raise
    dst.close()


def _clone_diff(img: VdiImage, dst_path: str, uuid, report: _Reporter) -> None:
    from vmm.storage.create import as_uuid

    h = img.header
    header = new_header(img.size, fixed=False, diff=True, block_size=h.cb_block, image_uuid=as_uuid(uuid),
                        parent_uuid=h.uuid_linkage, parent_modify_uuid=h.uuid_parent_modify)
    write_new_vdi(dst_path, header, array("I", [BLOCK_FREE]) * header.c_blocks)
    dst = VdiImage.open(dst_path, detached=True)
    try:
        buf = bytearray(h.cb_block)
        for blk in range(h.c_blocks):
            e = img.block_entry(blk)
            if e == BLOCK_ZERO:
                dst.free_block(blk, BLOCK_ZERO)
            elif e != BLOCK_FREE:
                off = blk * h.cb_block
                n = min(h.cb_block, img.size - off)
                buf[n:] = bytes(h.cb_block - n)
                img.readinto_at(off, memoryview(buf)[:n])
                dst.put_block(blk, buf)
            report(blk + 1, h.c_blocks)
    except BaseException:
        dst.close()
        os.unlink(dst_path)
        raise
    dst.close()


def resize(image_or_path, new_size: int, progress: Progress = None,
           parent_resolver: ParentResolver | None = None) -> None:
    """Grow an image to `new_size` bytes (shrinking is refused, as VirtualBox does for VDI)."""
    img, owned = _acquire(image_or_path, False, parent_resolver)
    try:
        if img.read_only:
            raise DiskImageError(f"{img.path}: image is opened read-only")
        if isinstance(img, VdiImage):
            img.grow(new_size)
        else:
            if new_size < img.size:
                raise DiskImageError(f"{img.path}: shrinking an image is not supported")
            img.resize(new_size)
        img.flush()
    finally:
        if owned:
            img.close()
    _Reporter(progress)(1, 1)


def compact(image_or_path, progress: Progress = None, parent_resolver: ParentResolver | None = None) -> int:
    """Release all-zero blocks of a dynamic or differencing VDI; returns how many were released."""
    img, owned = _acquire(image_or_path, False, parent_resolver)
    try:
        if not isinstance(img, VdiImage):
            raise DiskImageError(f"{img.path}: only VDI images can be compacted")
        report = _Reporter(progress)
        released = img.compact(lambda f: report(round(f * 4096), 4096))
        img.flush()
    finally:
        if owned:
            img.close()
    report(1, 1)
    return released


def delete_image(path: str) -> None:
    """Delete an image file, refusing while anyone has it open (a VM, a clone, a merge)."""
    fd = open_image_file(os.fspath(path), read_only=False)
    try:
        os.unlink(path)
    finally:
        os.close(fd)


def set_uuids(path: str, image_uuid=None, parent_uuid=None, parent_modify_uuid=None) -> None:
    """Record a new image UUID and/or parent UUID in the image itself (IMedium::setIds):
    in a VDI header, or in a VMDK descriptor's disk database. None leaves a value as it is.
    `parent_modify_uuid` (VDI only): the parent's modification UUID a differencing image was made
    against, for pointing a copied child at a copied parent."""
    import uuid as uuidlib

    from vmm.storage.opener import is_vmdk
    from vmm.storage.vdi_header import PRE_HEADER_SIZE, parse_header

    path = os.fspath(path)
    fd = open_image_file(path, read_only=False)
    try:
        head = os.pread(fd, 4096, 0)
        if is_vmdk(head):
            if any(u is not None and uuidlib.UUID(str(u)).int for u in (parent_uuid, parent_modify_uuid)):
                raise DiskImageError(f"{path}: a VMDK image here has no parent to record")
            os.close(fd)
            fd = -1
            from vmm.storage.vmdk import VmdkImage

            with VmdkImage.open(path) as img:
                img.set_uuids(image=str(image_uuid) if image_uuid is not None else None)
            return
        h = parse_header(head, os.fstat(fd).st_size, path)
        changes = {}
        if image_uuid is not None:
            changes["uuid_create"] = uuidlib.UUID(str(image_uuid))
        if parent_uuid is not None:
            changes["uuid_linkage"] = uuidlib.UUID(str(parent_uuid))
        if parent_modify_uuid is not None:
            changes["uuid_parent_modify"] = uuidlib.UUID(str(parent_modify_uuid))
        h = h.with_(**changes).upgraded()
        os.pwrite(fd, h.pack(), PRE_HEADER_SIZE)
        os.fsync(fd)
    finally:
        if fd >= 0:
            os.close(fd)


def image_files(path: str) -> list[str]:
    """Every file an image consists of: itself, plus a VMDK descriptor's extent files (best effort:
    an unreadable descriptor yields just the path), for deleting a medium completely."""
    from vmm.storage.opener import is_vmdk

    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError:
        return [path]
    if not is_vmdk(head) or head[:4] == b"KDMV":
        return [path]
    from vmm.storage.vmdk_descriptor import extent_path, parse

    try:
        with open(path, "rb") as f:
            desc = parse(f.read(1 << 20), path)
    except (OSError, DiskImageError):
        return [path]
    return [path] + [extent_path(path, e.filename) for e in desc.extents if e.filename]
