"""Networking end to end: the real CLI, service and VM processes boot two Debian guests on REM.

VM "na": NIC 1 an Intel PRO/1000 MT Desktop (82540EM) on NAT, NIC 2 a virtio-net on an internal
network; VM "nb": NIC 1 virtio-net on NAT, NIC 2 an 82540EM on the same internal network.  Both
NAT adapters forward a host port to the guest (`--natpf1`), let the guest reach the host's
loopback and resolve names through the host (`--natdnshostresolver1`).  Each test types shell
commands over the guest's serial port (TCP server mode).  Both VMs boot once for the module.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.vm.serial_tcp import TcpSerial
from vmm.net.pcap import read_pcap

ROOT = Path(__file__).resolve().parents[3]
GUEST = ROOT / ".cache" / "guest"
READY = "VBOXPY-GUEST-READY"
BOOT_TIMEOUT = 900


def _guest_has_nics() -> bool:
    try:
        modules = json.loads((GUEST / "manifest.json").read_text()).get("modules", [])
    except (OSError, ValueError):
        return False
    return "e1000" in modules and "virtio_net" in modules


pytestmark = [
    pytest.mark.guest,
    pytest.mark.timeout(2400),
    pytest.mark.skipif(not _guest_has_nics(),
                       reason="the guest has no NIC drivers: python -m vmm.guest.builder"),
]

VMS = {"na": {"nat": ("82540EM", "080027AA0001"), "intnet": ("virtio", "080027AA0002"), "ip": "192.168.77.1"},
       "nb": {"nat": ("virtio", "080027BB0001"), "intnet": ("82540EM", "080027BB0002"), "ip": "192.168.77.2"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cli:
    def __init__(self, home: Path):
        self.home = home
        self.env = dict(os.environ, HOME=str(home), VBOX_USER_HOME=str(home / "vbox"),
                        VBOXPY_RUNTIME_DIR=str(home / "run"), PYTHONPATH=str(ROOT),
                        XDG_RUNTIME_DIR=str(home / "xdg"))
        for var in ("XDG_CONFIG_HOME", "VBOXPY_VM_PROCESS", "VBOXPY_LAUNCH_TOKEN"):
            self.env.pop(var, None)
        (home / "xdg").mkdir(mode=0o700)
        self.serial: dict[str, TcpSerial] = {}
        self.serial_port: dict[str, int] = {}
        self.fwd_port: dict[str, int] = {}

    def __call__(self, *args: str, check: int | None = 0) -> tuple[int, str, str]:
        proc = subprocess.run([sys.executable, "-m", "frontends.vboxmanage.main", *args], cwd=str(self.home),
                              env=self.env, capture_output=True, text=True, timeout=300)
        if check is not None:
            assert proc.returncode == check, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc.returncode, proc.stdout, proc.stderr

    def info(self, vm: str) -> dict[str, str]:
        out = self("showvminfo", vm, "--machinereadable")[1]
        return {k.strip('"'): v.strip('"') for k, _, v in (line.partition("=") for line in out.splitlines())}

    def wait_state(self, vm: str, state: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.info(vm)["VMState"] != state:
            assert time.monotonic() < deadline, f"{vm} never reached {state}"
            time.sleep(0.2)

    def log(self, vm: str) -> str:
        try:
            return (self.home / "VMs" / vm / "Logs" / "VBox.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop_service(self) -> None:
        for pid_file in (self.home / "run").glob("vboxsvc*.pid"):
            try:
                os.kill(int(pid_file.read_text().split()[0]), 15)
            except (ValueError, IndexError, OSError):
                continue


def start(cli: Cli, vm: str) -> None:
    cli("startvm", vm, "--type", "headless")
    serial = cli.serial[vm] = TcpSerial(cli.serial_port[vm])
    deadline = time.monotonic() + BOOT_TIMEOUT
    while True:
        try:
            serial.wait_for(READY, min(10.0, max(0.1, deadline - time.monotonic())))
            return
        except TimeoutError:
            assert time.monotonic() < deadline, f"{vm}: no {READY}\n{cli.log(vm)[-3000:]}"
            serial.send(f"echo {READY[:6]}''{READY[6:]}\r")


def sh(cli: Cli, vm: str, command: str, timeout: float = 300) -> str:
    status, out = cli.serial[vm].run(command, timeout)
    assert status == 0, f"{vm}: `{command}` failed ({status}):\n{out}"
    return out


def iface(cli: Cli, vm: str, which: str) -> str:
    mac = VMS[vm][which][1].lower()
    mac = ":".join(mac[i:i + 2] for i in range(0, 12, 2))
    out = sh(cli, vm, "for d in /sys/class/net/eth*; do echo \"$(basename $d) $(cat $d/address)\"; done")
    return next(line.split()[0] for line in out.splitlines() if line.endswith(mac))


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    c = Cli(tmp_path_factory.mktemp("net"))
    c("setproperty", "machinefolder", str(c.home / "VMs"))
    intnet = f"vboxpy-test-{uuid.uuid4().hex[:8]}"
    for vm, spec in VMS.items():
        c("createvm", "--name", vm, "--ostype", "Debian_64", "--register")
        c.serial_port[vm] = free_port()
        c.fwd_port[vm] = free_port()
        c("modifyvm", vm, "--memory", "256", "--boot-kernel", str(GUEST / "vmlinux"), "--boot-initrd",
          str(GUEST / "initrd.img"), "--boot-cmdline", "console=ttyS0 quiet", "--uart1", "0x3f8", "4",
          "--uart-mode1", "tcpserver", str(c.serial_port[vm]),
          "--nic1", "nat", "--nic-type1", spec["nat"][0], "--mac-address1", spec["nat"][1],
          "--natpf1", f"guestnc,tcp,127.0.0.1,{c.fwd_port[vm]},,5001", "--nat-localhostreachable1", "on",
          "--natdnshostresolver1", "on", "--nictrace1", "on", "--nictracefile1", str(c.home / f"{vm}.pcap"),
          "--nic2", "intnet", "--intnet2", intnet, "--nic-type2", spec["intnet"][0],
          "--mac-address2", spec["intnet"][1])
    threads = [threading.Thread(target=start, args=(c, vm)) for vm in VMS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for vm in VMS:
        assert vm in c.serial, f"{vm} did not boot\n{c.log(vm)[-3000:]}"
        nat = iface(c, vm, "nat")
        sh(c, vm, f"ip link set {nat} up && udhcpc -i {nat} -n -q -t 10 -T 3", 600)
    yield c
    for s in c.serial.values():
        s.close()
    for vm in VMS:
        if c.info(vm)["VMState"] in ("running", "paused", "stuck"):
            c("controlvm", vm, "poweroff", check=None)
    c.stop_service()


@pytest.mark.parametrize("vm", list(VMS))
def test_dhcp_gives_virtualbox_addresses(cli, vm):
    nat = iface(cli, vm, "nat")
    out = sh(cli, vm, f"ip -4 addr show {nat}; ip route; cat /etc/resolv.conf")
    assert "inet 10.0.2.15/24" in out and "default via 10.0.2.2" in out and "nameserver 10.0.2.3" in out
    driver = sh(cli, vm, f"basename $(readlink /sys/class/net/{nat}/device/driver)").strip()
    assert driver == ("e1000" if VMS[vm]["nat"][0] == "82540EM" else "virtio_net")
    pci = (
        sh(cli, vm, f"basename $(readlink -f /sys/class/net/{nat}/device/..)").strip()
        if driver == "virtio_net"
        else sh(cli, vm, f"basename $(readlink -f /sys/class/net/{nat}/device)").strip()
    )
    assert pci == "0000:00:03.0"                     # NIC 1 in VirtualBox's slot


@pytest.mark.parametrize("vm", list(VMS))
def test_guest_reaches_host_loopback_and_resolves_names(cli, vm):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve():
        conn, _ = srv.accept()
        conn.sendall(b"hello-from-the-host\n")
        conn.close()
    threading.Thread(target=serve, daemon=True).start()
    assert "hello-from-the-host" in sh(cli, vm, f"nc 10.0.2.2 {port} </dev/null")
    srv.close()
    out = sh(cli, vm, "nslookup localhost 10.0.2.3")
    assert re.search(r"Address:\s+10\.0\.2\.2\b", out.split("localhost", 1)[1]), out


@pytest.mark.parametrize("vm", list(VMS))
def test_host_reaches_guest_through_natpf(cli, vm):
    sh(cli, vm, "(echo hello-from-the-guest | nc -l -p 5001 >/dev/null &); "
                "while ! netstat -tln | grep -q :5001; do sleep 0.2; done")
    with socket.create_connection(("127.0.0.1", cli.fwd_port[vm]), timeout=60) as s:
        s.settimeout(60)
        data = b""
        while b"\n" not in data:
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
    assert data == b"hello-from-the-guest\n"


@pytest.mark.parametrize("vm", list(VMS))
def test_controlvm_natpf_at_run_time(cli, vm):
    port = free_port()
    sh(cli, vm, "mkdir -p /www && echo served-by-busybox-httpd > /www/index.html && httpd -p 8080 -h /www")
    cli("controlvm", vm, "natpf1", f"web,tcp,127.0.0.1,{port},,8080")
    info = cli("showvminfo", vm)[1]
    assert f"NIC 1 Rule(1):   name = web, protocol = tcp, host ip = 127.0.0.1, host port = {port}, " \
           "guest ip = , guest port = 8080" in info
    assert cli.info(vm)["Forwarding(1)"] == f"web,tcp,127.0.0.1,{port},,8080"
    code, _, err = cli("controlvm", vm, "natpf1", f"web,tcp,127.0.0.1,{free_port()},,8081", check=1)
    assert "A NAT rule of this name already exists" in err
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.settimeout(60)
        s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.") and b"served-by-busybox-httpd" in reply
    cli("controlvm", vm, "natpf1", "delete", "web")
    assert "Forwarding(1)" not in cli.info(vm)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    assert "redirect 'web'" in cli.log(vm)


@pytest.mark.parametrize("vm", list(VMS))
def test_setlinkstate_drops_and_restores_carrier(cli, vm):
    nat = iface(cli, vm, "nat")
    wait_carrier = (
        "for i in $(seq 100); do [ $(cat /sys/class/net/{0}/carrier) = {1} ] && break; sleep 0.2; done; "
        "cat /sys/class/net/{0}/carrier"
    )
    cli("controlvm", vm, "setlinkstate1", "off")
    assert cli.info(vm)["cableconnected1"] == "off"
    assert sh(cli, vm, wait_carrier.format(nat, 0)).strip() == "0"
    cli("controlvm", vm, "setlinkstate1", "on")
    assert sh(cli, vm, wait_carrier.format(nat, 1)).strip() == "1"
    assert cli.info(vm)["cableconnected1"] == "on"


def test_two_vms_on_one_internal_network(cli):
    for vm, spec in VMS.items():
        dev = iface(cli, vm, "intnet")
        sh(cli, vm, f"ip link set {dev} up && ip addr add {spec['ip']}/24 dev {dev}")
    sh(cli, "nb", "(echo over-the-internal-network | nc -l -p 7000 >/dev/null &); "
                  "while ! netstat -tln | grep -q :7000; do sleep 0.2; done")
    out = sh(cli, "na", f"nc {VMS['nb']['ip']} 7000 </dev/null", 120)
    assert "over-the-internal-network" in out


def test_nic_trace_is_a_pcap(cli):
    frames = [f for _, f in read_pcap(str(cli.home / "na.pcap"))]
    assert any(f[12:14] == b"\x08\x00" and f[23] == 17 and f[36:38] == b"\x00\x43" for f in frames)   # DHCP


def test_savestate_with_an_open_connection(cli):
    vm = "na"
    sh(cli, vm,
       "(nc -l -p 5001 >/dev/null </dev/null &); while ! netstat -tln | grep -q :5001; do sleep 0.2; done")
    held = socket.create_connection(("127.0.0.1", cli.fwd_port[vm]), timeout=60)
    cli("controlvm", vm, "savestate")
    cli.wait_state(vm, "saved", 120)
    held.close()
    start_again = cli("startvm", vm, "--type", "headless")
    assert start_again[0] == 0
    cli.serial[vm].close()
    cli.serial[vm] = TcpSerial(cli.serial_port[vm])
    assert sh(cli, vm, "echo restored-guest-answers").strip() == "restored-guest-answers"
    assert "Restored the saved state" in cli.log(vm)
    sh(cli, vm, "(echo after-restore | nc -l -p 5001 >/dev/null &); "
                "while ! netstat -tln | grep -q :5001; do sleep 0.2; done")
    with socket.create_connection(("127.0.0.1", cli.fwd_port[vm]), timeout=60) as s:
        s.settimeout(120)
        assert s.recv(100) == b"after-restore\n"


@pytest.mark.parametrize("kind,option",
                         [("bridged", "--bridge-adapter1"), ("hostonly", "--host-only-adapter1")])
def test_host_interface_attachments_fail_clearly_at_startvm(cli, kind, option):
    vm = f"n-{kind}"
    cli("createvm", "--name", vm, "--register")
    cli("modifyvm", vm, "--memory", "128", "--boot-kernel", str(GUEST / "vmlinux"), "--nic1", kind,
        option, "eth9",
        "--nic-type1", "82540EM")
    code, out, err = cli("startvm", vm, "--type", "headless", check=1)
    assert "network adapter 1" in err and "tap device" in err, err
    assert cli.info(vm)["VMState"] == "poweroff"
