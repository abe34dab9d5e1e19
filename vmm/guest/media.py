"""Bootable media around the project's kernel and initramfs: a BIOS disk image and an ISO.

The disk is an MBR disk (SYSLINUX's mbr.bin) with one active FAT16 partition holding the
kernel, the initramfs and SYSLINUX (installed with its mtools-based installer, which writes
into the image file: no loop device, no mount).  The ISO is ISO 9660 with an El Torito
no-emulation boot image (ISOLINUX).  Both show the two-entry menu of vmm.guest.bootmenu.
The boot loaders come from Debian's syslinux, syslinux-common and isolinux packages fetched
with `apt-get download`; the host tools are mtools, dosfstools (mkfs.fat) and xorriso.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

from vmm.guest import bootmenu
from vmm.guest.debs import GuestBuildError, download_extract, run, versions
from vmm.guest.mbr import SECTOR, TYPE_FAT16_LBA, Partition, build_mbr
from vmm.guest.paths import cache_dir
from vmm.guest.tovdi import raw_to_vdi

LOADER_PACKAGES = ["syslinux", "syslinux-common", "isolinux"]
DISK_SIZE = 48 << 20                    # kernel 8 MB + initramfs 7 MB + room for other modules
PARTITION_START = 2048                  # 1 MiB, as current partitioning tools align
FAT_LABEL = "VBOXPY"
ISO_LABEL = "VBOXPY"
SYSLINUX_DIR = "syslinux"
ISOLINUX_DIR = "isolinux"
BIOS_MODULES = "usr/lib/syslinux/modules/bios"
MBR_BIN = "usr/lib/syslinux/mbr/mbr.bin"
ISOLINUX_BIN = "usr/lib/ISOLINUX/isolinux.bin"
SYSLINUX_INSTALLER = "usr/bin/syslinux"
# Fixed time stamps for xorriso and mkfs.fat so a rebuild of the same inputs is the same bytes.
SOURCE_DATE_EPOCH = "1700000000"


@dataclass(frozen=True)
class MediaFiles:
    disk_raw: Path
    disk_vdi: Path
    iso: Path


def media_files(directory: Path) -> MediaFiles:
    return MediaFiles(directory / "boot-disk.img", directory / "boot-disk.vdi", directory / "boot.iso")


def find_boot_media(directory: Path | None = None) -> MediaFiles | None:
    """The built disk image and ISO, or None when `--media disk,iso` has not been run."""
    files = media_files(directory or cache_dir())
    return files if all(p.is_file() for p in (files.disk_raw, files.disk_vdi, files.iso)) else None


def stable_uuid(key: dict) -> uuidlib.UUID:
    """A UUID derived from the build inputs: the same inputs name the same medium."""
    digest = hashlib.sha256(repr(sorted(key.items())).encode()).digest()
    return uuidlib.UUID(bytes=digest[:16], version=4)


def loader_versions() -> dict[str, str]:
    return versions(LOADER_PACKAGES)


def fetch_loaders(work: Path, packages: dict[str, str]) -> Path:
    root = download_extract(work, packages)
    for rel in (MBR_BIN, ISOLINUX_BIN, SYSLINUX_INSTALLER, f"{BIOS_MODULES}/ldlinux.c32"):
        if not (root / rel).is_file():
            raise GuestBuildError(f"the syslinux packages have no /{rel}")
    return root


def _tool_env() -> dict:
    return {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "MTOOLS_SKIP_CHECK": "1",
            "TZ": "UTC", "LC_ALL": "C"}


def build_disk(out_raw: Path, out_vdi: Path, kernel: Path, initrd: Path, loaders: Path, key: dict) -> None:
    """The MBR + FAT16 + SYSLINUX disk, as raw and as VDI."""
    env = _tool_env()
    tmp = out_raw.with_name(out_raw.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as f:
        f.truncate(DISK_SIZE)
    part = Partition(PARTITION_START, DISK_SIZE // SECTOR - PARTITION_START, TYPE_FAT16_LBA, active=True)
    offset = part.start_lba * SECTOR
    # mkfs.fat writes the file system inside the image at the partition (hidden sectors = start).
    run(["mkfs.fat", "-F", "16", "-n", FAT_LABEL, "--invariant",
         "--offset", str(part.start_lba), "-h", str(part.start_lba), str(tmp),
         str(part.sectors * SECTOR // 1024)], env=env)
    image = f"{tmp}@@{offset}"
    with tempfile.TemporaryDirectory(prefix="vboxpy-media-") as staging:
        s = Path(staging)
        (s / "syslinux.cfg").write_text(bootmenu.config())
        files = [(kernel, f"::/{bootmenu.KERNEL_NAME}"), (initrd, f"::/{bootmenu.INITRD_NAME}"),
                 (s / "syslinux.cfg", f"::/{SYSLINUX_DIR}/syslinux.cfg")]
        files += [(loaders / BIOS_MODULES / m, f"::/{SYSLINUX_DIR}/{m}") for m in bootmenu.MENU_MODULES]
        run(["mmd", "-i", image, f"::/{SYSLINUX_DIR}"], env=env)
        for src, dst in files:
            run(["mcopy", "-i", image, "-o", str(src), dst], env=env)
    # The installer writes ldlinux.sys/ldlinux.c32 through mtools and the boot sector in place.
    run([str(loaders / SYSLINUX_INSTALLER), "--install", "--offset", str(offset),
         "--directory", f"/{SYSLINUX_DIR}", str(tmp)], env=env)
    mbr_code = (loaders / MBR_BIN).read_bytes()
    mbr = build_mbr(mbr_code, [part], stable_uuid(key).int >> 96, DISK_SIZE // SECTOR)
    with open(tmp, "r+b") as f:
        f.write(mbr)
    os.replace(tmp, out_raw)
    raw_to_vdi(out_raw, out_vdi, stable_uuid({**key, "medium": "disk"}))


def build_iso(out_iso: Path, kernel: Path, initrd: Path, loaders: Path) -> None:
    """ISO 9660 + Rock Ridge + Joliet with ISOLINUX as the El Torito no-emulation boot image."""
    with tempfile.TemporaryDirectory(prefix="vboxpy-iso-") as staging:
        s = Path(staging)
        (s / ISOLINUX_DIR).mkdir()
        shutil.copyfile(kernel, s / bootmenu.KERNEL_NAME)
        shutil.copyfile(initrd, s / bootmenu.INITRD_NAME)
        shutil.copyfile(loaders / ISOLINUX_BIN, s / ISOLINUX_DIR / "isolinux.bin")
        for m in ("ldlinux.c32",) + bootmenu.MENU_MODULES:
            shutil.copyfile(loaders / BIOS_MODULES / m, s / ISOLINUX_DIR / m)
        (s / ISOLINUX_DIR / "isolinux.cfg").write_text(bootmenu.config())
        epoch = int(SOURCE_DATE_EPOCH)
        for p in s.rglob("*"):
            os.utime(p, (epoch, epoch))
        os.utime(s, (epoch, epoch))
        tmp = out_iso.with_name(out_iso.name + ".tmp")
        tmp.unlink(missing_ok=True)
        run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(tmp), "-R", "-J", "-V", ISO_LABEL,
             "-b", f"{ISOLINUX_DIR}/isolinux.bin", "-c", f"{ISOLINUX_DIR}/boot.cat",
             "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", str(s)], env=_tool_env())
    os.replace(tmp, out_iso)


MEDIA_VERSION = 1
MANIFEST = "media.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(directory: Path) -> dict:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def write_manifest(directory: Path, name: str, entry: dict) -> None:
    manifest = read_manifest(directory)
    manifest[name] = entry
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, directory / MANIFEST)


def build_boot_media(out: Path, kernel: Path, initrd: Path, kinds: set[str], force: bool = False,
                     log=print) -> MediaFiles:
    """Build the disk and/or ISO ("disk", "iso") in `out` unless up to date with the kernel, the
    initramfs and the boot loader package versions."""
    files = media_files(out)
    loaders = loader_versions()
    key = {"media_version": MEDIA_VERSION, "loaders": loaders,
           "kernel": _sha256(kernel), "initrd": _sha256(initrd), "menu": bootmenu.config()}
    manifest = read_manifest(out)
    outputs = {"disk": (files.disk_raw, files.disk_vdi), "iso": (files.iso,)}
    todo = [k for k in ("disk", "iso") if k in kinds and (
        force or manifest.get(k, {}).get("key") != key or not all(p.is_file() for p in outputs[k]))]
    for k in sorted(kinds - set(todo)):
        log(f"{k} medium up to date in {out}")
    if not todo:
        return files
    with tempfile.TemporaryDirectory(prefix="vboxpy-loaders-") as work:
        log(f"downloading {', '.join(f'{p} {v}' for p, v in loaders.items())}")
        root = fetch_loaders(Path(work), loaders)
        if "disk" in todo:
            build_disk(files.disk_raw, files.disk_vdi, kernel, initrd, root, key)
            write_manifest(out, "disk", {"key": key, "sha256": _sha256(files.disk_raw),
                                         "files": [files.disk_raw.name, files.disk_vdi.name]})
            log(f"disk image written: {files.disk_vdi} (raw: {files.disk_raw.name})")
        if "iso" in todo:
            build_iso(files.iso, kernel, initrd, root)
            write_manifest(out, "iso", {"key": key, "sha256": _sha256(files.iso), "files": [files.iso.name]})
            log(f"ISO written: {files.iso}")
    return files
