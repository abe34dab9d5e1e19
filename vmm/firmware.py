"""The system firmware image (SeaBIOS from Debian's `seabios` package) and where it comes from.

VirtualBox ships its own BIOS inside VBoxDD; vboxpy uses SeaBIOS built for QEMU, which
talks to the VMM through fw_cfg.  The image is never part of the project: it is found in
the firmware cache (`.cache/firmware` in the checkout or $VBOXPY_FIRMWARE_CACHE), filled by
`python -m vmm.firmware` with `apt-get download seabios` + `dpkg-deb -x` (no root needed), or
in the host's /usr/share/seabios when the package is installed.

`FirmwareImage` holds the bytes in an anonymous mapping so both engines can map them as ROM
(a per-VM copy: a guest write that an engine cannot suppress never reaches the file).
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import subprocess
import tempfile
from pathlib import Path

PACKAGE = "seabios"
BIOS_NAME = "bios.bin"            # the 128 KiB QEMU build: no SMM, fits 0xE0000-0xFFFFF
SYSTEM_DIR = Path("/usr/share/seabios")
PACKAGE_SUBDIR = Path("usr/share/seabios")
LEGACY_ALIAS_SIZE = 0x20000       # what a PC shows of its BIOS below 1 MiB (0xE0000-0xFFFFF)
FOUR_GIB = 1 << 32


class FirmwareError(Exception):
    """No usable firmware image (the text says how to get one)."""


def cache_dir() -> Path:
    env = os.environ.get("VBOXPY_FIRMWARE_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / ".cache" / "firmware"


def candidates(name: str = BIOS_NAME) -> list[Path]:
    return [cache_dir() / PACKAGE_SUBDIR / name, SYSTEM_DIR / name]


def find(name: str = BIOS_NAME) -> Path:
    for path in candidates(name):
        if path.is_file():
            return path
    raise FirmwareError(f"no SeaBIOS image '{name}' (looked in "
                        f"{', '.join(str(p) for p in candidates(name))}); "
                        "run 'python3 -m vmm.firmware' or install Debian's seabios package")


def fetch(force: bool = False, log=print) -> Path:
    """Download Debian's seabios package with apt-get and unpack it into the cache (no root)."""
    target = cache_dir() / PACKAGE_SUBDIR / BIOS_NAME
    if target.is_file() and not force:
        return target
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as work:
        for cmd in (["apt-get", "download", "-q", PACKAGE], None):
            if cmd is None:
                debs = sorted(Path(work).glob(f"{PACKAGE}_*.deb"))
                if not debs:
                    raise FirmwareError("apt-get download produced no seabios package")
                cmd = ["dpkg-deb", "-x", str(debs[-1]), str(cache_dir())]
            try:
                res = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
            except FileNotFoundError:
                raise FirmwareError(f"{cmd[0]} is not installed (needed to fetch SeaBIOS)")
            if res.returncode != 0:
                raise FirmwareError(f"{' '.join(cmd)} failed: {res.stderr.strip() or res.stdout.strip()}")
    if not target.is_file():
        raise FirmwareError(f"the seabios package has no {PACKAGE_SUBDIR / BIOS_NAME}")
    log(f"SeaBIOS: {target}")
    return target


class FirmwareImage:
    """A ROM image in host memory: mapped whole below 4 GiB, its last 128 KiB below 1 MiB."""

    def __init__(self, data: bytes, name: str = ""):
        size = len(data)
        if size < LEGACY_ALIAS_SIZE or size % 0x10000 or size > 16 << 20:
            raise FirmwareError(f"firmware image {name or ''} has {size} bytes; expected a multiple of "
                                "64 KiB between 128 KiB and 16 MiB")
        self.name = name
        self.size = size
        self.mmap = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.mmap[:] = data
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self.mmap))
        self.base = FOUR_GIB - size               # the reset vector is at 0xFFFFFFF0
        self.alias_offset = size - LEGACY_ALIAS_SIZE

    @classmethod
    def load(cls, path: str | os.PathLike) -> FirmwareImage:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise FirmwareError(f"cannot read firmware image '{path}': {e.strerror}") from e
        return cls(data, str(path))

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            return b"\xff" * max(0, length)
        return bytes(self.mmap[offset:offset + length])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vmm.firmware", description="fetch SeaBIOS into the cache")
    ap.add_argument("--force", action="store_true", help="download again even if the cache has it")
    args = ap.parse_args(argv)
    try:
        fetch(force=args.force)
    except FirmwareError as e:
        print(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
