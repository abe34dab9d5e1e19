"""Typing into the Debian guest's text console from the host, on REM: `controlvm keyboardputstring`
goes through the PS/2 keyboard and the i8042 into Linux's atkbd and the virtual terminal.

The guest boots with its console on tty1 (`console=ttyS0 console=tty1`: /init's shell gets the
last console), so a line typed on the keyboard runs in that shell; the command writes its
result on COM1, where the test reads it (the result, not the echo: the shell computes it).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.vm.serial_tcp import TcpSerial
from tests.integration.vm.test_headless import Cli, _free_port
from tests.integration.world import World, WorldUnavailable

ROOT = Path(__file__).resolve().parents[3]
GUEST = ROOT / ".cache" / "guest"
VM = "kbd"

pytestmark = [
    pytest.mark.timeout(1200),
    pytest.mark.skipif(not (GUEST / "vmlinux").is_file() or not (GUEST / "initrd.img").is_file(),
                       reason="the guest is not built (python -m vmm.guest.builder makes .cache/guest)"),
]


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    try:
        world = World.current(home=tmp_path_factory.mktemp("kbd"))
    except WorldUnavailable as e:
        pytest.skip(f"cannot make the test's world: {e}")
    c = Cli(world)
    c("setproperty", "machinefolder", str(c.home / "VMs"))
    c("createvm", "--name", VM, "--ostype", "Debian_64", "--register")
    port = _free_port()
    c("modifyvm", VM, "--memory", "256", "--boot-kernel", str(GUEST / "vmlinux"), "--boot-initrd",
      str(GUEST / "initrd.img"), "--boot-cmdline", "console=ttyS0 console=tty1", "--uart1", "0x3f8", "4",
      "--uart-mode1", "tcpserver", str(port))
    assert c("startvm", VM, "--type", "headless")[0] == 0
    serial = TcpSerial(port)
    try:
        yield c, serial
    finally:
        serial.close()
        if c.state(VM) in ("running", "paused", "stuck"):
            c("controlvm", VM, "poweroff", check=None)
        world.cleanup()


def test_a_typed_line_runs_in_the_guest_shell(guest):
    cli, serial = guest
    deadline = time.monotonic() + 900
    n = 0
    while True:                     # until the shell on tty1 is up and has run one of the lines
        n += 1
        cli("controlvm", VM, "keyboardputstring", f"echo VBOXPY-TYPED-$(({n}*1000+42)) > /dev/ttyS0\n")
        try:
            serial.wait_for("VBOXPY-TYPED-", 10)
            break
        except TimeoutError:
            assert time.monotonic() < deadline, serial.text()[-2000:]
    time.sleep(1.0)
    out = serial.text()
    hits = [int(w.split("-")[-1]) for w in out.split() if w.startswith("VBOXPY-TYPED-") and w[13:].isdigit()]
    assert hits and all(h % 1000 == 42 for h in hits), out[-1000:]
    mark = serial.size
    cli("controlvm", VM, "keyboardputstring", "echo hi > /dev/ttyS0\n")
    serial.wait_for("hi", 120, start=mark)
    assert serial.text(mark).strip().splitlines()[-1] == "hi"
