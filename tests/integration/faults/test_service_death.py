"""The service dies (kill -9, then an ordinary stop as `systemctl --user restart` does) while the
Debian guest runs on REM: the VM process keeps running, re-attaches to the next service, which
says `running`, refuses a second VM process for the machine, and powers the VM off on request."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.integration.vm.serial_tcp import TcpSerial
from tests.integration.vm.test_headless import BOOT_TIMEOUT, GUEST, READY, Cli, _free_port
from tests.integration.world import World, WorldUnavailable, pid_alive

VM = "hl"

pytestmark = [
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not (GUEST / "vmlinux").is_file() or not (GUEST / "initrd.img").is_file(),
                       reason="the guest is not built (python -m vmm.guest.builder makes .cache/guest)"),
]


def _service_pid(cli: Cli) -> int:
    for pid_file in (cli.world.base / "run").rglob("vboxsvc*.pid"):
        try:
            pid = int(pid_file.read_text().split()[0])
        except (ValueError, IndexError, OSError):
            continue
        if pid_alive(pid):
            return pid
    return 0


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"process {pid} did not exit"
        time.sleep(0.05)


def _echo(serial: TcpSerial, word: str) -> None:
    serial.send(f"echo {word}-$((40+2))\r")
    serial.wait_for(f"{word}-42", 120)


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    try:
        world = World.current(home=tmp_path_factory.mktemp("svcdeath"))
    except WorldUnavailable as e:
        pytest.skip(f"cannot make the test's world: {e}")
    c = Cli(world)
    c("setproperty", "machinefolder", str(c.home / "VMs"))
    c("createvm", "--name", VM, "--ostype", "Debian_64", "--register")
    c.port = _free_port()
    c("modifyvm", VM, "--memory", "256", "--hwvirtex", "off", "--boot-kernel", str(GUEST / "vmlinux"),
      "--boot-initrd", str(GUEST / "initrd.img"), "--boot-cmdline", "console=ttyS0 quiet", "--uart1", "0x3f8",
      "4", "--uart-mode1", "tcpserver", str(c.port))
    c("startvm", VM, "--type", "headless")
    serial = c.serial = TcpSerial(c.port)
    deadline = time.monotonic() + BOOT_TIMEOUT
    while True:
        try:
            serial.wait_for(READY, 10.0)
            break
        except TimeoutError:
            assert time.monotonic() < deadline, f"no {READY}\n{c.log_tail()}"
            serial.send(f"echo {READY[:6]}''{READY[6:]}\r")
    vm_pid = c.session_pid()
    yield c, vm_pid
    serial.close()
    if pid_alive(vm_pid):
        c("controlvm", VM, "poweroff", check=None)
        time.sleep(1)
        if pid_alive(vm_pid):
            os.kill(vm_pid, signal.SIGKILL)
    world.cleanup()


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "stop"])
def test_the_vm_outlives_its_service_and_reattaches(running, how):
    cli, vm_pid = running
    svc = _service_pid(cli)
    assert svc and pid_alive(vm_pid)
    os.kill(svc, how)
    _wait_gone(svc)
    assert pid_alive(vm_pid), "the VM process died with the service"
    _echo(cli.serial, "still")                   # the guest kept running meanwhile
    assert cli.state() == "running"             # the next client starts a service that knows
    deadline = time.monotonic() + 60            # ... and the VM process becomes its VM session again
    while cli.session_pid() != vm_pid and time.monotonic() < deadline:
        time.sleep(0.5)
    assert cli.session_pid() == vm_pid, cli.log_tail()
    assert pid_alive(vm_pid)


def test_no_second_vm_process_for_a_running_machine(running):
    cli, vm_pid = running
    code, _out, err = cli("startvm", VM, "--type", "headless", check=None)
    assert code != 0 and "already" in err, err
    assert cli.session_pid() == vm_pid


def test_a_service_started_while_the_vm_runs_refuses_a_second_vm_process(running):
    """Right after a service death, before the VM process re-attached, a start must fail too."""
    cli, vm_pid = running
    svc = _service_pid(cli)
    os.kill(svc, signal.SIGKILL)
    _wait_gone(svc)
    code, _out, err = cli("startvm", VM, "--type", "headless", check=None)
    assert code != 0 and "already" in err, err
    assert cli.state() == "running" and cli.session_pid() == vm_pid


def test_poweroff_after_reattach(running):
    cli, vm_pid = running
    cli("controlvm", VM, "poweroff")
    _wait_gone(vm_pid, 60)
    cli.wait_state("poweroff")
    cli("startvm", VM, "--type", "headless")    # the lock file is free again
    cli.wait_state("running")
    cli("controlvm", VM, "poweroff")
    cli.wait_state("poweroff")
