"""ISharedFolder and IMachine's permanent shared folders (MachineImpl.cpp createSharedFolder /
removeSharedFolder, SharedFolderImpl.cpp).

Permanent folders are settings (`<SharedFolders>`), changed through a Write-locked session like
the rest of the hardware. Transient folders belong to the running VM: IConsole keeps them in the
VM process. Serving a folder to the guest is the shared-folders device's business; here the host
side checks what VirtualBox checks when a folder is defined (an absolute host path that exists).
"""

from __future__ import annotations

import os

from settings.models import SharedFolder as SharedFolderSettings

from ..api import errors as rc
from ..api.errors import VBoxError
from .statedeps import MUTABLE_OR_SAVED


class SharedFolder:
    """A read-only view of one folder (the value the service hands out)."""

    __interface__ = "ISharedFolder"
    __component__ = "SharedFolderWrap"

    def __init__(self, data: SharedFolderSettings):
        self._s = data

    name = property(lambda self: self._s.name)
    host_path = property(lambda self: self._s.host_path)
    writable = property(lambda self: self._s.writable)
    auto_mount = property(lambda self: self._s.auto_mount)
    auto_mount_point = property(lambda self: self._s.auto_mount_point)

    @property
    def accessible(self) -> bool:
        return os.path.isdir(self._s.host_path)

    @property
    def last_access_error(self) -> str:
        return "" if self.accessible else f"'{self._s.host_path}' is not accessible"


def _err(code: int, text: str) -> VBoxError:
    return VBoxError(code, text, "IMachine", "MachineWrap")


def check_host_path(host_path: str, must_exist: bool = True) -> str:
    """SharedFolder::init: an absolute path (trailing slashes dropped) that exists on the host."""
    if not os.path.isabs(host_path):
        raise VBoxError(rc.E_INVALIDARG, f"Shared folder path '{host_path}' is not absolute", "ISharedFolder",
                        "SharedFolderWrap")
    path = host_path.rstrip("/") or "/"
    if must_exist and not os.path.exists(path):
        raise VBoxError(rc.E_INVALIDARG, f"Shared folder path '{path}' does not exist on the host",
                        "ISharedFolder", "SharedFolderWrap")
    return path


def listed(view) -> list[SharedFolder]:
    return [SharedFolder(f) for f in view._d.hardware.shared_folders]


def create(view, name: str, host_path: str, writable: bool, automount: bool, auto_mount_point: str) -> None:
    view._check_mutable(MUTABLE_OR_SAVED)
    if not name:
        raise _err(rc.E_INVALIDARG, "Shared folder name must not be empty")
    hw = view._d.hardware
    if any(f.name == name for f in hw.shared_folders):
        raise _err(rc.VBOX_E_OBJECT_IN_USE, f"Shared folder named '{name}' already exists")
    path = check_host_path(host_path)
    hw.shared_folders = hw.shared_folders + [SharedFolderSettings(
        name=name, host_path=path, writable=bool(writable), auto_mount=bool(automount),
        auto_mount_point=auto_mount_point or "")]


def remove(view, name: str) -> None:
    view._check_mutable(MUTABLE_OR_SAVED)
    hw = view._d.hardware
    if not any(f.name == name for f in hw.shared_folders):
        raise _err(rc.VBOX_E_OBJECT_NOT_FOUND, f"Could not find a shared folder named '{name}'.")
    hw.shared_folders = [f for f in hw.shared_folders if f.name != name]

