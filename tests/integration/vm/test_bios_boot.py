"""Booting through the BIOS end to end, on REM: the real `vboxmanage`, service and VM process.

A VM with no --boot-kernel starts at the reset vector in SeaBIOS.  With a tiny VDI whose boot
sector prints a marker on COM1 (built here), the BIOS must find it through the boot order on
SATA (AHCI) or virtio-scsi and run it; with no medium the VM must keep running with SeaBIOS's
"No bootable device." on its VGA screen and in VBox.log, and still power off from controlvm.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.vm.test_headless import Cli
from tests.integration.world import World, WorldUnavailable
from vmm import firmware

MARKER = "VBOXPY-MBR-BOOTED"

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(not any(p.is_file() for p in firmware.candidates()),
                       reason="no SeaBIOS image (python3 -m vmm.firmware fetches Debian's seabios)"),
]


def boot_sector(marker: str) -> bytes:
    """Real-mode code at 0000:7C00: print `marker` on COM1 (0x3F8), then halt for good."""
    code = bytearray([
        0xBA, 0xF8, 0x03,          # mov dx, 0x3f8
        0xBE, 0x00, 0x00,          # mov si, message        (patched below)
        0xFC,                      # cld
        0x2E, 0xAC,                # next: cs lodsb
        0x84, 0xC0,                # test al, al
        0x74, 0x03,                # jz done
        0xEE,                      # out dx, al
        0xEB, 0xF7,                # jmp next
        0xFA, 0xF4, 0xEB, 0xFD,    # done: cli; hlt; jmp $-1
    ])
    code[4:6] = (0x7C00 + len(code)).to_bytes(2, "little")
    body = bytes(code) + marker.encode() + b"\r\n\0"
    return body.ljust(510, b"\0") + b"\x55\xaa"


def make_disk(path: Path) -> None:
    from vmm.storage.create import create_vdi
    img = create_vdi(str(path), 4 << 20)
    img.write_at(0, boot_sector(MARKER))
    img.flush()
    img.close()


def wait_for_text(path: Path, text: str, cli: Cli, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if text in path.read_text(errors="replace"):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"no {text!r} in {path}\n{cli.log_tail(60)}"
        time.sleep(0.2)


def make_vm(cli: Cli, name: str, controller: str | None, ioapic: str = "on") -> Path:
    cli("createvm", "--name", name, "--ostype", "Debian_64", "--register")
    com1 = cli.home / f"{name}-com1.txt"
    cli("modifyvm", name, "--memory", "64", "--ioapic", ioapic, "--boot1", "disk", "--boot2", "none",
        "--boot3", "none", "--boot4", "none", "--uart1", "0x3f8", "4", "--uart-mode1", "file", str(com1))
    if controller is not None:
        disk = cli.home / f"{name}.vdi"
        make_disk(disk)
        cli("storagectl", name, "--name", "Disks", "--add", *controller.split())
        cli("storageattach", name, "--storagectl", "Disks", "--port", "0", "--device", "0", "--type", "hdd",
            "--medium", str(disk))
    return com1


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    try:
        world = World.current(home=tmp_path_factory.mktemp("bios"))
    except WorldUnavailable as e:
        pytest.skip(f"cannot make the test's world: {e}")
    c = Cli(world)
    c("setproperty", "machinefolder", str(c.home / "VMs"))
    yield c
    out = c("list", "runningvms", check=None)[1]
    for line in out.splitlines():
        c("controlvm", line.split('"')[1], "poweroff", check=None)
    world.cleanup()


def _vm_log(cli: Cli, name: str) -> str:
    try:
        return (cli.home / "VMs" / name / "Logs" / "VBox.log").read_text(errors="replace")
    except OSError:
        return ""


def _poweroff(cli: Cli, name: str) -> None:
    cli("controlvm", name, "poweroff")
    cli.wait_state("poweroff", vm=name)


@pytest.mark.parametrize("controller, ioapic", [("sata --controller IntelAhci", "off"),
                                                ("ide --controller PIIX4", "on"),
                                                ("virtio --controller VirtIO", "on")])
def test_boot_sector_runs_through_the_bios(cli, controller, ioapic):
    name = "mbr-" + controller.split()[0]
    cli.forget(name)
    com1 = make_vm(cli, name, controller, ioapic=ioapic)
    assert cli("startvm", name, "--type", "headless")[0] == 0
    wait_for_text(com1, MARKER, cli)
    assert cli.state(name) == "running"
    log = _vm_log(cli, name)
    assert "BIOS: SeaBIOS (version" in log and "Booting from Hard Disk" in log
    _poweroff(cli, name)


def test_no_bootable_medium_keeps_running(cli):
    name = "empty"
    make_vm(cli, name, None, ioapic="off")
    assert cli("startvm", name, "--type", "headless")[0] == 0
    deadline = time.monotonic() + 300
    while "No bootable device." not in _vm_log(cli, name):
        assert time.monotonic() < deadline, cli.log_tail(60)
        time.sleep(0.3)
    time.sleep(1.0)
    assert cli.state(name) == "running"
    _poweroff(cli, name)


def test_reset_savestate_and_restore_of_a_bios_booted_vm(cli):
    name = "mbr-life"
    com1 = make_vm(cli, name, "sata --controller IntelAhci")
    assert cli("startvm", name, "--type", "headless")[0] == 0
    wait_for_text(com1, MARKER, cli)
    cli("controlvm", name, "reset")                     # back through the BIOS: the marker again
    deadline = time.monotonic() + 300
    while com1.read_text(errors="replace").count(MARKER) < 2:
        assert time.monotonic() < deadline, _vm_log(cli, name)[-3000:]
        time.sleep(0.2)
    cli("controlvm", name, "savestate")
    cli.wait_state("saved", vm=name)
    assert cli("startvm", name, "--type", "headless")[0] == 0
    cli.wait_state("running", vm=name)
    time.sleep(1.0)
    assert cli.state(name) == "running" and "Restoring" not in cli.state(name)
    _poweroff(cli, name)


def test_efi_firmware_is_refused_at_startvm(cli):
    name = "efi"
    make_vm(cli, name, None)
    cli("modifyvm", name, "--firmware", "efi")
    code, out, err = cli("startvm", name, "--type", "headless", check=None)
    assert code != 0 and "firmware type EFI is not available" in out + err, (out, err)
    cli.wait_state("poweroff", vm=name)


def _guest_disk() -> Path | None:
    import os
    root = Path(os.environ.get("VBOXPY_GUEST_CACHE")
                or Path(__file__).resolve().parents[3] / ".cache" / "guest")
    disk = root / "boot-disk.vdi"
    return disk if disk.is_file() else None


@pytest.mark.skipif(_guest_disk() is None, reason="no bootable guest disk (the guest builder's --media disk)")
def test_linux_disk_boots_through_the_bios_and_the_power_button_ends_it(cli):
    """SeaBIOS -> SYSLINUX (INT 13h over AHCI) -> Linux with the VMM's ACPI and DMI tables from fw_cfg."""
    import shutil
    import socket

    from tests.integration.vm.serial_tcp import TcpSerial
    name = "linux"
    disk = cli.home / "linux.vdi"
    # a second attempt in the same module starts from a clean slate
    cli.forget(name)
    shutil.copyfile(_guest_disk(), disk)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli("createvm", "--name", name, "--ostype", "Debian_64", "--register")
    cli("modifyvm", name, "--memory", "256", "--boot1", "disk", "--uart1", "0x3f8", "4", "--uart-mode1",
        "tcpserver", str(port))
    cli("storagectl", name, "--name", "SATA", "--add", "sata", "--controller", "IntelAhci")
    cli("storageattach", name, "--storagectl", "SATA", "--port", "0", "--device", "0", "--type", "hdd",
        "--medium", str(disk))
    assert cli("startvm", name, "--type", "headless")[0] == 0
    serial = TcpSerial(port)
    try:
        serial.wait_for("VBOXPY-GUEST-READY", 900)
        mark = serial.size
        # ls prints columns (0d.0 may end the first line): wait for the marker after the whole listing
        serial.send("cat /sys/class/dmi/id/sys_vendor /sys/class/dmi/id/product_name; "
                    "ls /sys/bus/pci/devices; echo PCI''-LISTED\r")
        serial.wait_for("PCI-LISTED", 120, start=mark)
        out = serial.text(mark)
        assert "innotek GmbH" in out and "VirtualBox" in out          # systemd-detect-virt: oracle
        assert all(f"0000:00:{d}" in out for d in ("00.0", "01.0", "07.0", "0d.0"))
        cli("controlvm", name, "acpipowerbutton")
        cli.wait_state("poweroff", timeout=300, vm=name)
    finally:
        serial.close()
