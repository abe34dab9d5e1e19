"""Opening images by content (VDI signature, VMDK sparse header or descriptor, else raw), resolving and
verifying diff chains, and reading an image's facts without opening its chain (what IMedium and showmediuminfo
need)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

from vmm.storage.image import DiskImage, DiskImageError
from vmm.storage.raw import RawImage
from vmm.storage.vdi import VdiImage
from vmm.storage.vdi_header import DIFF_TYPES, NULL_UUID, TYPE_FIXED, VdiHeader, has_signature, parse_header
from vmm.storage.vmdk import VmdkImage, looks_like_descriptor
from vmm.storage.vmdk_header import has_magic as is_vmdk_sparse

MAX_CHAIN_DEPTH = 64
_PROBE = 1024                   # bytes read to tell the formats apart
ParentResolver = Callable[[str], str]


def read_vdi_header(path: str) -> VdiHeader | None:
    """The validated header of a VDI file, or None when the file is not a VDI (no signature)."""
    with open(path, "rb") as f:
        raw = f.read(4096)
        size = os.fstat(f.fileno()).st_size
    if not has_signature(raw):
        return None
    return parse_header(raw, size, path)


def default_parent_resolver(image_path: str) -> ParentResolver:
    """Looks for the parent VDI by UUID in the image's directory, then in the directory above it
    (VirtualBox keeps diffs in <machine>/Snapshots and the base image in <machine>)."""
    here = os.path.dirname(os.path.abspath(image_path))
    dirs = [here, os.path.dirname(here)]

    def resolve(parent_uuid: str) -> str:
        for d in dirs:
            direct = os.path.join(d, "{" + parent_uuid + "}.vdi")
            names = [direct] + sorted(os.path.join(d, n) for n in _listdir(d)
                                      if n.lower().endswith((".vdi", ".vmdk")))
            for cand in names:
                if os.path.abspath(cand) == os.path.abspath(image_path) or not os.path.isfile(cand):
                    continue
                try:
                    if cand.lower().endswith(".vmdk"):
                        if image_uuid_of_vmdk(cand) == parent_uuid:
                            return cand
                        continue
                    h = read_vdi_header(cand)
                except (OSError, DiskImageError):
                    continue
                if h is not None and str(h.uuid_create) == parent_uuid:
                    return cand
        raise DiskImageError(f"{image_path}: parent image {{{parent_uuid}}} not found in {' or '.join(dirs)}")

    return resolve


def image_uuid_of_vmdk(path: str) -> str | None:
    """ddb.uuid.image of a VMDK by its descriptor alone (extent files are not opened)."""
    from vmm.storage.vmdk_descriptor import parse
    from vmm.storage.vmdk_header import SECTOR, parse_header

    with open(path, "rb") as f:
        head = f.read(SECTOR)
        if is_vmdk_sparse(head):
            h = parse_header(head, path)
            f.seek(h.descriptor_offset * SECTOR)
            text = f.read(h.descriptor_size * SECTOR)
        elif looks_like_descriptor(head):
            f.seek(0)
            text = f.read(1 << 20)
        else:
            return None
    return parse(text, path).uuid("image")


def _listdir(d: str) -> list[str]:
    try:
        return os.listdir(d)
    except OSError:
        return []


def open_image(
    path: str, read_only: bool = False, parent_resolver: ParentResolver | None = None
) -> DiskImage:
    """Open a disk image, choosing the format by content; a diff image comes with its parent chain
    (opened read-only, each link checked by UUID and modification UUID)."""
    return _open(os.fspath(path), read_only, parent_resolver, set())


def _open(path: str, read_only: bool, resolver: ParentResolver | None, seen: set[str]) -> DiskImage:
    try:
        with open(path, "rb") as f:
            head = f.read(_PROBE)
    except OSError as e:
        raise DiskImageError(f"{path}: cannot open the image: {e.strerror}")
    if is_vmdk(head):
        return VmdkImage.open(path, read_only=read_only)
    if not has_signature(head):
        return RawImage(path, read_only=read_only)

    def open_parent(h: VdiHeader, child_path: str) -> DiskImage:
        link, me = str(h.uuid_linkage), str(h.uuid_create)
        if me in seen or link in seen or link == me:
            raise DiskImageError(f"{child_path}: the differencing chain loops back to image {{{me}}}")
        if len(seen) >= MAX_CHAIN_DEPTH:
            raise DiskImageError(f"{child_path}: the differencing chain is longer than {MAX_CHAIN_DEPTH}")
        parent_path = (resolver or default_parent_resolver(child_path))(link)
        parent = _open(parent_path, True, resolver, seen | {str(h.uuid_create)})
        try:
            verify_link(h, child_path, parent)
        except BaseException:
            parent.close()
            raise
        return parent

    return VdiImage.open(path, read_only=read_only, parent_opener=open_parent)


def is_vmdk(head: bytes) -> bool:
    """A VMDK by content: the sparse extent magic 'KDMV' or a text descriptor."""
    return is_vmdk_sparse(head) or looks_like_descriptor(head)


def parent_ids(parent: DiskImage, child_path: str) -> tuple[uuid.UUID, uuid.UUID]:
    """(image UUID, modification UUID) a differencing VDI records of its parent: a VDI's header
    UUIDs, or a VMDK's ddb.uuid.image and ddb.uuid.modification (a VDI diff may sit on a VMDK base,
    as after importing an appliance and taking a snapshot)."""
    ph = getattr(parent, "header", None)
    if isinstance(ph, VdiHeader):
        return ph.uuid_create, ph.uuid_modify
    if getattr(parent, "format", None) == "VMDK":
        if not parent.uuid:
            raise DiskImageError(f"{child_path}: parent {parent.path} has no image UUID (ddb.uuid.image)")
        modify = parent.modify_uuid
        return uuid.UUID(parent.uuid), uuid.UUID(modify) if modify else NULL_UUID
    raise DiskImageError(f"{child_path}: parent {parent.path} is not a VDI or VMDK image")


def verify_link(child: VdiHeader, child_path: str, parent: DiskImage) -> None:
    """The parent must be the image the child was made from, unchanged since (VDI UUID linkage)."""
    p_uuid, p_modify = parent_ids(parent, child_path)
    if p_uuid != child.uuid_linkage:
        raise DiskImageError(f"{child_path}: parent UUID mismatch: the image expects parent "
                             f"{{{child.uuid_linkage}}} but {parent.path} is {{{p_uuid}}}")
    if child.uuid_parent_modify != NULL_UUID and p_modify != child.uuid_parent_modify:
        raise DiskImageError(f"{child_path}: parent modification UUID mismatch: {parent.path} was modified "
                             f"after this differencing image was created (expected "
                             f"{{{child.uuid_parent_modify}}}, found {{{p_modify}}})")


@dataclass(frozen=True)
class ImageInfo:
    """What the media service shows of an image (dict-like: info["uuid"])."""

    location: str
    format: str
    variant: str
    uuid: str | None
    parent_uuid: str | None
    modify_uuid: str | None
    parent_modify_uuid: str | None
    size: int
    file_size: int
    block_size: int
    allocated_blocks: int
    subformat: str = "default"      # VMDK: default, split2G, streamOptimized, ESX

    @property
    def virtual_size(self) -> int:
        return self.size

    @property
    def actual_size(self) -> int:
        return self.file_size

    def __getitem__(self, key: str):
        if key.startswith("_") or not hasattr(self, key) or callable(getattr(self, key)):
            raise KeyError(key)
        return getattr(self, key)

    def as_dict(self) -> dict:
        return asdict(self)


def image_info(path: str) -> ImageInfo:
    """Facts of one image file, without opening its parents."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(_PROBE)
    except OSError as e:
        raise DiskImageError(f"{path}: cannot open the image: {e.strerror}")
    if is_vmdk(head):
        return _vmdk_info(path)
    try:
        h = read_vdi_header(path)
        file_size = os.stat(path).st_size
    except OSError as e:
        raise DiskImageError(f"{path}: cannot open the image: {e.strerror}")
    if h is None:
        return ImageInfo(location=os.path.abspath(path), format="RAW", variant="fixed", uuid=None,
                         parent_uuid=None, modify_uuid=None, parent_modify_uuid=None, size=file_size,
                         file_size=file_size, block_size=0, allocated_blocks=0)
    if h.image_type in DIFF_TYPES:
        variant = "differencing"
    else:
        variant = "fixed" if h.image_type == TYPE_FIXED else "dynamic"

    def u(x):
        return None if x == NULL_UUID else str(x)

    return ImageInfo(location=os.path.abspath(path), format="VDI", variant=variant, uuid=str(h.uuid_create),
                     parent_uuid=u(h.uuid_linkage), modify_uuid=u(h.uuid_modify),
                     parent_modify_uuid=u(h.uuid_parent_modify), size=h.cb_disk // 512 * 512,
                     file_size=file_size, block_size=h.cb_block, allocated_blocks=h.c_blocks_allocated)


def _vmdk_info(path: str) -> ImageInfo:
    with VmdkImage.open(path, read_only=True) as img:
        return ImageInfo(location=os.path.abspath(path), format="VMDK", variant=img.variant, uuid=img.uuid,
                         parent_uuid=None, modify_uuid=img.modify_uuid, parent_modify_uuid=None,
                         size=img.size,
                         file_size=img.file_size, block_size=img.grain_size,
                         allocated_blocks=img.allocated_grains(),
                         subformat=img.subformat)
