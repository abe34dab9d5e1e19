"""Snapshots of a running machine with the real VM process: `vboxmanage` CLI, the service and
`vboxheadless` on REM with the Debian guest and a VDI; the guest writes through its file system
while snapshots are taken and deleted online, then `snapshot restore` brings old content back."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pytest

from tests.integration.vm.serial_tcp import TcpSerial

ROOT = Path(__file__).resolve().parents[3]
GUEST = ROOT / ".cache" / "guest"
READY = "VBOXPY-GUEST-READY"
VM = "hs"

pytestmark = [
    pytest.mark.guest,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not (GUEST / "vmlinux").is_file(),
                       reason="no guest kernel: run python -m vmm.guest.builder"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def state(vbm) -> str:
    return vbm.machinereadable(VM)["VMState"]


def start(vbm, port: int) -> TcpSerial:
    vbm("startvm", VM, "--type", "headless", check=0)
    return TcpSerial(port)


def sh(serial: TcpSerial, command: str) -> str:
    status, out = serial.run(command, 600)
    assert status == 0, (command, out)
    return out


def test_online_snapshots_with_the_headless_vm(vbm):
    port = free_port()
    vbm("createvm", "--name", VM, "--ostype", "Debian_64", "--register", check=0)
    folder = vbm.home / "VirtualBox VMs" / VM
    vbm("modifyvm", VM, "--memory", "256", "--boot-kernel", str(GUEST / "vmlinux"), "--boot-initrd",
        str(GUEST / "initrd.img"), "--boot-cmdline", "console=ttyS0 quiet", "--uart1", "0x3f8", "4",
        "--uart-mode1", "tcpserver", str(port), check=0)
    vbm("storagectl", VM, "--name", "SATA", "--add", "sata", check=0)
    vbm("createmedium", "disk", "--filename", str(folder / "hs.vdi"), "--size", "32", check=0)
    vbm("storageattach", VM, "--storagectl", "SATA", "--port", "0", "--type", "hdd", "--medium",
        str(folder / "hs.vdi"), check=0)
    serial = start(vbm, port)
    deadline = time.monotonic() + 900
    while True:
        try:
            serial.wait_for(READY, 10)
            break
        except TimeoutError:
            assert time.monotonic() < deadline, "the guest did not boot"
            serial.send(f"echo {READY[:6]}''{READY[6:]}\r")
    dev = re.search(r"\b(sd[a-z])\b", sh(serial, "ls /sys/block")).group(1)
    sh(serial, f"mke2fs -q /dev/{dev} && mkdir -p /mnt && mount /dev/{dev} /mnt && echo one > /mnt/f && sync")
    vbm("snapshot", VM, "take", "one", check=0)
    assert state(vbm) == "running"
    sh(serial, "echo two > /mnt/f && sync")
    vbm("snapshot", VM, "take", "two", "--live", check=0)
    sh(serial, "echo three > /mnt/f && sync")
    two_disk = vbm.machinereadable(VM)["SATA-0-0"]
    vbm("snapshot", VM, "delete", "two", check=0)           # merged by the VM process, guest running
    assert state(vbm) == "running"
    assert sh(serial, "echo 3 > /proc/sys/vm/drop_caches; cat /mnt/f") == "three\n"
    sh(serial, "echo four > /mnt/f && sync")
    code, out, _ = vbm("snapshot", VM, "list", "--machinereadable", check=0)
    assert 'SnapshotName="one"' in out and "two" not in out
    assert os.path.exists(two_disk), "the current state's disk stays (two's disk was merged into it)"
    vbm("controlvm", VM, "poweroff", check=0)
    serial.close()
    vbm("snapshot", VM, "restore", "one", check=0)
    assert state(vbm) == "saved"
    serial = start(vbm, port)
    assert sh(serial, "echo 3 > /proc/sys/vm/drop_caches; cat /mnt/f") == "one\n"
    vbm("controlvm", VM, "poweroff", check=0)
    serial.close()
