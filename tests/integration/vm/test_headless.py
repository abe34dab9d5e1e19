"""The headless VM process end to end: the real `vboxmanage` CLI, the real service and the real
VM process (`vboxheadless`) boot the Debian guest (vmlinux form) on REM with VirtualBox's
defaults in a scratch world (tests/integration/world.py); the tests type commands over the serial port's TCP
socket (tcpserver mode) and drive the VM's life with controlvm.

Boots: one shared by the console, pause/resume, savestate/restore and `controlvm poweroff`
tests, one ended by the ACPI power button, one rebooted by the guest (the VM runs on) and then
ended by the guest's own `poweroff`, and a short one whose VM process is killed with SIGKILL
(Aborted); and a tiny flat image that triple-faults (Stuck).  A test that finds the VM not running boots it,
so any subset (or an xdist split) still works.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.vm.serial_tcp import TcpSerial
from tests.integration.world import World, WorldUnavailable

ROOT = Path(__file__).resolve().parents[3]
GUEST = ROOT / ".cache" / "guest"
READY = "VBOXPY-GUEST-READY"
BOOT_TIMEOUT = 900        # REM on a loaded 2-core machine; about 10-30 s when idle
VM = "hl"

pytestmark = [
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not (GUEST / "vmlinux").is_file() or not (GUEST / "initrd.img").is_file(),
                       reason="the guest is not built (python -m vmm.guest.builder makes "
                       ".cache/guest/vmlinux "
                              "and initrd.img)"),
]


class Cli:
    """`vboxmanage` as a subprocess in a world with VirtualBox's defaults (and the VM's serial console)."""

    def __init__(self, world: World):
        self.world = world
        self.home = world.home
        self.env = world.env
        self.serial: TcpSerial | None = None
        self.port = 0

    def __call__(self, *args: str, check: int | None = 0) -> tuple[int, str, str]:
        proc = self.world.run([self.world.python, "-m", "frontends.vboxmanage.main", *args], cwd=self.home,
                              timeout=300)
        if check is not None:
            assert proc.returncode == check, (args, proc.returncode, proc.stdout, proc.stderr,
                                              self.log_tail())
        return proc.returncode, proc.stdout, proc.stderr

    def forget(self, vm: str, timeout: float = 120) -> None:
        """Power off and delete `vm` if a previous attempt left it registered (bounded)."""
        deadline = time.monotonic() + timeout
        while self("showvminfo", vm, "--machinereadable", check=None)[0] == 0:
            assert time.monotonic() < deadline, f"{vm} is still registered\n{self.log_tail()}"
            self("controlvm", vm, "poweroff", check=None)
            self("unregistervm", vm, "--delete", check=None)
            time.sleep(0.5)

    def state(self, vm: str = VM) -> str:
        out = self("showvminfo", vm, "--machinereadable")[1]
        return next(line.split("=", 1)[1].strip('"') for line in out.splitlines()
                    if line.startswith("VMState="))

    def wait_state(self, state: str, timeout: float = 120, vm: str = VM) -> None:
        deadline = time.monotonic() + timeout
        while (now := self.state(vm)) != state:
            assert time.monotonic() < deadline, f"VM state {now!r}, expected {state!r}\n{self.log_tail()}"
            time.sleep(0.2)

    @property
    def log_path(self) -> Path:
        return self.home / "VMs" / VM / "Logs" / "VBox.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "VBox.log:\n" + "\n".join(self.log().splitlines()[-lines:])

    def session_pid(self) -> int:
        code = (f"from vboxsvc.ipc.client import connect\nc = connect()\n"
                f"print(c.virtualbox.find_machine({VM!r}).session_pid)\nc.close()")
        out = self.world.py(code, timeout=60)
        assert out.returncode == 0, out.stderr
        return int(out.stdout.strip())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    try:
        world = World.current(home=tmp_path_factory.mktemp("headless"))
    except WorldUnavailable as e:
        pytest.skip(f"cannot make the test's world: {e}")
    c = Cli(world)
    c("setproperty", "machinefolder", str(c.home / "VMs"))
    c("createvm", "--name", VM, "--ostype", "Debian_64", "--register")
    c.port = _free_port()
    c("modifyvm", VM, "--memory", "256", "--boot-kernel", str(GUEST / "vmlinux"), "--boot-initrd",
      str(GUEST / "initrd.img"), "--boot-cmdline", "console=ttyS0 quiet", "--uart1", "0x3f8", "4",
      "--uart-mode1", "tcpserver", str(c.port))
    yield c
    if c.serial is not None:
        c.serial.close()
    if c.state() in ("running", "paused", "stuck"):
        c("controlvm", VM, "poweroff", check=None)
    world.cleanup()


def boot(cli: Cli) -> TcpSerial:
    """startvm, connect to COM1's TCP port at once, wait for the guest's shell."""
    assert cli("startvm", VM, "--type", "headless")[1] == (
        f'Waiting for VM "{VM}" to power on...\nVM "{VM}" has been successfully started.\n')
    assert cli.state() == "running"
    if cli.serial is not None:
        cli.serial.close()
    serial = cli.serial = TcpSerial(cli.port)
    deadline = time.monotonic() + BOOT_TIMEOUT
    # The marker normally arrives after we connect (the kernel takes seconds); should it have gone by,
    # the shell is asked to print it again (split quotes: the echoed command line does not match).
    while True:
        try:
            serial.wait_for(READY, min(10.0, max(0.1, deadline - time.monotonic())))
            break
        except TimeoutError:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {READY} within {BOOT_TIMEOUT}s\n{cli.log_tail()}") from None
            serial.send(f"echo {READY[:6]}''{READY[6:]}\r")
    return serial


def running(cli: Cli) -> TcpSerial:
    """The booted guest's console (boots it if this test is the first to need it)."""
    if cli.serial is None or cli.state() != "running":
        return boot(cli)
    return cli.serial


def test_serial_console_answers_commands(cli):
    serial = running(cli)
    status, out = serial.run("uname -sr; cat /proc/cmdline", 300)
    assert status == 0
    assert out.startswith("Linux 6.") and "console=ttyS0 quiet" in out
    status, out = serial.run("echo $((6 * 7)) > /tmp/x; cat /tmp/x; ls /nonexistent", 300)
    assert status != 0 and out.startswith("42\n") and "No such file" in out
    # paravirt provider Default on Debian_64: KVM, resolved by the service and answered by REM's GIM
    status, out = serial.run("dmesg | grep -i 'hypervisor detected'", 300)
    assert status == 0 and "Hypervisor detected: KVM" in out, out
    log = cli.log()
    for expected in ("EM: REM", "CFGM dump:", "Provider <str> = 'kvm'", "GIM: provider 'kvm' -> 'kvm'",
                     "RamSize <int> = 268435456", f"Path <str> = '{cli.port}'",
                     "uart0        I/O 0x03f8-0x03ff IRQ 4",
                     "Changing the VM state from 'STARTING' to 'RUNNING'"):
        assert expected in log, f"{expected!r} not in VBox.log\n{log[-3000:]}"


def test_pause_stops_the_guest_and_resume_continues(cli):
    serial = running(cli)
    cli("controlvm", VM, "pause")
    assert cli.state() == "paused"
    before = serial.size
    n, start = serial.start_command("echo answered-after-resume")
    time.sleep(3)
    assert serial.size == before, f"a paused guest answered: {serial.text(before)!r}"
    code, _, err = cli("controlvm", VM, "reset", check=1)
    assert "Invalid machine state: Paused" in err
    cli("controlvm", VM, "resume")
    assert cli.state() == "running"
    status, out = serial.finish_command(n, start, 300)
    assert (status, out) == (0, "answered-after-resume\n")


def test_savestate_then_restore(cli):
    serial = running(cli)
    assert serial.run("echo kept-in-ram > /tmp/state; sync", 300)[0] == 0
    code, out, err = cli("controlvm", VM, "savestate")
    assert err.endswith("100%\n")
    cli.wait_state("saved", 30)
    state_file = next(line.split("=", 1)[1].strip('"') for line in cli("showvminfo", VM,
                                                                       "--machinereadable")[1]
                      .splitlines() if line.startswith("VMStateFile="))
    assert os.path.getsize(state_file) > 1 << 20
    assert serial.wait_eof(30), "the serial port stayed open after the VM process ended"
    cli("startvm", VM, "--type", "headless")
    assert cli.state() == "running" and not os.path.exists(state_file)
    serial = cli.serial = TcpSerial(cli.port)
    assert serial.run("cat /tmp/state", 300) == (0, "kept-in-ram\n")
    assert "Restored the saved state from" in cli.log()


def test_online_snapshot_keeps_the_guest_running(cli):
    serial = running(cli)
    cli("snapshot", VM, "take", "online1")
    assert cli.state() == "running"
    assert "Online snapshot: state in" in cli.log()
    out = cli("snapshot", VM, "list", "--machinereadable")[1]
    assert 'SnapshotName="online1"' in out
    assert serial.run("echo still-here", 300) == (0, "still-here\n")


def test_guest_properties_and_transient_folders_live_in_the_vm_process(cli, tmp_path):
    running(cli)
    version = cli("--version")[1].split("r")[0]
    assert cli("guestproperty", "get", VM, "/VirtualBox/HostInfo/VBoxVer", "--verbose")[1].startswith(
        f"Value: {version}\nTimestamp: ")
    cli("guestproperty", "set", VM, "/Test/Run", "r", "--flags", "TRANSIENT")
    cli("guestproperty", "set", VM, "/Test/Keep", "k")
    assert cli("guestproperty", "get", VM, "/Test/Run")[1] == "Value: r\n"
    out = cli("guestproperty", "enumerate", VM, "--old-format", "/Test/*")[1]
    assert re.fullmatch(r"Name: /Test/Keep, value: k, timestamp: \d+, flags: \n"
                        r"Name: /Test/Run, value: r, timestamp: \d+, flags: TRANSIENT\n", out), out
    cli("guestproperty", "set", VM, "/Test/Locked", "v", "--flags", "READONLY")
    code, _, err = cli("guestproperty", "delete", VM, "/Test/Locked", check=1)
    assert "The property '/Test/Locked' cannot be changed by the host" in err
    share = tmp_path / "t"
    share.mkdir()
    (share / "f.txt").write_text("shared while running\n")
    cli.world.give(share)
    cli("sharedfolder", "add", VM, "--name", "tr", "--hostpath", str(share), "--transient")
    # the running guest mounts it at once with its kernel's vboxsf
    serial = cli.serial
    status, out = serial.run("mkdir -p /mnt/tr && mount -t vboxsf tr /mnt/tr && cat /mnt/tr/f.txt && "
                             "umount /mnt/tr", 300)
    assert (status, out) == (0, "shared while running\n"), (status, out)
    info = cli("showvminfo", VM, "--machinereadable")[1]
    assert f'SharedFolderNameTransientMapping1="tr"\nSharedFolderPathTransientMapping1="{share}"\n' in info
    human = cli("showvminfo", VM)[1]
    assert f"Name: 'tr', Host path: '{share}' (transient mapping), writable\n" in human
    code, _, err = cli("sharedfolder", "add", VM, "--name", "tr", "--hostpath", str(share),
                       "--transient", check=1)
    assert "Shared folder named 'tr' already exists" in err
    cli("sharedfolder", "remove", VM, "--name", "tr", "--transient")
    assert "TransientMapping" not in cli("showvminfo", VM, "--machinereadable")[1]
    cli.props_set = True


def test_controlvm_poweroff(cli):
    running(cli)
    code, out, err = cli("controlvm", VM, "poweroff")
    assert err.endswith("100%\n")
    cli.wait_state("poweroff", 30)
    if getattr(cli, "props_set", False):  # the transient ones went with the VM process, the others stay
        assert cli("guestproperty", "get", VM, "/Test/Run")[1] == "No value set!\n"
        assert cli("guestproperty", "get", VM, "/VirtualBox/HostInfo/VBoxVer")[1] == "No value set!\n"
        assert cli("guestproperty", "get", VM, "/Test/Keep")[1] == "Value: k\n"
    assert "Changing the VM state from 'STOPPING' to 'POWEREDOFF'" in cli.log()
    assert cli.serial.wait_eof(30), "the serial port stayed open after power off"
    assert (cli("controlvm", VM, "pause", check=1)[2]
            == f"VBoxManage: error: Machine '{VM}' is not currently running.\n")


def test_acpi_power_button_powers_off(cli):
    serial = running(cli)
    status, out = serial.run("pidof acpid || { mkdir -p /var/log /var/run && acpid -c /etc/acpi && "
                             "echo acpid-started-by-test; }", 300)
    # Workaround: the guest's /init starts `acpid -c /etc/acpi`, which exits at once because the
    # initramfs has no /var/log (busybox acpid opens /var/log/acpid.log); the test then starts it.
    assert status == 0, out
    cli("controlvm", VM, "acpipowerbutton")
    cli.wait_state("poweroff", 300)
    log = cli.log()
    assert "Console: ACPI power button pressed" in log and "guest powered off (ACPI S5)" in log


def test_guest_reboot_keeps_running_then_guest_poweroff(cli):
    serial = running(cli)
    start = serial.size
    serial.send("reboot\r")
    serial.wait_for(READY, BOOT_TIMEOUT, start)
    assert cli.state() == "running"
    assert "VM reset #1" in cli.log()
    assert serial.run("echo back", 300) == (0, "back\n")
    serial.send("poweroff\r")
    cli.wait_state("poweroff", 300)
    assert "Guest: guest powered off (ACPI S5)" in cli.log()


def test_killed_vm_process_leaves_aborted(cli):
    if cli.state() != "running":
        assert cli("startvm", VM, "--type", "headless")[0] == 0
    pid = cli.session_pid()
    assert pid > 0
    os.kill(pid, signal.SIGKILL)
    cli.wait_state("aborted", 60)
    code, out, err = cli("controlvm", VM, "pause", check=1)
    assert "is not currently running" in err


# A flat boot image (loaded at 0000:7C00, real mode): an empty IDT, then INT3 -> triple fault.
TRIPLE_FAULT = bytes([0xFA,                             # cli
                      0x2E, 0x0F, 0x01, 0x1E, 0x10, 0x7C,  # lidt cs:[0x7C10]
                      0xCC,                             # int3: no IDT entry -> #GP -> #DF -> shutdown
                      0xF4, 0xEB, 0xFD]).ljust(16, b"\x90") + bytes(6)   # hlt; jmp; IDT limit 0, base 0


def test_triple_fault_goes_stuck_until_powered_off(cli):
    image = cli.home / "triplefault.bin"
    image.write_bytes(TRIPLE_FAULT)
    cli("createvm", "--name", "tf", "--register")
    cli("modifyvm", "tf", "--memory", "32", "--boot-kernel", str(image), "--triple-fault-reset", "off")
    cli("startvm", "tf", "--type", "headless")
    cli.wait_state("gurumeditation", 60, vm="tf")
    log = (cli.home / "VMs" / "tf" / "Logs" / "VBox.log").read_text()
    assert "VCPU 0 is stuck (guru meditation): triple fault" in log
    assert "Changing the VM state from 'RUNNING' to 'STUCK'" in log
    cli("controlvm", "tf", "poweroff")
    cli.wait_state("poweroff", 30, vm="tf")


def test_vboxheadless_by_hand_runs_until_ctrl_c(cli):
    if cli.state() in ("running", "paused"):
        cli("controlvm", VM, "poweroff")
        cli.wait_state("poweroff", 30)
    proc = cli.world.popen([cli.world.python, "-m", "frontends.headless.main", "--startvm", VM,
                            "--vrde", "off"],
                           cwd=cli.home, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    lines = []
    try:
        for line in proc.stdout:           # "is running" once the VM runs (pytest's timeout bounds this)
            lines.append(line)
            if "is running" in line:
                break
        assert cli.state() == "running", (lines, proc.poll())
        code, _, err = cli("startvm", VM, "--type", "headless", check=1)
        assert "is already locked" in err or "not powered off" in err
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines) + out
    assert proc.returncode == 0, err
    assert out.startswith("vboxpy VirtualBox Headless Interface ")
    assert f"VM '{VM}' is running (REM). Ctrl-C powers it off." in out and f"VM '{VM}' powered off." in out
    assert cli.state() == "poweroff"
    log = cli.log()
    assert ("VM powered off (SIGINT received)" in log
            and "Ignored options (no VRDE/recording in vboxpy): --vrde off" in log)
