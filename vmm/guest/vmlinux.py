"""Derive the uncompressed `vmlinux` ELF from a bzImage whose payload is XZ-compressed.

The bzImage's protected-mode part carries the compressed kernel; finding the XZ stream
magic and decompressing it with Python's lzma yields the ELF the PVH entry boots.
"""

from __future__ import annotations

import lzma

XZ_MAGIC = b"\xfd7zXZ\x00"


class VmlinuxError(Exception):
    """The bzImage holds no XZ stream that decompresses to an ELF."""


def extract_vmlinux(bzimage: bytes) -> bytes:
    start = 0
    while True:
        pos = bzimage.find(XZ_MAGIC, start)
        if pos < 0:
            raise VmlinuxError("no XZ-compressed ELF payload found in the bzImage")
        try:
            out = lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(bzimage[pos:])
        except lzma.LZMAError:
            out = b""
        if out[:4] == b"\x7fELF":
            return out
        start = pos + 1
