"""DVD drives on an IDE controller through the real CLI, service and VM process.

`storagectl --add ide`, a VDI disk and an ISO in a DVD drive (`storageattach --type dvddrive`),
the media registry (`list dvds`, `showmediuminfo dvd`, `closemedium dvd`), `showvminfo` in both
forms and the .vbox file as VirtualBox writes them; then the Debian guest (vmlinux form, REM)
boots with that storage: it sees the disk and reads a file off the disc, and a `storageattach
--medium` on the running VM changes the disc in the guest's drive (then empties it).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.vm.serial_tcp import TcpSerial
from vmm.guest.builder import cache_dir

ROOT = Path(__file__).resolve().parents[3]
GUEST = cache_dir()
READY = "VBOXPY-GUEST-READY"
BOOT_TIMEOUT = 900
VM = "dvdvm"


def _guest_has_modules() -> bool:
    try:
        return ({"ata_piix", "sr_mod", "isofs"}
                <= set(json.loads((GUEST / "manifest.json").read_text())["modules"]))
    except (OSError, ValueError, KeyError):
        return False


pytestmark = [
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not (GUEST / "vmlinux").is_file(),
                       reason="the guest is not built (python -m vmm.guest.builder)"),
]
needs_guest_modules = pytest.mark.skipif(
    not _guest_has_modules(), reason="the guest's initramfs has no ata_piix/sr_mod/isofs: rebuild it")


class Cli:
    def __init__(self, home: Path):
        self.home = home
        self.env = dict(os.environ, HOME=str(home), VBOXPY_RUNTIME_DIR=str(home / "run"),
                        PYTHONPATH=str(ROOT),
                        VBOX_USER_HOME=str(home / "vbox"))
        for var in ("XDG_CONFIG_HOME", "VBOXPY_VM_PROCESS", "VBOXPY_LAUNCH_TOKEN"):
            self.env.pop(var, None)

    def __call__(self, *args: str, check: int | None = 0) -> tuple[int, str, str]:
        proc = subprocess.run([sys.executable, "-m", "frontends.vboxmanage.main", *args], cwd=str(self.home),
                              env=self.env, capture_output=True, text=True, timeout=300)
        if check is not None:
            assert proc.returncode == check, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc.returncode, proc.stdout, proc.stderr

    def info(self) -> dict:
        out = self("showvminfo", VM, "--machinereadable")[1]
        return {k.strip('"'): v.strip('"') for k, _, v in (line.partition("=") for line in out.splitlines())}

    def log(self) -> str:
        try:
            return (self.home / "VMs" / VM / "Logs" / "VBox.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop_service(self) -> None:
        for pid_file in (self.home / "run").glob("vboxsvc*.pid"):
            try:
                os.kill(int(pid_file.read_text().split()[0]), 15)
            except (ValueError, IndexError, OSError):
                continue


def make_iso(tmp: Path, name: str, text: str) -> Path:
    tree = tmp / f"{name}-tree"
    tree.mkdir()
    (tree / "disc.txt").write_text(text)
    iso = tmp / f"{name}.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), str(tree)], check=True,
                   capture_output=True)
    return iso


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("idecli")
    c = Cli(tmp)
    c("setproperty", "machinefolder", str(tmp / "VMs"))
    c("createvm", "--name", VM, "--ostype", "Debian_64", "--register")
    isos = {n: make_iso(tmp, n, f"this-is-disc-{n}\n") for n in ("one", "two")}
    yield c, isos
    if c.info().get("VMState") in ("running", "paused", "stuck"):
        c("controlvm", VM, "poweroff", check=None)
    c.stop_service()


def test_dvd_drives_in_the_settings(setup):
    c, isos = setup
    disk = c.home / "VMs" / VM / "disk.vdi"
    c("createmedium", "disk", "--filename", str(disk), "--size", "32")
    c("storagectl", VM, "--name", "IDE", "--add", "ide", "--controller", "PIIX3")
    c("storageattach", VM, "--storagectl", "IDE", "--port", "0", "--device", "0", "--type", "hdd",
      "--medium", str(disk))
    c("storageattach", VM, "--storagectl", "IDE", "--port", "1", "--device", "0", "--type", "dvddrive",
      "--medium", str(isos["one"]))
    c("storageattach", VM, "--storagectl", "IDE", "--port", "1", "--device", "1", "--type", "dvddrive",
      "--medium", "emptydrive")
    code, _, err = c("storageattach", VM, "--storagectl", "IDE", "--port", "0", "--device", "1", "--type",
                     "dvddrive", "--medium", "additions", check=1)
    assert err == "VBoxManage: error: Cannot find the Guest Additions ISO image\n"

    uuid = c("showmediuminfo", "dvd", str(isos["one"]))[1].splitlines()[0].split()[1]
    size_mb = isos["one"].stat().st_size >> 20
    assert c("list", "dvds")[1] == (
        f"UUID:           {uuid}\nState:          created\nType:           readonly\n"
        f"Location:       {isos['one']}\nStorage format: RAW\nCapacity:       {size_mb} MBytes\n"
        "Encryption:     disabled\n\n")
    info = c.info()
    assert info["storagecontrollertype0"] == "PIIX3"
    assert ((info["IDE-1-0"], info["IDE-ImageUUID-1-0"], info["IDE-IsEjected-1-0"])
            == (str(isos["one"]), uuid, "off"))
    assert info["IDE-1-1"] == "emptydrive" and info["IDE-0-1"] == "none"
    human = c("showvminfo", VM)[1]
    assert f'  Port 1, Unit 0: UUID: {uuid}\n    Location: "{isos["one"]}"\n' in human
    assert "  Port 1, Unit 1: Empty" in human
    vbox = (c.home / "VMs" / VM / f"{VM}.vbox").read_text()
    assert re.search(r'<AttachedDevice passthrough="false" type="DVD" hotpluggable="false" port="1" '
                     r'device="0">\s*'
                     rf'<Image uuid="\{{{uuid}\}}"/>\s*</AttachedDevice>', vbox), vbox
    assert '<AttachedDevice passthrough="false" type="DVD" hotpluggable="false" port="1" device="1"/>' in vbox
    assert re.search(
        rf'<DVDImages>\s*<Image uuid="\{{{uuid}\}}" location="{re.escape(str(isos["one"]))}"/>', vbox
    )
    # an attached disc cannot be closed
    code, _, err = c("closemedium", "dvd", str(isos["one"]), check=1)
    assert "cannot be closed because it is still attached" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_guest_modules
def test_guest_reads_the_disc_and_sees_a_disc_change(setup):
    c, isos = setup
    if "IDE-1-0" not in c.info():
        test_dvd_drives_in_the_settings(setup)
    port = _free_port()
    c("modifyvm", VM, "--memory", "256", "--boot-kernel", str(GUEST / "vmlinux"), "--boot-initrd",
      str(GUEST / "initrd.img"), "--boot-cmdline", "console=ttyS0 quiet", "--uart1", "0x3f8", "4",
      "--uart-mode1", "tcpserver", str(port))
    c("startvm", VM, "--type", "headless")
    serial = TcpSerial(port)
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            try:
                serial.wait_for(READY, 10)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, f"no {READY}\n{c.log()[-3000:]}"
                serial.send(f"echo {READY[:6]}''{READY[6:]}\r")

        def run(cmd: str) -> str:
            status, out = serial.run(cmd, 300)
            assert status == 0, (cmd, out)
            return out

        assert "PIIX3        PCI 00:01.1 IRQ 14/15 (IDE)" in c.log()
        blocks = run("ls /sys/block")
        assert "sda" in blocks and "sr0" in blocks and "sr1" in blocks, blocks
        assert "this-is-disc-one" in run("mkdir -p /mnt/cd && mount -t iso9660 /dev/sr0 /mnt/cd && "
                                         "cat /mnt/cd/disc.txt && umount /mnt/cd")
        status, out = serial.run("mount -t iso9660 /dev/sr1 /mnt/cd", 300)
        assert status != 0, out                                     # the empty drive has no medium

        c("storageattach", VM, "--storagectl", "IDE", "--port", "1", "--device", "0", "--medium",
          str(isos["two"]))
        assert c.info()["IDE-1-0"] == str(isos["two"])
        text = ""
        for _ in range(20):                                         # the change reaches the VM asynchronously
            status, text = serial.run("mount -t iso9660 /dev/sr0 /mnt/cd && cat /mnt/cd/disc.txt; "
                                      "umount /mnt/cd",
                                      300)
            if "this-is-disc-two" in text:
                break
            time.sleep(0.5)
        assert "this-is-disc-two" in text, text
        c("storageattach", VM, "--storagectl", "IDE", "--port", "1", "--device", "0", "--medium",
          "emptydrive")
        for _ in range(20):
            status, text = serial.run("mount -t iso9660 /dev/sr0 /mnt/cd && umount /mnt/cd", 300)
            if status != 0:
                break
            time.sleep(0.5)
        assert status != 0, text
        assert "Medium change: IDE port 1 device 0 now holds no medium" in c.log()
    finally:
        serial.close()
        c("controlvm", VM, "poweroff", check=None)
