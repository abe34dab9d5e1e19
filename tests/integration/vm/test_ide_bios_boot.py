"""An ISO boots through SeaBIOS from the DVD drive on the IDE controller (El Torito, ISOLINUX).

The ISO is made here with xorriso from ISOLINUX and the Debian guest's bzImage and initramfs;
the VM has no --kernel, so SeaBIOS finds the ATAPI drive, reads the boot catalog and loads
ISOLINUX, which reads the kernel and the initramfs through INT 13h (ATAPI PIO reads), and
the guest prints its ready marker on the serial console.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.vm.guest_console import READY_MARKER, GuestConsole
from vmm.guest.builder import cache_dir

ROOT = Path(__file__).resolve().parents[3]
GUEST = cache_dir()
ISOLINUX = Path("/usr/lib/ISOLINUX/isolinux.bin")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
BOOT_TIMEOUT = 1200


def _bios_available() -> bool:
    if importlib.util.find_spec("vmm.firmware") is None:
        return False
    try:
        from vmm import firmware
        firmware.find()
    except Exception:
        return False
    return True


pytestmark = [
    pytest.mark.guest,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not (GUEST / "vmlinuz").exists(),
                       reason="no guest kernel: run python -m vmm.guest.builder"),
    pytest.mark.skipif(not _bios_available(), reason="the VMM has no SeaBIOS boot path or no bios.bin"),
    pytest.mark.skipif(not (shutil.which("xorriso") and ISOLINUX.is_file() and LDLINUX.is_file()),
                       reason="xorriso, isolinux and syslinux-common are needed to make the ISO"),
]

ISOLINUX_CFG = """SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 1
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0 quiet
"""


def make_boot_iso(tmp: Path) -> Path:
    tree = tmp / "isotree"
    (tree / "isolinux").mkdir(parents=True)
    shutil.copy(ISOLINUX, tree / "isolinux" / "isolinux.bin")
    shutil.copy(LDLINUX, tree / "isolinux" / "ldlinux.c32")
    (tree / "isolinux" / "isolinux.cfg").write_text(ISOLINUX_CFG)
    shutil.copy(GUEST / "vmlinuz", tree / "vmlinuz")
    shutil.copy(GUEST / "initrd.img", tree / "initrd.img")
    iso = tmp / "boot.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), "-b", "isolinux/isolinux.bin",
                    "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
                    str(tree)], check=True, capture_output=True)
    return iso


def test_iso_boots_through_seabios_from_the_ide_dvd_drive(tmp_path):
    iso = make_boot_iso(tmp_path)
    argv = [sys.executable, "-m", "vmm.run", "--memory", "256", "--engine", "rem", "--dvd", str(iso)]
    console = GuestConsole(argv, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                           log_path=str(tmp_path / "boot.log"))
    try:
        console.wait_for("ISOLINUX", BOOT_TIMEOUT)
        console.wait_for(READY_MARKER, BOOT_TIMEOUT)
        status, out = console.run("cat /proc/cmdline", 300)
        assert status == 0 and "console=ttyS0" in out, out
        # the guest's own driver finds the drive it booted from
        status, out = console.run("ls /sys/block", 300)
        assert status == 0 and "sr0" in out, out
    finally:
        console.proc.kill()
        console.close(30)
