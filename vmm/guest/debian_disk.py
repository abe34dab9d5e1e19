"""A full Debian 12 disk for the tests, the demo and the benchmarks: a Vagrant-style base box.

mmdebstrap builds the tree (systemd, udev, openssh-server, sudo, linux-image-amd64 with its
initramfs, systemd-networkd with DHCP on every en* NIC, GRUB's BIOS modules); the builder then
adds a `vagrant` user (password vagrant, passwordless sudo, Vagrant's public insecure key from
Debian's vagrant package), a serial getty through `console=ttyS0`, and a root file system by
UUID.  The disk is assembled without loop devices or mounts: `mke2fs -d` writes the ext4 file
system straight into the image at the partition offset, GRUB's core.img (grub-mkimage, run in
the tree) goes into the gap between the MBR and the partition, and GRUB's boot.img is the MBR
boot code.  GRUB rather than SYSLINUX because it reads the ext4 root itself, so kernel updates
inside the guest (/vmlinuz, /initrd.img symlinks) keep booting with no installer step.

The result (raw for QEMU, VDI for vboxpy, and the matching private key for ssh) is cached,
keyed by the candidate versions of the packages named here: a build takes minutes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

from vmm.guest.debs import GuestBuildError, download_extract, run, versions
from vmm.guest.mbr import BOOT_CODE_SIZE, SECTOR, TYPE_LINUX, Partition, build_mbr
from vmm.guest.media import read_manifest, write_manifest
from vmm.guest.paths import cache_dir
from vmm.guest.tovdi import raw_to_vdi

DEBIAN_DISK_VERSION = 3
SUITE = "bookworm"
MIRRORS = [
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
]
PACKAGES = [
    "systemd-sysv", "udev", "dbus", "systemd-resolved", "linux-image-amd64", "initramfs-tools",
    "openssh-server", "sudo", "iproute2", "procps", "netbase", "less", "grub-pc-bin", "grub-common",
]
KEY_PACKAGE = "vagrant"         # only its keys/ directory is used
KEY_DIR = "usr/share/rubygems-integration/all/gems"
HOSTNAME = "vboxpy-debian"
USER = "vagrant"
PASSWORD = "vagrant"
DISK_SIZE = 4 << 30
PARTITION_START = 2048
FS_LABEL = "vboxpy-root"
KERNEL_CMDLINE = "ro console=tty0 console=ttyS0,115200"
# Under CPU emulation udev's coldplug can take minutes of guest time; systemd's default of 90 s
# for a device to appear would then fail the serial getty (it binds to /dev/ttyS0).
SYSTEMD_MANAGER_CONF = """[Manager]
DefaultDeviceTimeoutSec=600
"""
GRUB_TIMEOUT = 1
# Built into core.img: enough to find the root file system by UUID and read grub.cfg; the rest
# load from /boot/grub/i386-pc on demand.
GRUB_CORE_MODULES = ["biosdisk", "part_msdos", "ext2", "search", "search_fs_uuid", "normal", "configfile"]
GRUB_MODULE_DIR = "usr/lib/grub/i386-pc"
# boot.img's fields as GRUB's boot.S lays them out: the LBA of core.img's first sector.
GRUB_KERNEL_SECTOR_OFFSET = 0x5C


@dataclass(frozen=True)
class DebianDisk:
    raw: Path
    vdi: Path
    private_key: Path
    public_key: Path


def debian_files(directory: Path) -> DebianDisk:
    return DebianDisk(directory / "debian12.img", directory / "debian12.vdi",
                      directory / "vagrant_insecure_key", directory / "vagrant_insecure_key.pub")


def find_debian_disk(directory: Path | None = None) -> DebianDisk | None:
    """The built Debian disk, or None when `--media debian` has not been run."""
    directory = directory or cache_dir()
    files = debian_files(directory)
    ok = (all(p.is_file() for p in (files.raw, files.vdi, files.private_key))
          and "debian" in read_manifest(directory))
    return files if ok else None


def build_key() -> dict:
    return {"version": DEBIAN_DISK_VERSION, "suite": SUITE, "mirrors": MIRRORS,
            "packages": versions(PACKAGES + [KEY_PACKAGE])}


def _uuid(key: dict, what: str) -> uuidlib.UUID:
    digest = hashlib.sha256((what + repr(sorted(key.items()))).encode()).digest()
    return uuidlib.UUID(bytes=digest[:16], version=4)


def _grub_cfg(root_uuid: str) -> str:
    return f"""serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout={GRUB_TIMEOUT}
set default=0
menuentry "Debian GNU/Linux 12" {{
    search --no-floppy --fs-uuid --set=root {root_uuid}
    linux /vmlinuz root=UUID={root_uuid} {KERNEL_CMDLINE}
    initrd /initrd.img
}}
menuentry "Debian GNU/Linux 12 (recovery mode)" {{
    search --no-floppy --fs-uuid --set=root {root_uuid}
    linux /vmlinuz root=UUID={root_uuid} {KERNEL_CMDLINE} single
    initrd /initrd.img
}}
"""


def _early_cfg(root_uuid: str) -> str:
    return f"""search --no-floppy --fs-uuid --set=root {root_uuid}
set prefix=($root)/boot/grub
"""


def _customize_hooks() -> list[str]:
    """Commands mmdebstrap runs with the tree as "$1" and /proc, /sys, /dev mounted in it."""
    return [
        f'chroot "$1" useradd --create-home --shell /bin/bash --groups sudo {USER}',
        f'echo "{USER}:{PASSWORD}" | chroot "$1" chpasswd',
        f'echo "root:{PASSWORD}" | chroot "$1" chpasswd',
        'chroot "$1" systemctl enable systemd-networkd.service systemd-resolved.service',
    ]


def _owner(tree: Path, user: str) -> tuple[int, int]:
    for line in (tree / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == user:
            return int(f[2]), int(f[3])
    raise GuestBuildError(f"the tree has no user {user}")


def configure_tree(tree: Path, root_uuid: str, public_key: bytes) -> None:
    """The files that make the mmdebstrap tree a bootable Vagrant-style box."""
    (tree / "etc/hostname").write_text(HOSTNAME + "\n")
    (tree / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n"
                                    "::1\tlocalhost ip6-localhost ip6-loopback\n")
    (tree / "etc/fstab").write_text(f"UUID={root_uuid}\t/\text4\terrors=remount-ro\t0\t1\n")
    (tree / "etc/systemd/system.conf.d").mkdir(parents=True, exist_ok=True)
    (tree / "etc/systemd/system.conf.d/50-slow-devices.conf").write_text(SYSTEMD_MANAGER_CONF)
    (tree / "etc/systemd/network").mkdir(parents=True, exist_ok=True)
    (tree / "etc/systemd/network/80-dhcp.network").write_text(
        "[Match]\nName=en*\n\n[Network]\nDHCP=yes\n")
    sudoers = tree / "etc/sudoers.d" / USER
    sudoers.write_text(f"{USER} ALL=(ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    uid, gid = _owner(tree, USER)
    ssh = tree / "home" / USER / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_bytes(public_key)
    (ssh / "authorized_keys").chmod(0o600)
    for p in (ssh, ssh / "authorized_keys"):
        os.chown(p, uid, gid)
    # GRUB as grub-install would lay it out, with our own grub.cfg (grub-mkconfig needs a device).
    grub = tree / "boot/grub"
    grub.mkdir(parents=True, exist_ok=True)
    shutil.copytree(tree / GRUB_MODULE_DIR, grub / "i386-pc", dirs_exist_ok=True)
    (grub / "grub.cfg").write_text(_grub_cfg(root_uuid))
    (grub / "early.cfg").write_text(_early_cfg(root_uuid))
    run(["chroot", str(tree), "grub-mkimage", "-O", "i386-pc", "-o", "/boot/grub/i386-pc/core.img",
         "-c", "/boot/grub/early.cfg", "-p", "/boot/grub"] + GRUB_CORE_MODULES)
    for link in ("vmlinuz", "initrd.img"):
        if not (tree / link).exists():
            raise GuestBuildError(f"the tree has no /{link} (kernel or initramfs missing)")
    # A unique machine id per boot of a copy: systemd makes one when the file is empty.
    (tree / "etc/machine-id").write_text("")


def assemble_disk(tree: Path, raw: Path, root_uuid: str, key: dict) -> None:
    """MBR (GRUB boot.img) + core.img in the gap + ext4 partition made by mke2fs -d."""
    sectors = DISK_SIZE // SECTOR
    part = Partition(PARTITION_START, sectors - PARTITION_START, TYPE_LINUX, active=True)
    core = (tree / "boot/grub/i386-pc/core.img").read_bytes()
    boot = (tree / GRUB_MODULE_DIR / "boot.img").read_bytes()
    if 1 + (len(core) + SECTOR - 1) // SECTOR > PARTITION_START:
        raise GuestBuildError(f"GRUB core.img ({len(core)} bytes) does not fit before the partition")
    if int.from_bytes(boot[GRUB_KERNEL_SECTOR_OFFSET:GRUB_KERNEL_SECTOR_OFFSET + 8], "little") != 1:
        raise GuestBuildError("GRUB boot.img does not load core.img from sector 1")
    tmp = raw.with_name(raw.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as f:
        f.truncate(DISK_SIZE)
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": "1700000000", "LC_ALL": "C"}
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", FS_LABEL, "-U", root_uuid,
         "-E", f"offset={part.start_lba * SECTOR},hash_seed={_uuid(key, 'hash')}",
         "-d", str(tree), str(tmp), f"{part.sectors * SECTOR // 1024}k"], env=env)
    mbr = build_mbr(boot[:BOOT_CODE_SIZE], [part], _uuid(key, "mbr").int >> 96, sectors)
    with open(tmp, "r+b") as f:
        f.write(mbr)
        f.seek(SECTOR)
        f.write(core)
    os.replace(tmp, raw)


def build_debian_disk(out: Path, force: bool = False, log=print) -> DebianDisk:
    files = debian_files(out)
    key = build_key()
    if not force and find_debian_disk(out) and read_manifest(out)["debian"].get("key") == key:
        log(f"Debian disk up to date in {out}")
        return files
    out.mkdir(parents=True, exist_ok=True)
    root_uuid = str(_uuid(key, "root"))
    with tempfile.TemporaryDirectory(prefix="vboxpy-debian-", dir=out) as work:
        w = Path(work)
        keys = download_extract(w, {KEY_PACKAGE: key["packages"][KEY_PACKAGE]}, w / "keypkg")
        found = sorted((w / "keypkg" / KEY_DIR).glob("vagrant-*/keys/vagrant.pub"))
        if not found:
            raise GuestBuildError("the vagrant package has no keys/vagrant.pub")
        public_key, private_key = found[0].read_bytes(), found[0].with_suffix("").read_bytes()
        shutil.rmtree(keys)
        tree = w / "tree"
        log(f"running mmdebstrap {SUITE} (takes minutes)")
        cmd = ["mmdebstrap", "--quiet", "--mode=root", "--variant=minbase", "--format=directory",
               f"--include={','.join(PACKAGES)}"]
        cmd += [f"--customize-hook={h}" for h in _customize_hooks()]
        run(cmd + [SUITE, str(tree)] + MIRRORS)
        configure_tree(tree, root_uuid, public_key)
        log("writing the disk image")
        assemble_disk(tree, files.raw, root_uuid, key)
    log("converting to VDI")
    raw_to_vdi(files.raw, files.vdi, _uuid(key, "vdi"))
    for path, data, mode in ((files.private_key, private_key, 0o600), (files.public_key, public_key, 0o644)):
        path.write_bytes(data)
        path.chmod(mode)
    write_manifest(out, "debian", {"key": key, "root_uuid": root_uuid, "user": USER, "password": PASSWORD,
                                   "files": [files.raw.name, files.vdi.name, files.private_key.name]})
    log(f"Debian disk written: {files.vdi} (raw: {files.raw.name})")
    return files
