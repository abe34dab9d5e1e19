"""`modifyvm --ioapic on|off` as the guest sees it: the real CLI, service and VM process on REM with
the Debian guest.  IO-APIC on: the legacy IRQs and the SATA controller's INTx arrive through the
IO-APIC, the local APIC timer ticks (LOC), the serial console works.  IO-APIC off: the same guest
takes its interrupts from the 8259A (XT-PIC) with the local APIC in virtual-wire mode."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.integration.vboxmanage.conftest import Cli, vbm  # noqa: F401 - the CLI fixture
from tests.integration.vm.serial_tcp import TcpSerial

ROOT = Path(__file__).resolve().parents[3]
GUEST = ROOT / ".cache" / "guest"
READY = "VBOXPY-GUEST-READY"
VM = "apic"

pytestmark = [
    pytest.mark.guest,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not (GUEST / "vmlinux").is_file(),
                       reason="no guest kernel: run python -m vmm.guest.builder"),
]


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _boot(vbm, ioapic: str, port: int) -> TcpSerial:  # noqa: F811 - vbm is the fixture's value
    vbm("modifyvm", VM, "--ioapic", ioapic, "--uart1", "0x3f8", "4", "--uart-mode1", "tcpserver", str(port),
        check=0)
    vbm("startvm", VM, "--type", "headless", check=0)
    serial = TcpSerial(port)
    deadline = time.monotonic() + 900
    while True:
        try:
            serial.wait_for(READY, 10)
            return serial
        except TimeoutError:
            assert time.monotonic() < deadline, "the guest did not boot"
            serial.send(f"echo {READY[:6]}''{READY[6:]}\r")


def _sh(serial: TcpSerial, command: str) -> str:
    status, out = serial.run(command, 600)
    assert status == 0, (command, out)
    return out


def _interrupts(serial: TcpSerial) -> dict[str, tuple[int, str]]:
    """/proc/interrupts as {name: (count, controller and rest)}."""
    rows = {}
    for line in _sh(serial, "cat /proc/interrupts").splitlines()[1:]:
        m = re.match(r"\s*(\w+):\s+(\d+)\s*(.*)", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), m.group(3))
    return rows


def _poweroff(vbm, serial: TcpSerial) -> None:  # noqa: F811
    vbm("controlvm", VM, "poweroff", check=0)
    serial.close()
    for _ in range(100):
        if vbm.machinereadable(VM)["VMState"] == "poweroff":
            return
        time.sleep(0.1)
    raise AssertionError("the VM did not power off")


def test_guest_interrupts_with_and_without_the_ioapic(vbm):  # noqa: F811
    vbm("createvm", "--name", VM, "--ostype", "Debian_64", "--register", check=0)
    folder = vbm.home / "VirtualBox VMs" / VM
    vbm("modifyvm", VM, "--memory", "256", "--boot-kernel", str(GUEST / "vmlinux"), "--boot-initrd",
        str(GUEST / "initrd.img"), "--boot-cmdline", "console=ttyS0 quiet", check=0)
    vbm("storagectl", VM, "--name", "SATA", "--add", "sata", check=0)
    vbm("createmedium", "disk", "--filename", str(folder / "d.vdi"), "--size", "8", check=0)
    vbm("storageattach", VM, "--storagectl", "SATA", "--port", "0", "--type", "hdd", "--medium",
        str(folder / "d.vdi"), check=0)

    port = _free_port()
    serial = _boot(vbm, "on", port)
    dmesg = _sh(serial, "dmesg")
    assert "IOAPIC[0]: apic_id 1, version 17, address 0xfec00000, GSI 0-23" in dmesg
    assert "Using IOAPIC for interrupt routing" in dmesg
    dev = re.search(r"\b(sd[a-z])\b", _sh(serial, "ls /sys/block")).group(1)
    _sh(serial, f"dd if=/dev/{dev} of=/dev/null bs=64k count=32 iflag=direct")
    first = _interrupts(serial)
    assert "IO-APIC" in first["0"][1] and "2-edge" in first["0"][1] and "timer" in first["0"][1]
    assert "IO-APIC" in first["4"][1] and "ttyS0" in first["4"][1] and first["4"][0] > 0
    ahci = [(count, rest) for name, (count, rest) in first.items() if "ahci" in rest]
    assert ahci and all("IO-APIC" in rest and "fasteoi" in rest for _, rest in ahci), first
    assert sum(count for count, _ in ahci) > 0
    _sh(serial, "sleep 1")
    assert _interrupts(serial)["LOC"][0] > first["LOC"][0] > 0     # the local APIC timer ticks
    # both APICs' state survives savestate and restore: timer, routing and serial carry on
    before = _interrupts(serial)
    vbm("controlvm", VM, "savestate", check=0)
    serial.close()
    assert vbm.machinereadable(VM)["VMState"] == "saved"
    vbm("startvm", VM, "--type", "headless", check=0)
    serial = TcpSerial(port)
    _sh(serial, f"sleep 1; dd if=/dev/{dev} of=/dev/null bs=64k count=32 skip=32 iflag=direct")
    after = _interrupts(serial)
    assert after["LOC"][0] > before["LOC"][0] and after["4"][0] > before["4"][0]
    assert sum(count for count, rest in after.values() if "ahci" in rest) > sum(count for count, _ in ahci)
    _poweroff(vbm, serial)

    serial = _boot(vbm, "off", port)
    dmesg = _sh(serial, "dmesg")
    assert "IOAPIC[" not in dmesg
    _sh(serial, f"dd if=/dev/{dev} of=/dev/null bs=64k count=32 iflag=direct")
    rows = _interrupts(serial)
    assert "XT-PIC" in rows["0"][1] and "XT-PIC" in rows["4"][1] and rows["4"][0] > 0
    assert not any("IO-APIC" in rest for _, rest in rows.values())
    assert any("ahci" in rest and "XT-PIC" in rest and count > 0 for count, rest in rows.values()), rows
    _poweroff(vbm, serial)
