"""The cached full Debian disk: partition table, GRUB in the MBR and its gap, the ext4 root's
identity and the files that make it a Vagrant-style box (read with debugfs, nothing mounted).

Skips when `python -m vmm.guest.builder --media debian` has not been run.
"""

import shutil
import struct
import subprocess
import uuid

import pytest

from vmm.guest.builder import cache_dir
from vmm.guest.debian_disk import (
    FS_LABEL,
    GRUB_KERNEL_SECTOR_OFFSET,
    PARTITION_START,
    USER,
    find_debian_disk,
)
from vmm.guest.mbr import SECTOR, TYPE_LINUX, parse_mbr
from vmm.guest.media import read_manifest
from vmm.storage.opener import open_image

EXT4_MAGIC = 0xEF53


@pytest.fixture(scope="module")
def disk():
    files = find_debian_disk(cache_dir())
    if files is None:
        pytest.skip("Debian disk not built (python -m vmm.guest.builder --media debian)")
    return files, read_manifest(cache_dir())["debian"]


def _debugfs(files, request: str) -> str:
    debugfs = shutil.which("debugfs") or shutil.which("debugfs", path="/usr/sbin:/sbin")
    if debugfs is None:
        pytest.skip("debugfs (e2fsprogs) is not installed")
    res = subprocess.run([debugfs, "-R", request, f"{files.raw}?offset={PARTITION_START * SECTOR}"],
                         capture_output=True, text=True, check=True)
    return res.stdout


def test_mbr_boots_grub_from_the_gap(disk):
    files, _ = disk
    with open(files.raw, "rb") as f:
        head = f.read(PARTITION_START * SECTOR)
    _, parts = parse_mbr(head[:SECTOR])
    assert len(parts) == 1
    p = parts[0]
    assert p.active and p.type_id == TYPE_LINUX and p.start_lba == PARTITION_START
    assert p.end_lba * SECTOR == files.raw.stat().st_size
    # GRUB's boot.img loads core.img from LBA 1; core.img starts with diskboot's code, whose
    # last bytes hold the block list of the rest of core.img (start 2, length > 0).
    assert struct.unpack_from("<Q", head, GRUB_KERNEL_SECTOR_OFFSET)[0] == 1
    start, length, segment = struct.unpack_from("<QHH", head, 2 * SECTOR - 12)
    assert start == 2 and 0 < length < PARTITION_START - 2 and segment
    assert any(head[2 * SECTOR:(2 + length) * SECTOR])


def test_root_file_system_identity(disk):
    files, manifest = disk
    with open(files.raw, "rb") as f:
        f.seek(PARTITION_START * SECTOR + 1024)
        sb = f.read(1024)
    assert struct.unpack_from("<H", sb, 0x38)[0] == EXT4_MAGIC
    assert str(uuid.UUID(bytes=sb[0x68:0x78])) == manifest["root_uuid"]
    assert sb[0x78:0x88].rstrip(b"\0").decode() == FS_LABEL


def test_boot_files_name_the_root_by_uuid(disk):
    files, manifest = disk
    root = manifest["root_uuid"]
    grub_cfg = _debugfs(files, "cat /boot/grub/grub.cfg")
    assert f"root=UUID={root}" in grub_cfg and "console=ttyS0" in grub_cfg and "console=tty0" in grub_cfg
    assert grub_cfg.count("menuentry ") >= 2
    assert f"UUID={root}" in _debugfs(files, "cat /etc/fstab")
    boot = _debugfs(files, "ls -l /boot")
    assert "vmlinuz-" in boot and "initrd.img-" in boot
    assert "core.img" in _debugfs(files, "ls /boot/grub/i386-pc")


def test_vagrant_user_key_and_sudo(disk):
    files, _ = disk
    key = _debugfs(files, f"cat /home/{USER}/.ssh/authorized_keys")
    assert key.encode() == files.public_key.read_bytes() and key.startswith("ssh-rsa ")
    st = _debugfs(files, f"stat /home/{USER}/.ssh/authorized_keys")
    assert "Mode:  0600" in st and "User:  1000" in st
    assert f"{USER} ALL=(ALL) NOPASSWD: ALL" in _debugfs(files, f"cat /etc/sudoers.d/{USER}")
    passwd = _debugfs(files, "cat /etc/passwd")
    assert any(line.startswith(f"{USER}:x:1000:") for line in passwd.splitlines())


def test_services_enabled(disk):
    files, _ = disk
    wants = _debugfs(files, "ls /etc/systemd/system/multi-user.target.wants")
    assert "ssh.service" in wants and "systemd-networkd.service" in wants
    assert "DefaultDeviceTimeoutSec=" in _debugfs(files,
                                                  "cat /etc/systemd/system.conf.d/50-slow-devices.conf")
    network = _debugfs(files, "cat /etc/systemd/network/80-dhcp.network")
    assert "Name=en*" in network and "DHCP=yes" in network


def test_vdi_matches_raw_where_it_matters(disk):
    files, _ = disk
    with open(files.raw, "rb") as f, open_image(str(files.vdi), read_only=True) as vdi:
        assert vdi.size == files.raw.stat().st_size
        for off in (0, PARTITION_START * SECTOR, vdi.size // 2, vdi.size - (1 << 20)):
            f.seek(off)
            assert vdi.read_at(off, 1 << 20) == f.read(1 << 20)
