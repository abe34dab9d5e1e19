"""Kernel module metadata: read `depends=` from a .ko's .modinfo section, order a load list.

Debian's kernel package ships no modules.dep, so the initramfs's load order is derived
from the modules themselves: dependencies first, each module once.
"""

from __future__ import annotations

import struct
from pathlib import Path


class ModuleError(Exception):
    """A module file that is not a 64-bit ELF relocatable or has no .modinfo."""


def modinfo(data: bytes) -> dict[str, list[str]]:
    """The key=value strings of an ELF64 .ko's .modinfo section (keys may repeat)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ModuleError("not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shoff == 0 or shentsize < 64 or shoff + shnum * shentsize > len(data) or shstrndx >= shnum:
        raise ModuleError("bad section header table")

    def section(i: int) -> tuple[int, int, int]:
        name, _typ, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, off, size

    _, stroff, strsize = section(shstrndx)
    for i in range(shnum):
        name, off, size = section(i)
        end = data.find(b"\0", stroff + name, stroff + strsize)
        if data[stroff + name:end] == b".modinfo":
            info: dict[str, list[str]] = {}
            for item in data[off:off + size].split(b"\0"):
                key, sep, value = item.decode("utf-8", "replace").partition("=")
                if sep:
                    info.setdefault(key, []).append(value)
            return info
    raise ModuleError("no .modinfo section")


def depends(data: bytes) -> list[str]:
    values = modinfo(data).get("depends", [""])
    return [d for v in values for d in v.split(",") if d]


def load_order(wanted: list[str], index: dict[str, Path]) -> list[str]:
    """Wanted modules plus their dependencies, dependencies first (depth-first post-order).

    `index` maps a module name (underscores) to its .ko file; a wanted module that is not in
    the index is skipped (the kernel may have it built in), a missing dependency is an error.
    """
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in visiting:
            raise ModuleError(f"dependency cycle: {' -> '.join(chain + (name,))}")
        path = index.get(name)
        if path is None:
            raise ModuleError(f"module {name} needed by {chain[-1]} not found")
        visiting.add(name)
        for dep in depends(path.read_bytes()):
            visit(dep.replace("-", "_"), chain + (name,))
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        if name.replace("-", "_") in index:
            visit(name.replace("-", "_"), ())
    return order


def index_modules(root: Path) -> dict[str, Path]:
    """Module name -> path for every uncompressed .ko under root."""
    return {p.name[:-3].replace("-", "_"): p for p in sorted(root.rglob("*.ko"))}
