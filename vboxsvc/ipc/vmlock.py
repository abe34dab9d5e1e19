"""The per-machine lock a VM process holds for its whole life, independent of the service.

The service's VM lock (a session) dies with the service; this one does not: it is an flock on
`<settings file>-vmlock` beside the machine's .vbox, taken by the VM process and released only
when that process ends. So a service that starts while VM processes run (after a crash, a
`systemctl --user restart`, an upgrade) sees which machines are running and in which state (the
VM process keeps its current state in the file), refuses a second VM process for them, and
accepts the running one back when it re-attaches (the flock's holder pid proves who it is).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

SUFFIX = "-vmlock"


def lock_path(settings_file: str | Path) -> Path:
    p = Path(settings_file)
    return p.with_name(p.name + SUFFIX)


class VmLockBusy(Exception):
    def __init__(self, pid: int):
        super().__init__(f"the machine is already run by the VM process {pid}" if pid
                         else "the machine is already run by another VM process")
        self.pid = pid


class VmLock:
    """Held by the VM process; `update(state)` records its current machine state."""

    def __init__(self, settings_file: str | Path):
        self.path = lock_path(settings_file)
        self._fd = -1

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = _read(fd)
            os.close(fd)
            raise VmLockBusy(held[0] if held else 0) from None
        self._fd = fd
        self.update("")

    def update(self, state: str) -> None:
        if self._fd < 0:
            return
        data = f"{os.getpid()} {state}\n".encode()
        os.pwrite(self._fd, data.ljust(64), 0)     # one write: a reader never sees half of it

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _read(fd: int) -> tuple[int, str] | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").split()
        return (int(text[0]), text[1] if len(text) > 1 else "")
    except (OSError, ValueError, IndexError):
        return None


def last_record(settings_file: str | Path) -> tuple[int, str] | None:
    """(pid, state name) the last VM process wrote into the machine's lock file, held or not:
    what a process that has ended reported last (its final state when it ended in order)."""
    try:
        fd = os.open(lock_path(settings_file), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read(fd)
    finally:
        os.close(fd)


def holder(settings_file: str | Path) -> tuple[int, str] | None:
    """(pid, state name) of the live VM process holding the machine's lock, else None."""
    path = lock_path(settings_file)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd) or (0, "")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
