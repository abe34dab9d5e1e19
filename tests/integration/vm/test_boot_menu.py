"""Driving a boot loader's menu from the host, on REM: SeaBIOS -> SYSLINUX's menu -> Linux.

A FAT disk made here with Debian's syslinux (installed with mtools, no mount) carries the test
guest's kernel and initramfs and a two-entry menu that waits for a choice.  The menu must show
in `controlvm screenshotpng`; `keyboardputscancode` presses Down and Enter (what Packer's boot
commands do), and the kernel that boots must be the second entry's (its command line, printed
by Linux on COM1, carries the entry's marker).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.vm.serial_tcp import TcpSerial
from tests.integration.vm.test_display import decode_rgb, rom_font, text_mask
from tests.integration.vm.test_headless import Cli, _free_port
from tests.integration.world import World, WorldUnavailable
from vmm import firmware, firmware_config

ROOT = Path(__file__).resolve().parents[3]
GUEST = ROOT / ".cache" / "guest"
SYSLINUX_MODULES = Path("/usr/lib/syslinux/modules/bios")
VM = "menu"
MENU = """UI menu.c32
PROMPT 0
TIMEOUT 0
MENU TITLE VBOXPY BOOT MENU
LABEL first
  MENU LABEL FIRST ENTRY
  KERNEL vmlinuz
  APPEND initrd=initrd.img console=ttyS0 vboxpy.entry=first-choice
LABEL second
  MENU LABEL SECOND ENTRY
  KERNEL vmlinuz
  APPEND initrd=initrd.img console=ttyS0 vboxpy.entry=second-choice
"""

pytestmark = [
    pytest.mark.timeout(1500),
    pytest.mark.skipif(not (GUEST / "vmlinuz").is_file() or not (GUEST / "initrd.img").is_file(),
                       reason="the guest is not built (python -m vmm.guest.builder makes .cache/guest)"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("syslinux", "mkfs.fat", "mcopy"))
                       or not (SYSLINUX_MODULES / "menu.c32").is_file(),
                       reason="syslinux, dosfstools and mtools are needed to build the menu disk"),
    pytest.mark.skipif(not any(p.is_file() for p in firmware.candidates())
                       or firmware_config.vga_bios() is None,
                       reason="no SeaBIOS / VGA BIOS image (Debian's seabios package)"),
]


def menu_disk(tmp: Path) -> Path:
    img = tmp / "menu.img"
    subprocess.run(["mkfs.fat", "-C", "-F", "16", str(img), str(40 * 1024)], check=True, capture_output=True)
    subprocess.run(["syslinux", "--install", str(img)], check=True, capture_output=True)
    (tmp / "syslinux.cfg").write_text(MENU)
    files = [tmp / "syslinux.cfg", GUEST / "vmlinuz", GUEST / "initrd.img"] + \
        [SYSLINUX_MODULES / m for m in ("menu.c32", "libutil.c32", "libcom32.c32")]
    subprocess.run(["mcopy", "-i", str(img), *map(str, files), "::/"], check=True, capture_output=True)
    from vmm.storage.create import create_vdi
    vdi = tmp / "menu.vdi"
    data = img.read_bytes()
    disk = create_vdi(str(vdi), len(data))
    for off in range(0, len(data), 1 << 20):
        disk.write_at(off, data[off:off + (1 << 20)])
    disk.flush()
    disk.close()
    return vdi


def screen_has(png: bytes, text: str) -> bool:
    """`text` anywhere on the 80x25 text screen (any row, any column, any colours), in the VGA BIOS font."""
    width, height, rgb = decode_rgb(png)
    if (width, height) != (720, 400):
        return False
    want = text_mask(rom_font(), text)
    n = len(want[0])
    for r in range(25):
        lines = [rgb[(r * 16 + y) * width * 3:(r * 16 + y + 1) * width * 3] for y in range(16)]
        for col in range(80 - len(text) + 1):
            x = col * 9 * 3
            bg = lines[0][x:x + 3]                   # a glyph's top scan line is blank: the cell's background
            if all(bytes(0 if lines[y][x + 3 * i:x + 3 * i + 3] == bg else 1 for i in range(n)) == want[y]
                   for y in range(16)):
                return True
    return False


@pytest.fixture(scope="module")
def vm(tmp_path_factory):
    try:
        world = World.current(home=tmp_path_factory.mktemp("menu"))
    except WorldUnavailable as e:
        pytest.skip(f"cannot make the test's world: {e}")
    c = Cli(world)
    c("setproperty", "machinefolder", str(c.home / "VMs"))
    c("createvm", "--name", VM, "--ostype", "Debian_64", "--register")
    disk = menu_disk(c.home)
    port = _free_port()
    c("modifyvm", VM, "--memory", "256", "--boot1", "disk", "--boot2", "none", "--boot3", "none",
      "--boot4", "none",
      "--uart1", "0x3f8", "4", "--uart-mode1", "tcpserver", str(port))
    c("storagectl", VM, "--name", "SATA", "--add", "sata", "--controller", "IntelAhci")
    c("storageattach", VM, "--storagectl", "SATA", "--port", "0", "--device", "0", "--type", "hdd",
      "--medium", str(disk))
    assert c("startvm", VM, "--type", "headless")[0] == 0
    serial = TcpSerial(port)
    try:
        yield c, serial
    finally:
        serial.close()
        if c.state(VM) in ("running", "paused", "stuck"):
            c("controlvm", VM, "poweroff", check=None)
        world.cleanup()


def test_scancodes_pick_the_second_menu_entry(vm):
    cli, serial = vm
    shot = cli.home / "menu.png"
    deadline = time.monotonic() + 600
    while True:
        cli("controlvm", VM, "screenshotpng", str(shot))
        png = shot.read_bytes()
        if screen_has(png, "SECOND ENTRY"):
            break
        assert time.monotonic() < deadline, f"no boot menu on the screen\n{cli.log_tail(40)}"
        time.sleep(2.0)
    assert screen_has(png, "FIRST ENTRY") and screen_has(png, "VBOXPY BOOT MENU")
    cli("controlvm", VM, "keyboardputscancode", "e0", "50", "e0", "d0", "1c", "9c")      # Down, Enter
    serial.wait_for("vboxpy.entry=", 240)
    time.sleep(1.0)
    out = serial.text()
    assert "vboxpy.entry=second-choice" in out and "first-choice" not in out, out[-2000:]
