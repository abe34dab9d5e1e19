"""Disk image formats (raw and VDI) for the VM process's disks and the service's media operations.

Names are imported lazily so `import vmm.storage` stays light for whoever only needs the protocol.
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
    "merge_into_parent": "vmm.storage.merge",
    "merge_into_child": "vmm.storage.merge",
    "VdiImage": "vmm.storage.vdi",
    "RawImage": "vmm.storage.raw",
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
