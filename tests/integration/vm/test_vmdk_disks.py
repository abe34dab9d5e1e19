"""VMDK disks in the guest: one boot of the Debian kernel on REM with a VMDK we created on an
IntelAhci controller and a VMDK qemu-img created on a VirtioSCSI controller. The guest makes
file systems and writes files, syncs and powers off; on the host both images pass
`qemu-img check` and the files read back (debugfs on a `qemu-img convert`ed copy)."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess

import pytest

from tests.integration.vm.test_disks import GUEST, boot, disk_names, guest, host_file, qemu_img_check
from vmm.storage import create_vmdk

pytestmark = [
    pytest.mark.guest,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(not (GUEST / "vmlinux").exists(),
                       reason="no guest kernel: run python -m vmm.guest.builder"),
    pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img (qemu-utils) is not installed"),
    pytest.mark.skipif(not shutil.which("debugfs"), reason="debugfs (e2fsprogs) is not installed"),
]


def test_guest_writes_reach_vmdk_images(tmp_path):
    disks = {"ahci": tmp_path / "ours.vmdk", "virtio": tmp_path / "qemu.vmdk"}
    create_vmdk(str(disks["ahci"]), 64 << 20).close()
    subprocess.run(["qemu-img", "create", "-f", "vmdk", str(disks["virtio"]), "64M"], check=True,
                   capture_output=True)
    console = boot(disks, tmp_path / "boot.log")
    try:
        names = disk_names(console)
        assert set(names) == {"ahci", "virtio"}, names
        sums = {}
        for ctl, dev in names.items():
            guest(console,
                  f"mke2fs -q /dev/{dev} && mkdir -p /mnt/{ctl} && mount -t ext4 /dev/{dev} /mnt/{ctl}")
            guest(console, f"echo hello-from-{ctl} > /mnt/{ctl}/hello.txt")
            guest(console, f"dd if=/dev/urandom of=/mnt/{ctl}/blob bs=64k count=16 2>/dev/null")
            sums[ctl] = re.search(r"([0-9a-f]{32})", guest(console, f"md5sum /mnt/{ctl}/blob")).group(1)
        guest(console, "sync")
        console.proc.stdin.write(b"poweroff\n")
        console.proc.stdin.flush()
        assert console.close(300) == 0, "the VM did not power off cleanly"
    finally:
        if console.proc.poll() is None:     # a failed step must not leave the VM process behind
            console.proc.kill()
            console.proc.wait()
    for ctl, image in disks.items():
        qemu_img_check(image)
        assert host_file(image, tmp_path, "hello.txt") == f"hello-from-{ctl}\n".encode()
        assert hashlib.md5(host_file(image, tmp_path, "blob")).hexdigest() == sums[ctl]
