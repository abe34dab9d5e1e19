"""A reproducible writer for the "newc" cpio format the kernel unpacks as an initramfs.

Written here rather than calling cpio(1) so the archive is byte-for-byte the same on every
build: fixed inode numbers, owner root, mtime 0, entries in the order given.
"""

from __future__ import annotations

import stat

_TRAILER = "TRAILER!!!"


class CpioWriter:
    def __init__(self) -> None:
        self._out = bytearray()
        self._ino = 1
        self._names: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        name = name.strip("/")
        if not name:
            raise ValueError("empty cpio entry name")
        if name in self._names:
            raise ValueError(f"duplicate cpio entry {name!r}")
        self._names.add(name)
        encoded = name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(mode) else 1
        fields = (self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self._ino += 1
        self._out += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        self._pad()
        self._out += data
        self._pad()

    def _pad(self) -> None:
        self._out += b"\0" * (-len(self._out) % 4)

    def directory(self, name: str, perm: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | perm)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        """The archive with its trailer, padded to 512 bytes as cpio(1) does."""
        self._names.discard(_TRAILER)
        self._entry(_TRAILER, 0)
        self._out += b"\0" * (-len(self._out) % 512)
        return bytes(self._out)
