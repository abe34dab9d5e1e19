"""The whole cycle with VirtualBox's defaults, as the people it is for run it.

createvm, modifyvm (the guest's kernel and initrd), startvm --type headless, the guest answers
on its serial port, controlvm poweroff: through the real CLI, service and VM process, for
- an ordinary user with a fresh HOME and no VBOX_USER_HOME (a throw-away account made for the
  session, run through setpriv with an interpreter that user can run: scripts/python.sh's choice,
  /opt/vboxpy/venv from scripts/install.sh where root's python3 is out of reach);
- root with HOME pointing elsewhere and no VBOX_USER_HOME: VirtualBox then takes root's home from
  the account database, so the world runs in a private mount namespace with a scratch folder
  mounted over that home (tests/integration/world.py), never touching the real one;
- VBOX_USER_HOME set.
Each ends with exactly one service for the world, and the files where VirtualBox puts them.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from tests.integration.vm.serial_tcp import TcpSerial
from tests.integration.world import GUEST, World, WorldUnavailable

READY = "VBOXPY-GUEST-READY"
BOOT_TIMEOUT = 900        # REM on a loaded 2-core machine; about 10-30 s when idle

pytestmark = [
    pytest.mark.guest,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not (GUEST / "vmlinux").is_file() or not (GUEST / "initrd.img").is_file(),
                       reason="the guest is not built (python -m vmm.guest.builder)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(world: World, cfg: str) -> str:
    try:
        log = world.inside(Path(cfg).parent / "Logs" / "VBox.log").read_text(errors="replace")
    except OSError:
        return "(no VBox.log)"
    return "VBox.log:\n" + "\n".join(log.splitlines()[-30:])


def cycle(world: World, name: str) -> dict:
    """The README's cycle; returns `showvminfo --machinereadable` of the powered-off machine."""
    port = _free_port()
    world.vbm("createvm", "--name", name, "--ostype", "Debian_64", "--register", check=0)
    world.vbm("modifyvm", name, "--memory", "256", "--boot-kernel", GUEST / "vmlinux", "--boot-initrd",
              GUEST / "initrd.img", "--boot-cmdline", "console=ttyS0 quiet", "--uart1", "0x3f8", "4",
              "--uart-mode1", "tcpserver", str(port), check=0)
    cfg = world.machinereadable(name)["CfgFile"]
    code, out, err = world.vbm("startvm", name, "--type", "headless")
    assert (code, out) == (0, f'Waiting for VM "{name}" to power on...\nVM "{name}" has been successfully '
                              'started.\n'), (err, _log_tail(world, cfg))
    serial = TcpSerial(port)
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            try:
                serial.wait_for(READY, min(10.0, max(0.1, deadline - time.monotonic())))
                break
            except TimeoutError:
                assert time.monotonic() < deadline, f"no {READY}\n{_log_tail(world, cfg)}"
                serial.send(f"echo {READY[:6]}''{READY[6:]}\r")
        status, answer = serial.run("uname -s; id -u", 300)
        assert status == 0 and answer.startswith("Linux\n0"), answer
    finally:
        serial.close()
    world.vbm("controlvm", name, "poweroff", check=0)
    info = world.machinereadable(name)
    assert info["VMState"] == "poweroff"
    assert len(world.services()) == 1, world.services()
    return info


def _unchanged(path: Path):
    """A fingerprint of a real file the test must not touch."""
    try:
        st = path.stat()
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        return None


def test_ordinary_user_with_defaults(ordinary_user):
    world = World.ordinary(*ordinary_user)
    try:
        info = cycle(world, "u1")
        home = world.home
        assert info["CfgFile"] == str(home / "VirtualBox VMs" / "u1" / "u1.vbox")
        xml = home / ".config" / "VirtualBox" / "VirtualBox.xml"
        assert xml.is_file() and xml.stat().st_uid == world.owner[0]
        assert (home / ".config" / "VirtualBox").stat().st_mode & 0o777 == 0o700
        # every process of the world ran as that user
        assert all(os.stat(f"/proc/{p}").st_uid == world.owner[0] for p in world.processes())
    finally:
        world.cleanup()


def test_root_with_home_elsewhere_uses_the_account_home():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        world = World.root()
    except WorldUnavailable as e:
        pytest.skip(str(e))
    real = world.root_home
    before = [_unchanged(real / ".config" / "VirtualBox" / "VirtualBox.xml"),
              _unchanged(real / "VirtualBox VMs")]
    try:
        info = cycle(world, "r1")
        # $HOME says elsewhere; VirtualBox's home and machine folder are root's all the same
        assert world.env["HOME"] != str(real)
        assert info["CfgFile"] == str(real / "VirtualBox VMs" / "r1" / "r1.vbox")
        assert world.inside(info["CfgFile"]).is_file()
        assert world.inside(real / ".config" / "VirtualBox" / "VirtualBox.xml").is_file()
        assert not (world.home / ".config").exists()
    finally:
        world.cleanup()
    after = [_unchanged(real / ".config" / "VirtualBox" / "VirtualBox.xml"),
             _unchanged(real / "VirtualBox VMs")]
    assert before == after


def test_explicit_vbox_user_home():
    try:
        world = World.current()
    except WorldUnavailable as e:
        pytest.skip(str(e))
    vbhome = world.base / "vbhome"
    world.with_home(vbhome)
    try:
        info = cycle(world, "v1")
        assert (vbhome / "VirtualBox.xml").is_file() and (vbhome / "VBoxSVC.log").is_file()
        assert world.inside(info["CfgFile"]).is_file()
    finally:
        world.cleanup()
