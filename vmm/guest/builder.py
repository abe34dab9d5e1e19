"""Build the Debian guest used by the tests, the demo and the benchmarks.

`python -m vmm.guest.builder [--quiet] [--force] [--media disk,iso,debian]` downloads the
kernel package that `linux-image-amd64` depends on and `busybox-static` with `apt-get download`, extracts
`vmlinuz`, derives `vmlinux`, and writes an uncompressed cpio initramfs (busybox, /init,
the storage/ACPI modules and their dependencies).  Results go to the cache directory
(`.cache/guest/` in the checkout, or $VBOXPY_GUEST_CACHE) with a manifest naming the
package versions; a second run with the same versions does nothing.  `--media` adds the
bootable media of vmm.guest.media (disk image, ISO) and vmm.guest.debian_disk (full Debian).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vmm.guest.cpio import CpioWriter
from vmm.guest.debs import GuestBuildError, candidate, download_extract, run
from vmm.guest.init_script import INIT, POWER_BUTTON, READY_MARKER, UDHCPC_SCRIPT
from vmm.guest.kmod import index_modules, load_order
from vmm.guest.paths import cache_dir
from vmm.guest.vmlinux import extract_vmlinux

BUILDER_VERSION = 6
META_PACKAGE = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
# Storage (AHCI, virtio, PIIX IDE with its CD/DVD drives), ext4 and ISO 9660 file systems,
# button+evdev for the ACPI power button, the NICs, vboxguest+vboxsf for VirtualBox shared
# folders over VMMDev.
WANTED_MODULES = [
    "scsi_mod",
    "sd_mod",
    "libata",
    "ahci",
    "ata_piix",
    "sr_mod",
    "virtio_pci",
    "virtio_scsi",
    "virtio_blk",
    "crc32c_generic",
    "ext4",
    "isofs",
    "evdev",
    "button",
    "e1000",
    "virtio_net",
    "vboxguest",
    "vboxsf",
]


@dataclass(frozen=True)
class GuestFiles:
    vmlinuz: Path
    vmlinux: Path
    initrd: Path

    def exist(self) -> bool:
        return all(p.is_file() for p in (self.vmlinuz, self.vmlinux, self.initrd))


def guest_files(directory: Path | None = None) -> GuestFiles:
    d = directory or cache_dir()
    return GuestFiles(d / "vmlinuz", d / "vmlinux", d / "initrd.img")


def find_guest() -> GuestFiles | None:
    """The built guest, or None when `python -m vmm.guest.builder` has not been run."""
    files = guest_files()
    return files if files.exist() else None


def resolve_packages() -> dict[str, str]:
    """Package name -> version for the kernel image and busybox-static."""
    _, deps = candidate(META_PACKAGE)
    m = re.search(r"(linux-image-[0-9][^\s,]*)", deps)
    if not m:
        raise GuestBuildError(f"{META_PACKAGE} does not depend on a linux-image-<version> package")
    kernel = m.group(1)
    return {kernel: candidate(kernel)[0], BUSYBOX_PACKAGE: candidate(BUSYBOX_PACKAGE)[0]}


def build_initramfs(busybox: bytes, applets: list[str], modules: list[tuple[str, bytes]]) -> bytes:
    """The cpio archive: busybox + applet links, /init, /dev/console, modules with load order."""
    w = CpioWriter()
    for d in ("bin", "dev", "etc", "etc/acpi", "etc/acpi/PWRF", "lib", "lib/modules", "mnt", "proc",
              "root", "sys", "tmp", "etc/udhcpc", "www"):
        w.directory(d, 0o1777 if d == "tmp" else 0o755)
    w.char_device("dev/console", 5, 1)
    w.file("bin/busybox", busybox, 0o755)
    for applet in sorted(set(applets) - {"busybox"}):
        w.symlink(f"bin/{applet}", "busybox")
    w.symlink("sbin", "bin")
    w.file("init", INIT.encode(), 0o755)
    w.file("etc/acpi/PWRF/00000080", POWER_BUTTON.encode(), 0o755)
    w.file("etc/udhcpc/default.script", UDHCPC_SCRIPT.encode(), 0o755)   # Debian's busybox looks here
    for name, data in modules:
        w.file(f"lib/modules/{name}.ko", data)
    w.file("lib/modules/load-order", "".join(f"{n}\n" for n, _ in modules).encode())
    return w.finish()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def build(out: Path | None = None, force: bool = False, log=print) -> GuestFiles:
    out = out or cache_dir()
    files = guest_files(out)
    manifest_path = out / "manifest.json"
    packages = resolve_packages()
    if not force and files.exist() and manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError:
            manifest = {}
        if manifest.get("packages") == packages and manifest.get("builder") == BUILDER_VERSION:
            log(f"guest up to date in {out}")
            return files
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vboxpy-guest-") as tmp:
        log(f"downloading {', '.join(f'{p} {v}' for p, v in packages.items())}")
        root = download_extract(Path(tmp), packages)
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise GuestBuildError("the kernel package has no /boot/vmlinuz-*")
        vmlinuz = kernels[0].read_bytes()
        kver = kernels[0].name[len("vmlinuz-"):]
        log("deriving vmlinux")
        vmlinux = extract_vmlinux(vmlinuz)
        busybox_path = root / "bin" / "busybox"
        if not busybox_path.is_file():
            raise GuestBuildError("busybox-static has no /bin/busybox")
        applets = run([str(busybox_path), "--list"]).split()
        index = index_modules(root / "lib" / "modules" / kver)
        order = load_order(WANTED_MODULES, index)
        modules = [(n, index[n].read_bytes()) for n in order]
        log(f"initramfs modules: {' '.join(order)}")
        initrd = build_initramfs(busybox_path.read_bytes(), applets, modules)
    _write_atomic(files.vmlinuz, vmlinuz)
    _write_atomic(files.vmlinux, vmlinux)
    _write_atomic(files.initrd, initrd)
    manifest = {
        "builder": BUILDER_VERSION, "packages": packages, "kernel_release": kver, "modules": order,
        "ready_marker": READY_MARKER,
        "sha256": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (files.vmlinuz,
                                                                               files.vmlinux, files.initrd)},
    }
    _write_atomic(manifest_path, json.dumps(manifest, indent=2).encode())
    log(f"guest written to {out}")
    return files


MEDIA_KINDS = ("disk", "iso", "debian")


def _media_list(value: str) -> set[str]:
    kinds = {k.strip() for k in value.split(",") if k.strip()}
    if "all" in kinds:
        kinds = set(MEDIA_KINDS)
    bad = kinds - set(MEDIA_KINDS)
    if bad:
        raise argparse.ArgumentTypeError(f"unknown medium {', '.join(sorted(bad))} "
                                         f"(choose from {', '.join(MEDIA_KINDS)}, all)")
    return kinds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vboxpy-guest", description="Build the Debian test guest.")
    ap.add_argument("--quiet", action="store_true", help="print only errors")
    ap.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")
    ap.add_argument("--out", type=Path, help="output directory (default: the guest cache)")
    ap.add_argument("--media", type=_media_list, default=set(), metavar="LIST",
                    help="also build bootable media, a comma list of: disk (MBR disk with SYSLINUX, "
                         "VDI), iso (ISOLINUX CD), debian (full Debian 12 disk, takes minutes), all")
    args = ap.parse_args(argv)
    log = (lambda *_: None) if args.quiet else print
    try:
        files = build(args.out, args.force, log=log)
        out = args.out or cache_dir()
        if args.media & {"disk", "iso"}:
            from vmm.guest.media import build_boot_media
            build_boot_media(out, files.vmlinuz, files.initrd, args.media & {"disk", "iso"}, args.force, log)
        if "debian" in args.media:
            from vmm.guest.debian_disk import build_debian_disk
            build_debian_disk(out, args.force, log)
    except Exception as e:  # every failure is reported as one line, with a non-zero exit
        print(f"vboxpy-guest: error: {e}", file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
