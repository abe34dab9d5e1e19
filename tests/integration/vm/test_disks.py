"""Disks in the guest: the Debian kernel on REM with a VDI on an IntelAhci and on a VirtioSCSI controller.

Boot 1 makes an ext2 file system (busybox mke2fs; ext4's driver mounts it) on each disk,
writes files, syncs and powers off.  The host then checks the VDIs with `qemu-img check` and
reads the files out of a `qemu-img convert`ed copy with debugfs (no mount).  Boot 2 finds the
files, writes one more, syncs, and the VM process is killed with SIGKILL: what the guest
synced must be in the image, which must still pass `qemu-img check`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.vm.guest_console import READY_MARKER, GuestConsole
from vmm.storage.create import create_vdi

ROOT = Path(__file__).resolve().parents[3]
GUEST = ROOT / ".cache" / "guest"
BOOT_TIMEOUT = 1200

pytestmark = [
    pytest.mark.guest,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(not (GUEST / "vmlinux").exists(),
                       reason="no guest kernel: run python -m vmm.guest.builder"),
    pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img (qemu-utils) is not installed"),
    pytest.mark.skipif(not shutil.which("debugfs"), reason="debugfs (e2fsprogs) is not installed"),
]


def boot(disks: dict[str, Path], log: Path) -> GuestConsole:
    argv = [sys.executable, "-m", "vmm.run", "--kernel", str(GUEST / "vmlinux"), "--initrd",
            str(GUEST / "initrd.img"), "--append", "console=ttyS0 quiet", "--memory", "256",
            "--engine", "rem"]
    for ctl, path in disks.items():
        argv += ["--disk", f"{ctl}:{path}"]
    console = GuestConsole(argv, env=dict(os.environ, PYTHONPATH=str(ROOT)), log_path=str(log))
    console.wait_for(READY_MARKER, BOOT_TIMEOUT)
    return console


def guest(console: GuestConsole, command: str, timeout: float = 600) -> str:
    status, out = console.run(command, timeout)
    assert status == 0, f"guest command failed ({status}): {command}\n{out}"
    return out


def disk_names(console: GuestConsole) -> dict[str, str]:
    """Which /dev/sdX sits behind which controller (from the sysfs device path)."""
    out = guest(console, 'for d in /sys/block/sd*; do echo "DISK $(basename $d) $(readlink -f $d)"; done')
    found = {}
    for name, path in re.findall(r"DISK (sd[a-z]+) (\S+)", out):
        found["virtio" if "/virtio" in path else "ahci" if "/ata" in path else "?"] = name
    return found


def host_file(vdi: Path, tmp: Path, name: str) -> bytes:
    raw = tmp / (vdi.stem + ".raw")
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(vdi), str(raw)], check=True)
    out = tmp / f"{vdi.stem}-{name}"
    subprocess.run(["debugfs", "-R", f"dump /{name} {out}", str(raw)], check=True, capture_output=True)
    data = out.read_bytes()
    raw.unlink()
    return data


def qemu_img_check(vdi: Path) -> None:
    r = subprocess.run(["qemu-img", "check", str(vdi)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_files_survive_poweroff_reboot_and_kill(tmp_path):
    disks = {}
    for ctl in ("ahci", "virtio"):
        disks[ctl] = tmp_path / f"{ctl}.vdi"
        create_vdi(str(disks[ctl]), 64 << 20).close()

    # Boot 1: make file systems, write, sync, power off.
    console = boot(disks, tmp_path / "boot1.log")
    names = disk_names(console)
    assert set(names) == {"ahci", "virtio"}, names
    sums = {}
    for ctl, dev in names.items():
        guest(console, f"mke2fs -q /dev/{dev} && mkdir -p /mnt/{ctl} && mount -t ext4 /dev/{dev} /mnt/{ctl}")
        guest(console, f"echo hello-from-{ctl}-controller > /mnt/{ctl}/hello.txt")
        guest(console, f"dd if=/dev/urandom of=/mnt/{ctl}/blob bs=64k count=16 2>/dev/null")
        sums[ctl] = re.search(r"([0-9a-f]{32})", guest(console, f"md5sum /mnt/{ctl}/blob")).group(1)
    guest(console, "sync")
    console.proc.stdin.write(b"poweroff\n")
    console.proc.stdin.flush()
    assert console.close(300) == 0, "the VM did not power off cleanly"

    for ctl, vdi in disks.items():
        qemu_img_check(vdi)
        assert host_file(vdi, tmp_path, "hello.txt") == f"hello-from-{ctl}-controller\n".encode()
        assert hashlib.md5(host_file(vdi, tmp_path, "blob")).hexdigest() == sums[ctl]

    # Boot 2: the files are there; write another, sync, then SIGKILL the VM process.
    console = boot(disks, tmp_path / "boot2.log")
    names = disk_names(console)
    for ctl, dev in names.items():
        guest(console, f"mkdir -p /mnt/{ctl} && mount -t ext4 /dev/{dev} /mnt/{ctl}")
        assert f"hello-from-{ctl}-controller" in guest(console, f"cat /mnt/{ctl}/hello.txt")
        assert sums[ctl] in guest(console, f"md5sum /mnt/{ctl}/blob")
        guest(console, f"echo synced-before-kill-{ctl} > /mnt/{ctl}/after.txt")
    guest(console, "sync")
    console.proc.send_signal(signal.SIGKILL)
    console.close(60)

    for ctl, vdi in disks.items():
        qemu_img_check(vdi)
        assert host_file(vdi, tmp_path, "after.txt") == f"synced-before-kill-{ctl}\n".encode()
