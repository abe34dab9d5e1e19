"""Creating new images: dynamic and fixed VDI, differencing VDI, raw; laid out as VirtualBox does."""

from __future__ import annotations

import os
import uuid as uuidlib
from array import array

from vmm.storage.image import DiskImage, DiskImageError
from vmm.storage.raw import RawImage
from vmm.storage.vdi import VdiImage
from vmm.storage.vdi_header import BLOCK_FREE, DEFAULT_BLOCK_SIZE, VdiHeader, new_header


def as_uuid(value) -> uuidlib.UUID | None:
    if value is None:
        return None
    try:
        u = value if isinstance(value, uuidlib.UUID) else uuidlib.UUID(str(value))
    except ValueError:
        raise DiskImageError(f"invalid UUID {value!r}")
    if u.int == 0:
        raise DiskImageError("the image UUID must not be null")
    return u


def create_new_file(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise DiskImageError(f"{path}: cannot create the image: the file already exists")
    except OSError as e:
        raise DiskImageError(f"{path}: cannot create the image: {e.strerror}")


def write_new_vdi(path: str, header: VdiHeader, block_map: array) -> None:
    """Write a complete new VDI (header, map, sized data area), durable, under a temporary name
    that is linked to `path` only when complete: a crash never leaves a half-made image there."""
    if os.path.lexists(path):
        raise DiskImageError(f"{path}: cannot create the image: the file already exists")
    tmp = f"{path}.{os.getpid()}.creating"
    fd = create_new_file(tmp)
    try:
        try:
            data_end = header.off_data + header.c_blocks_allocated * header.stride
            if header.c_blocks_allocated:
                st = os.statvfs(os.path.dirname(os.path.abspath(path)))
                if st.f_bavail * st.f_frsize < data_end:
                    raise DiskImageError(f"{path}: VDI: disk would overflow creating image")
            os.pwrite(fd, header.pack_pre_header() + header.pack(), 0)
            os.pwrite(fd, block_map.tobytes(), header.off_blocks)
            os.ftruncate(fd, data_end)
            if header.c_blocks_allocated:
                os.posix_fallocate(fd, header.off_data, data_end - header.off_data)
            os.fsync(fd)
        finally:
            os.close(fd)
        publish_file(tmp, path)
    except OSError as e:
        raise DiskImageError(f"{path}: cannot create the image: {e.strerror or e}")
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def publish_file(tmp: str, path: str) -> None:
    """Give the finished file its name without ever replacing an existing file."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise DiskImageError(f"{path}: cannot create the image: the file already exists")
    except OSError:                 # no hard links on this file system
        if os.path.lexists(path):
            raise DiskImageError(f"{path}: cannot create the image: the file already exists")
        os.rename(tmp, path)
    try:                            # make the new name durable too
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def create_vdi(path: str, size: int, fixed: bool = False, uuid=None,
               block_size: int = DEFAULT_BLOCK_SIZE) -> VdiImage:
    """A new base VDI (dynamic, or fixed = preallocated), opened writable."""
    header = new_header(size, fixed=fixed, diff=False, block_size=block_size, image_uuid=as_uuid(uuid))
    if fixed:
        block_map = array("I", range(header.c_blocks))
    else:
        block_map = array("I", [BLOCK_FREE]) * header.c_blocks
    write_new_vdi(path, header, block_map)
    return VdiImage.open(path)


def create_diff_vdi(path: str, parent, uuid=None, parent_resolver=None) -> VdiImage:
    """A new differencing VDI whose parent is `parent` (a path or an open VDI image), opened writable.

    The child records the parent's UUID and current modification UUID, as VDCreateDiff does. Given a
    path, the parent chain is opened read-only and closed with the child; given an open image, the
    child reads through that object and leaves closing it to the caller.
    """
    from vmm.storage.opener import open_image

    owned = isinstance(parent, str | os.PathLike)
    if owned:
        parent_img = open_image(os.fspath(parent), read_only=True, parent_resolver=parent_resolver)
    else:
        parent_img = parent
        if getattr(parent_img, "format", None) in ("VDI", "VMDK") and not parent_img.read_only:
            parent_img.flush()          # the modification UUID the child records must be on disk
    try:
        if getattr(parent_img, "format", None) not in ("VDI", "VMDK"):
            raise DiskImageError(f"{parent_img.path}: the parent of a differencing image must be "
                                 f"a VDI or VMDK")
        from vmm.storage.opener import parent_ids

        p_uuid, p_modify = parent_ids(parent_img, path)
        header = new_header(parent_img.size, fixed=False, diff=True, image_uuid=as_uuid(uuid),
                            parent_uuid=p_uuid, parent_modify_uuid=p_modify)
        write_new_vdi(path, header, array("I", [BLOCK_FREE]) * header.c_blocks)
        child = VdiImage.open(path, parent_opener=lambda _h, _p: parent_img)
    except BaseException:
        if owned:
            parent_img.close()
        raise
    child.owns_parent = owned
    return child


def create_raw(path: str, size: int) -> DiskImage:
    """A new raw image of `size` bytes (sparse), opened writable."""
    if size <= 0:
        raise DiskImageError(f"raw image size must be positive, not {size}")
    fd = create_new_file(path)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    return RawImage(path)

