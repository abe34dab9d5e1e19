"""Disk image formats (raw, VDI and VMDK) for the VM process's disks and the service's media operations.

Names are imported lazily so `import vmm.storage` stays light for whoever only needs the protocol.

    open_image(path, read_only=False, parent_resolver=None) -> DiskImage   # VDI/VMDK by content, else raw
    create_vdi(path, size, fixed=False, uuid=None) / create_diff_vdi(path, parent, uuid=None)
    create_raw(path, size)                                  # all three return the image opened writable
    create_vmdk(path, size, variant="standard"|"fixed"|"split2g"|"split2g-fixed"|"stream", uuid=None)
    image_info(path) -> ImageInfo                           # dict-like; no parent chain needed
    clone_image(src, dst_path, fmt="VDI"|"VMDK"|"RAW", fixed=False, variant=None, flatten=True,
                progress=None) -> ImageInfo
    resize(image_or_path, new_size)   compact(image_or_path) -> released blocks   delete_image(path)
    set_uuids(path, image_uuid=None, parent_uuid=None)       # IMedium::setIds on the image itself
    image_files(path) -> [path, extent files...]              # what deleting a medium removes
    merge_into_parent(child, parent, relink=(children of child))   merge_into_child(parent, child)
Images: read_at, readinto_at, write_at, discard, flush, close (+ size, path, read_only, uuid, ...).
Errors: DiskImageError with the file and the problem in the message. progress(fraction 0..1).
A writable image is locked against any other opener; read-only opens share the lock.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DiskImage": "vmm.storage.image",
    "DiskImageError": "vmm.storage.image",
    "open_image": "vmm.storage.opener",
    "image_info": "vmm.storage.opener",
    "ImageInfo": "vmm.storage.opener",
    "default_parent_resolver": "vmm.storage.opener",
    "create_vdi": "vmm.storage.create",
    "create_diff_vdi": "vmm.storage.create",
    "create_raw": "vmm.storage.create",
    "clone_image": "vmm.storage.maintenance",
    "resize": "vmm.storage.maintenance",
    "compact": "vmm.storage.maintenance",
    "delete_image": "vmm.storage.maintenance",
    "set_uuids": "vmm.storage.maintenance",
    "image_files": "vmm.storage.maintenance",
    "merge_into_parent": "vmm.storage.merge",
    "merge_into_child": "vmm.storage.merge",
    "VdiImage": "vmm.storage.vdi",
    "RawImage": "vmm.storage.raw",
    "VmdkImage": "vmm.storage.vmdk",
    "create_vmdk": "vmm.storage.vmdk_create",
    "convert_to_vmdk": "vmm.storage.vmdk_create",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vmm.storage' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
