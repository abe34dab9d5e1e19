"""The Debian guest on REM with a PIIX4 IDE controller: a disk on the primary channel and a DVD
drive with an ISO 9660 image (made with xorriso) on the secondary.

One boot: Linux's ata_piix finds both channels, sd/sr attach the disk and the CD-ROM, the
guest reads a file off the ISO (through bus-master DMA) and its md5 matches the host's, makes
an ext2 file system on the IDE disk and writes a file that the host then reads out of the
image with debugfs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.vm.guest_console import READY_MARKER, GuestConsole
from vmm.guest.builder import cache_dir

ROOT = Path(__file__).resolve().parents[3]
GUEST = cache_dir()
NEEDED = {"ata_piix", "sr_mod", "isofs"}
BOOT_TIMEOUT = 1200


def _guest_has_modules() -> bool:
    try:
        return NEEDED <= set(json.loads((GUEST / "manifest.json").read_text())["modules"])
    except (OSError, ValueError, KeyError):
        return False


pytestmark = [
    pytest.mark.guest,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not (GUEST / "vmlinux").exists(),
                       reason="no guest kernel: run python -m vmm.guest.builder"),
    pytest.mark.skipif(not _guest_has_modules(),
                       reason="the guest's initramfs has no ata_piix/sr_mod/isofs: rebuild it (python -m "
                       "vmm.guest.builder)"),
    pytest.mark.skipif(not shutil.which("xorriso"), reason="xorriso is not installed"),
    pytest.mark.skipif(not shutil.which("debugfs"), reason="debugfs (e2fsprogs) is not installed"),
]


def guest(console: GuestConsole, command: str, timeout: float = 600) -> str:
    status, out = console.run(command, timeout)
    assert status == 0, f"guest command failed ({status}): {command}\n{out}"
    return out


def test_ide_disk_and_dvd_in_the_guest(tmp_path):
    tree = tmp_path / "tree"
    (tree / "docs").mkdir(parents=True)
    (tree / "hello.txt").write_text("hello-from-the-dvd\n")
    blob = os.urandom(300 * 1024)
    (tree / "docs" / "blob.bin").write_bytes(blob)
    iso = tmp_path / "disc.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "VBOXPYTEST", "-o", str(iso), str(tree)],
                   check=True, capture_output=True)
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as f:
        f.truncate(32 << 20)

    argv = [sys.executable, "-m", "vmm.run", "--kernel", str(GUEST / "vmlinux"), "--initrd",
            str(GUEST / "initrd.img"),
            "--append", "console=ttyS0 quiet", "--memory", "256", "--engine", "rem",
            "--disk", f"ide:{disk}", "--dvd", str(iso)]
    console = GuestConsole(argv, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                           log_path=str(tmp_path / "boot.log"))
    try:
        console.wait_for(READY_MARKER, BOOT_TIMEOUT)
        blocks = guest(console, 'for d in /sys/block/sd* /sys/block/sr*; do echo "DEV $(basename $d) '
                                '$(readlink -f $d)"; done')
        devs = dict(re.findall(r"DEV (s[dr][a-z0-9]+) (\S+)", blocks))
        assert "sda" in devs and "sr0" in devs, blocks
        assert "/ata1/" in devs["sda"], devs
        assert "VBOX CD-ROM" in guest(console,
                                      "echo $(cat /sys/block/sr0/device/vendor /sys/block/sr0/device/model)")
        assert "/ata2/" in guest(console, "readlink -f /sys/block/sr0")
        guest(console, "mkdir -p /mnt/cd && mount -t iso9660 -o ro /dev/sr0 /mnt/cd")
        assert "hello-from-the-dvd" in guest(console, "cat /mnt/cd/hello.txt")
        assert hashlib.md5(blob).hexdigest() in guest(console, "md5sum /mnt/cd/docs/blob.bin")
        guest(console, "mke2fs -q /dev/sda && mkdir -p /mnt/hd && mount -t ext4 /dev/sda /mnt/hd")
        guest(console, "cp /mnt/cd/hello.txt /mnt/hd/copied.txt && sync")
        guest(console, "umount /mnt/cd && umount /mnt/hd")
        console.proc.stdin.write(b"poweroff\n")
        console.proc.stdin.flush()
        assert console.close(300) == 0, "the VM did not power off cleanly"
    finally:
        if console.proc.poll() is None:
            console.proc.kill()
            console.close(30)
    out = tmp_path / "copied.txt"
    subprocess.run(["debugfs", "-R", f"dump /copied.txt {out}", str(disk)], check=True, capture_output=True)
    assert out.read_text() == "hello-from-the-dvd\n"


def test_dvd_on_a_sata_port_in_the_guest(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "sata.txt").write_text("hello-from-the-sata-dvd\n")
    iso = tmp_path / "sata.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), str(tree)], check=True,
                   capture_output=True)
    argv = [sys.executable, "-m", "vmm.run", "--kernel", str(GUEST / "vmlinux"), "--initrd",
            str(GUEST / "initrd.img"),
            "--append", "console=ttyS0 quiet", "--memory", "256", "--engine", "rem", "--dvd", f"sata:{iso}"]
    console = GuestConsole(argv, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                           log_path=str(tmp_path / "boot.log"))
    try:
        console.wait_for(READY_MARKER, BOOT_TIMEOUT)
        assert "/ata" in guest(console, "readlink -f /sys/block/sr0")          # libata's AHCI port
        assert "ahci" in guest(console, "readlink -f /sys/block/sr0/device/../../../../driver || "
                                        "ls -l /sys/bus/pci/drivers/ahci")
        guest(console, "mkdir -p /mnt/cd && mount -t iso9660 /dev/sr0 /mnt/cd")
        assert "hello-from-the-sata-dvd" in guest(console, "cat /mnt/cd/sata.txt")
    finally:
        console.proc.kill()
        console.close(30)
