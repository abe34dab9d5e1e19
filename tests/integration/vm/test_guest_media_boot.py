"""The guest builder's bootable disk image, booted as a user would: the real `vboxmanage`, service
and VM process on REM, no --boot-kernel.  SeaBIOS reads the MBR from the SATA disk, SYSLINUX's
menu times out into its first entry, the kernel and initramfs reach the ready marker and start
a shell on COM1, and the ACPI power button ends the VM in PoweredOff.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.integration.vm.test_headless import Cli
from vmm import firmware
from vmm.guest.init_script import READY_MARKER
from vmm.guest.media import find_boot_media

pytestmark = [
    pytest.mark.guest,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not any(p.is_file() for p in firmware.candidates()),
                       reason="no SeaBIOS image (python3 -m vmm.firmware fetches Debian's seabios)"),
    pytest.mark.skipif(find_boot_media() is None,
                       reason="bootable media not built (python3 -m vmm.guest.builder --media disk,iso)"),
]

VM = "media-disk"
SHELL_BANNER = "built-in shell"


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    c = Cli(tmp_path_factory.mktemp("media"))
    c("setproperty", "machinefolder", str(c.home / "VMs"))
    yield c
    out = c("list", "runningvms", check=None)[1]
    for line in out.splitlines():
        c("controlvm", line.split('"')[1], "poweroff", check=None)
    c.stop_service()


def wait_for_text(path: Path, text: str, cli: Cli, after: int = 0, timeout: float = 600) -> int:
    """Offset just past `text` in the file (searched from `after`)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = path.read_text(errors="replace")
        except OSError:
            data = ""
        i = data.find(text, after)
        if i >= 0:
            return i + len(text)
        assert time.monotonic() < deadline, f"no {text!r} in {path}:\n{data[-2000:]}\n{cli.log_tail(40)}"
        time.sleep(0.3)


def test_disk_image_boots_through_bios_and_syslinux_to_a_shell(cli):
    media = find_boot_media()
    disk = cli.home / "boot-disk.vdi"
    shutil.copyfile(media.disk_vdi, disk)
    com1 = cli.home / "com1.txt"
    cli("createvm", "--name", VM, "--ostype", "Debian_64", "--register")
    cli("modifyvm", VM, "--memory", "256", "--boot1", "disk", "--boot2", "none", "--boot3", "none",
        "--boot4", "none", "--uart1", "0x3f8", "4", "--uart-mode1", "file", str(com1))
    cli("storagectl", VM, "--name", "SATA", "--add", "sata", "--controller", "IntelAhci")
    cli("storageattach", VM, "--storagectl", "SATA", "--port", "0", "--device", "0", "--type", "hdd",
        "--medium", str(disk))
    assert cli("startvm", VM, "--type", "headless")[0] == 0
    menu = wait_for_text(com1, "vboxpy guest", cli)            # SYSLINUX's menu, mirrored on COM1
    ready = wait_for_text(com1, READY_MARKER, cli, menu)
    wait_for_text(com1, SHELL_BANNER, cli, ready)
    assert cli.state(VM) == "running"
    log = (cli.home / "VMs" / VM / "Logs" / "VBox.log").read_text(errors="replace")
    assert "Booting from Hard Disk" in log
    cli("controlvm", VM, "acpipowerbutton")
    cli.wait_state("poweroff", vm=VM, timeout=300)
