"""The running VM's guest property store and transient shared folders (the host side of
VirtualBox's guest property service and Console's shared folder map).

The VM process owns both while the VM runs. The store starts from the machine's saved properties
plus the host information VirtualBox publishes at power-up (/VirtualBox/HostInfo/...), answers the
service's forwarded IMachine calls, and reports every change back with pushGuestProperty so the
service's copy (what is saved at power-off, minus the transient ones) follows. The guest's side
(VMMDev's HGCM guest property calls) uses the same store.
"""

from __future__ import annotations

import os
import threading
import time

from vboxsvc.api import VBoxError
from vboxsvc.api import errors as rc
from vboxsvc.api import guestprop as gp

from .console_errors import console_error

GET, SET, DELETE = 0, 1, 2


class GuestPropertyStore:
    def __init__(self, push=None):
        self._props: dict[str, tuple[str, int, int]] = {}   # name -> (value, timestamp ns, flag bits)
        self._lock = threading.Lock()
        self._push = push or (lambda name, value, ts, flags: None)

    def load(self, answer) -> None:
        """From IMachine::enumerateGuestProperties' [names, values, timestamps, flags]."""
        names, values, stamps, flags = answer
        with self._lock:
            for n, v, t, f in zip(names, values, stamps, flags, strict=False):
                self._props[n] = (v, int(t), gp.parse_flags(f))

    def publish(self, name: str, value: str, flags: str) -> None:
        """A property the host side sets itself (no host write protection applies)."""
        self._put(name, value, gp.parse_flags(flags))

    def _put(self, name: str, value: str, bits: int) -> None:
        ts = time.time_ns()
        with self._lock:
            self._props[name] = (value, ts, bits)
        self._push(name, value, ts, gp.format_flags(bits))

    def access(self, name: str, value: str, flags: str, mode: int):
        gp.check_name(name)
        with self._lock:
            old = self._props.get(name)
        if mode == GET:
            if old is None:
                return ["", 0, ""]
            return [old[0], old[1], gp.format_flags(old[2])]
        if mode not in (SET, DELETE):
            raise VBoxError(rc.E_INVALIDARG, f"Invalid guest property access mode {mode}")
        if old is not None and old[2] & gp.RDONLYHOST:
            raise VBoxError(rc.E_ACCESSDENIED, f"The property '{name}' cannot be changed by the host",
                            "IMachine", "MachineWrap")
        if mode == DELETE or not value:
            if old is not None:
                with self._lock:
                    self._props.pop(name, None)
                self._push(name, "", 0, "")
            return ["", 0, ""]
        gp.check_value(value)
        bits = gp.parse_flags(flags) if flags else (old[2] if old is not None else 0)
        self._put(name, value, bits)
        return [value, 0, gp.format_flags(bits)]

    def enumerate(self, patterns: str):
        with self._lock:
            items = [(n, v) for n, v in self._props.items() if gp.matches(patterns, n)]
        return [[n for n, _ in items], [v[0] for _, v in items], [v[1] for _, v in items],
                [gp.format_flags(v[2]) for _, v in items]]

    def reset(self) -> None:
        """A VM reset drops the TRANSRESET properties."""
        with self._lock:
            gone = [n for n, v in self._props.items() if v[2] & gp.TRANSRESET]
            for n in gone:
                del self._props[n]
        for n in gone:
            self._push(n, "", 0, "")


class TransientFolder:
    """ISharedFolder of a folder defined on the running VM only (`sharedfolder add --transient`)."""

    __interface__ = "ISharedFolder"

    def __init__(self, name: str, host_path: str, writable: bool, auto_mount: bool, auto_mount_point: str):
        self.name, self.host_path, self.writable = name, host_path, writable
        self.auto_mount, self.auto_mount_point = auto_mount, auto_mount_point

    @property
    def accessible(self) -> bool:
        return os.path.isdir(self.host_path)

    @property
    def last_access_error(self) -> str:
        return "" if self.accessible else f"'{self.host_path}' is not accessible"


class TransientFolders:
    def __init__(self):
        self._folders: list[TransientFolder] = []
        self._lock = threading.Lock()

    def list(self) -> list[TransientFolder]:
        with self._lock:
            return list(self._folders)

    def create(
        self, name: str, host_path: str, writable: bool, auto_mount: bool, auto_mount_point: str
    ) -> None:
        if not name:
            raise console_error(rc.E_INVALIDARG, "Shared folder name must not be empty")
        if not os.path.isabs(host_path):
            raise VBoxError(rc.E_INVALIDARG, f"Shared folder path '{host_path}' is not absolute",
                            "ISharedFolder",
                            "SharedFolderWrap")
        path = host_path.rstrip("/") or "/"
        if not os.path.exists(path):
            raise VBoxError(rc.E_INVALIDARG, f"Shared folder path '{path}' does not exist on the host",
                            "ISharedFolder", "SharedFolderWrap")
        with self._lock:
            if any(f.name == name for f in self._folders):
                raise console_error(rc.VBOX_E_FILE_ERROR, f"Shared folder named '{name}' already exists")
            self._folders.append(TransientFolder(name, path, bool(writable), bool(auto_mount),
                                                 auto_mount_point or ""))

    def remove(self, name: str) -> None:
        with self._lock:
            if not any(f.name == name for f in self._folders):
                raise console_error(rc.VBOX_E_FILE_ERROR, f"Could not find a shared folder named '{name}'.")
            self._folders = [f for f in self._folders if f.name != name]
