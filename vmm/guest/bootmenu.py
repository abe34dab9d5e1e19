"""The SYSLINUX/ISOLINUX configuration of the bootable guest media: a two-entry menu.

The same text serves the disk (syslinux.cfg) and the ISO (isolinux.cfg).  Both entries boot
the project's kernel and initramfs with the kernel console on the VGA text screen and on the
first serial port (the last `console=` is /dev/console, so the shell is on ttyS0); the menu is
mirrored on the serial port too.  The first entry is quiet (fast to the ready marker); the
second shows every kernel message, so a display test that picks it can tell by the screen.
"""

from __future__ import annotations

from dataclasses import dataclass

KERNEL_NAME = "vmlinuz"
INITRD_NAME = "initrd.img"
TIMEOUT_TENTHS = 20             # the menu waits 2 s, any key stops the countdown
SERIAL_BAUD = 115200
BASE_CMDLINE = "console=tty0 console=ttyS0,115200"
# The menu modules (syslinux-common, modules/bios) a menu needs besides ldlinux.c32.
MENU_MODULES = ("menu.c32", "libutil.c32", "libcom32.c32")


@dataclass(frozen=True)
class Entry:
    label: str
    title: str
    append: str


ENTRIES = (
    Entry("vboxpy", "vboxpy guest", f"{BASE_CMDLINE} quiet vboxpy.entry=1"),
    Entry("verbose", "vboxpy guest, all kernel messages", f"{BASE_CMDLINE} loglevel=7 vboxpy.entry=2"),
)


def config(title: str = "vboxpy boot menu") -> str:
    lines = [
        f"SERIAL 0 {SERIAL_BAUD}",
        "UI menu.c32",
        "PROMPT 0",
        f"TIMEOUT {TIMEOUT_TENTHS}",
        f"MENU TITLE {title}",
        f"DEFAULT {ENTRIES[0].label}",
    ]
    for e in ENTRIES:
        lines += [
            "",
            f"LABEL {e.label}",
            f"  MENU LABEL {e.title}",
            f"  LINUX /{KERNEL_NAME}",
            f"  INITRD /{INITRD_NAME}",
            f"  APPEND {e.append}",
        ]
    return "\n".join(lines) + "\n"
