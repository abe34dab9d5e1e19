"""Merging a differencing image with its parent, both ways, as VDMerge does for snapshot deletion.

- merge_into_parent (backward): the child's own blocks are written into the parent, the child's
  children are re-linked to the parent, and the child file is deleted.
- merge_into_child (forward): blocks the child does not have are filled from the parent, the child
  is re-linked to the parent's parent (or becomes a base image), and the parent file is deleted. The
  child reads the same afterwards, so its modification UUID is kept and its own children stay valid.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from vmm.storage.image import DiskImageError
from vmm.storage.locking import open_image_file
from vmm.storage.opener import (
    ImageInfo,
    ParentResolver,
    image_info,
    open_image,
    parent_ids,
    read_vdi_header,
    verify_link,
)
from vmm.storage.vdi import VdiImage
from vmm.storage.vdi_header import BLOCK_FREE, BLOCK_ZERO, NULL_UUID, PRE_HEADER_SIZE, parse_header

Progress = Callable[[float], None] | None


def _vdi_header(path: str):
    h = read_vdi_header(path)
    if h is None:
        raise DiskImageError(f"{path}: not a VDI image")
    return h


def merge_into_parent(child_path: str, parent_path: str, relink: Iterable[str] = (),
                      progress: Progress = None, parent_resolver: ParentResolver | None = None,
                      delete_source: bool = True) -> ImageInfo:
    """Write the child's own blocks into its parent; `relink` lists the child's own children, which
    are pointed at the parent afterwards. Returns the parent's facts."""
    child_h = _vdi_header(child_path)
    held: list[tuple[str, int]] = []        # the child's children, locked for the whole merge
    try:
        for p in (os.fspath(x) for x in relink):
            held.append((p, open_image_file(p, read_only=False)))
            if _vdi_header(p).uuid_linkage != child_h.uuid_create:
                raise DiskImageError(f"{p}: not a child of {child_path}")
        info = _merge_back(child_path, child_h, parent_path, held, progress, parent_resolver)
    finally:
        for _p, fd in held:
            os.close(fd)
    if delete_source:
        os.unlink(child_path)
    if progress:
        progress(1.0)
    return info


def _merge_back(child_path, child_h, parent_path, held, progress, parent_resolver) -> ImageInfo:
    child = VdiImage.open(child_path, read_only=True, detached=True)
    try:
        parent = open_image(parent_path, read_only=False, parent_resolver=parent_resolver)
        try:
            verify_link(child_h, child_path, parent)
            if child.size > parent.size:
                if not hasattr(parent, "grow"):
                    raise DiskImageError(f"{parent_path}: the parent is smaller than its child "
                                         f"and cannot grow")
                parent.grow(child.size)
            bs = child.block_size
            buf = bytearray(bs)
            for blk in range(child.block_count):
                e = child.block_entry(blk)
                off = blk * bs
                n = min(bs, child.size - off)
                if n > 0 and e == BLOCK_ZERO:
                    parent.discard(off, n)
                elif n > 0 and e != BLOCK_FREE:
                    view = memoryview(buf)[:n]
                    child.readinto_at(off, view)
                    parent.write_at(off, view)
                if progress and (blk % 64 == 63 or blk == child.block_count - 1):
                    progress(0.95 * (blk + 1) / child.block_count)
            parent.flush()
            new_uuid, new_modify = parent_ids(parent, child_path)
        finally:
            parent.close()
    finally:
        child.close()
    for p, fd in held:
        _relink(fd, p, new_uuid, new_modify)
    return image_info(parent_path)


def merge_into_child(parent_path: str, child_path: str, progress: Progress = None,
                     parent_resolver: ParentResolver | None = None, delete_source: bool = True) -> ImageInfo:
    """Fill the child's unallocated blocks from its parent and re-link the child to the parent's
    parent. Returns the child's facts."""
    child_h = _vdi_header(child_path)
    parent = open_image(parent_path, read_only=True, parent_resolver=parent_resolver)
    try:
        verify_link(child_h, child_path, parent)
        vdi_parent = isinstance(parent, VdiImage)
        grand = parent.header.uuid_linkage if vdi_parent else NULL_UUID
        grand_modify = parent.header.uuid_parent_modify if vdi_parent else NULL_UUID
        child = VdiImage.open(child_path, read_only=False, detached=True)
        try:
            child.disable_modify_uuid_update()
            bs = child.block_size
            buf = bytearray(bs)
            for blk in range(child.block_count):
                if child.block_entry(blk) == BLOCK_FREE and not vdi_parent:
                    off = blk * bs          # another format's parent: copy whatever is not zeros
                    n = min(bs, parent.size - off)
                    if n > 0:
                        buf[n:] = bytes(bs - n)
                        parent.readinto_at(off, memoryview(buf)[:n])
                        if any(buf):
                            child.put_block(blk, buf)
                elif child.block_entry(blk) == BLOCK_FREE:
                    pbs = parent.block_size
                    off = blk * bs
                    first, last = off // pbs, min(off + bs, parent.size) - 1
                    entries = ({parent.block_entry(b) for b in range(first, last // pbs + 1)}
                               if last >= off else set())
                    if entries == {BLOCK_ZERO}:
                        child.free_block(blk, BLOCK_ZERO)
                    elif entries - {BLOCK_FREE}:    # the parent has data here: copy what it reads as
                        n = min(bs, parent.size - off)
                        buf[n:] = bytes(bs - n)
                        parent.readinto_at(off, memoryview(buf)[:n])
                        child.put_block(blk, buf)
                if progress and (blk % 64 == 63 or blk == child.block_count - 1):
                    progress(0.95 * (blk + 1) / child.block_count)
            child.set_linkage(None if grand == NULL_UUID else grand,
                              None if grand == NULL_UUID else grand_modify)
            child.flush()
        finally:
            child.close()
    finally:
        parent.close()
    if delete_source:
        os.unlink(parent_path)
    if progress:
        progress(1.0)
    return image_info(child_path)


def _relink(fd: int, path: str, parent_uuid, parent_modify_uuid) -> None:
    """Point a diff image at a new parent by rewriting its header in place (one small write)."""
    raw = os.pread(fd, 4096, 0)
    h = parse_header(raw, os.fstat(fd).st_size, path)
    h = h.with_(uuid_linkage=parent_uuid, uuid_parent_modify=parent_modify_uuid).upgraded()
    os.pwrite(fd, h.pack(), PRE_HEADER_SIZE)
    os.fsync(fd)
