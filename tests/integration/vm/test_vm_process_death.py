"""No client waits forever on a VM process: it dies or falls silent during startvm or during a
controlvm call, and the client prints VirtualBox's error block and exits non-zero.

The real CLI, service and VM process (`frontends.headless.main`, booting the guest's kernel on
REM); the test kills or stops the VM process at the moment it matters. The subprocess timeouts
are the bounds: a client that waited on would fail them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.integration.world import GUEST

BOUND = 90   # seconds a client may take to give up (generous: a loaded 2-core machine)

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(not (GUEST / "vmlinux").is_file() or not (GUEST / "initrd.img").is_file(),
                       reason="the guest is not built (python -m vmm.guest.builder)"),
]


def _vm_processes(world) -> list[int]:
    found = []
    for pid in world.processes():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"--startvm" in argv:
            found.append(pid)
    return found


def _wait_vm_process(world, proc: subprocess.Popen) -> int:
    deadline = time.monotonic() + BOUND
    while not (pids := _vm_processes(world)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no VM process appeared"
        time.sleep(0.005)
    return pids[0]


def _settles(world, name: str, *states: str) -> None:
    """The VM process is gone and the machine is off (a process that never ran the VM leaves it as it
    was, as VirtualBox does; one that died running it leaves it Aborted)."""
    states = states or ("poweroff", "aborted")
    deadline = time.monotonic() + BOUND
    while _vm_processes(world) or world.machinereadable(name)["VMState"] not in states:
        assert time.monotonic() < deadline, (_vm_processes(world), world.machinereadable(name)["VMState"])
        time.sleep(0.1)


def _make_vm(world, name: str) -> None:
    world.vbm("createvm", "--name", name, "--ostype", "Debian_64", "--register", check=0)
    world.vbm("modifyvm", name, "--memory", "128", "--boot-kernel", GUEST / "vmlinux", "--boot-initrd",
              GUEST / "initrd.img", "--boot-cmdline", "console=ttyS0 quiet", check=0)


def _startvm(world, name: str) -> subprocess.Popen:
    return world.popen([world.python, "-m", "frontends.vboxmanage.main", "startvm", name,
                        "--type", "headless"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_vm_process_killed_during_startup(world):
    _make_vm(world, "k1")
    client = _startvm(world, "k1")
    os.kill(_wait_vm_process(world, client), signal.SIGKILL)
    out, err = client.communicate(timeout=BOUND)
    assert client.returncode == 1, (out, err)
    assert out == 'Waiting for VM "k1" to power on...\n'
    assert err.startswith("VBoxManage: error: The virtual machine 'k1' has terminated unexpectedly during "
                          "startup because of signal 9.  More details may be available in '"), err
    assert ("VBoxManage: error: Details: code NS_ERROR_FAILURE (0x80004005), component MachineWrap, "
            "interface IMachine") in err
    _settles(world, "k1")


def test_silent_vm_process_is_given_up(world):
    world.env["VBOXPY_VM_START_TIMEOUT_S"] = "5"   # the service's bound on a VM process's startup
    _make_vm(world, "s1")
    client = _startvm(world, "s1")
    vm = _wait_vm_process(world, client)
    os.kill(vm, signal.SIGSTOP)
    out, err = client.communicate(timeout=BOUND)
    assert client.returncode == 1, (out, err)
    assert ("VBoxManage: error: The virtual machine 's1' did not finish its startup within 5 seconds and was "
            "terminated.") in err, err
    _settles(world, "s1")


@pytest.mark.parametrize("action", ["pause", "poweroff"])
def test_vm_process_dies_during_controlvm(world, action):
    _make_vm(world, "c1")
    code, out, err = world.vbm("startvm", "c1", "--type", "headless")
    assert code == 0, err
    vm = _vm_processes(world)[0]
    os.kill(vm, signal.SIGSTOP)           # the call is forwarded to the VM process and hangs there ...
    client = world.popen([world.python, "-m", "frontends.vboxmanage.main", "controlvm", "c1", action],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)                          # ... while it is in flight, the VM process dies
    os.kill(vm, signal.SIGKILL)
    out, err = client.communicate(timeout=BOUND)
    assert client.returncode == 1, (out, err)
    # the forwarded call fails as XPCOM's does when the object's process is gone
    lines = err.splitlines()
    assert lines[0].startswith("VBoxManage: error: ") and len(lines) == 3, err
    assert lines[1] == "VBoxManage: error: Details: code NS_ERROR_CALL_FAILED (0x800706be)", err
    assert lines[2].startswith('VBoxManage: error: Context: "console->'), err
    _settles(world, "c1", "aborted")
