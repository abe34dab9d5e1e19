"""SMBIOS (DMI) tables with VirtualBox's strings, handed to the firmware through fw_cfg.

A guest identifies its hypervisor by these (`systemd-detect-virt` says `oracle` for system
vendor "innotek GmbH"; Vagrant boxes and installers check product "VirtualBox").  The
strings follow what VirtualBox's DevPcBios/DMI code puts in: BIOS and system vendor
"innotek GmbH", product "VirtualBox", version "1.2", family "Virtual Machine", board and
chassis by "Oracle Corporation", and the OEM strings with the VirtualBox version.

`build(uuid)` returns (entry point, structure table): a 2.8 "_SM_" entry point whose table
address the firmware fills in when it places the table (SeaBIOS fixes the checksums).
"""

from __future__ import annotations

import struct
import uuid as uuidlib

BIOS_VENDOR = "innotek GmbH"
BIOS_VERSION = "VirtualBox"
BIOS_DATE = "12/01/2006"
SYSTEM_VENDOR = "innotek GmbH"
SYSTEM_PRODUCT = "VirtualBox"
SYSTEM_VERSION = "1.2"
SYSTEM_FAMILY = "Virtual Machine"
BOARD_VENDOR = "Oracle Corporation"
VBOX_VERSION = "7.0.20"
VBOX_REVISION = "163906"
END_OF_TABLE = 127


def _structure(stype: int, handle: int, formatted: bytes, strings: list[str]) -> bytes:
    head = struct.pack("<BBH", stype, 4 + len(formatted), handle) + formatted
    text = b"".join(s.encode("ascii", "replace")[:64] + b"\0" for s in strings if s)
    return head + (text + b"\0" if text else b"\0\0")


def _uuid_bytes(vm_uuid: str) -> bytes:
    """SMBIOS 2.6+ byte order: the first three fields little-endian."""
    try:
        return uuidlib.UUID(vm_uuid).bytes_le
    except ValueError:
        return bytes(16)


def structures(vm_uuid: str) -> list[bytes]:
    bios = _structure(0, 0x0000, struct.pack(
        "<BBHBBQBBBBBB", 1, 2, 0xE000, 3, 1,
        (1 << 7) | (1 << 11) | (1 << 15) | (1 << 19),       # PCI, upgradeable, CD boot, EDD
        0x01,                                                # ACPI
        0x10,                                                # the tables describe a virtual machine
        0xFF, 0xFF, 0xFF, 0xFF)[:0x14], [BIOS_VENDOR, BIOS_VERSION, BIOS_DATE])
    system = _structure(1, 0x0001, struct.pack("<BBBB16sBBB", 1, 2, 3, 4, _uuid_bytes(vm_uuid), 6, 0, 5),
                        [SYSTEM_VENDOR, SYSTEM_PRODUCT, SYSTEM_VERSION, "0", SYSTEM_FAMILY])
    board = _structure(2, 0x0002, struct.pack("<BBBBBBBHBB", 1, 2, 3, 4, 0, 0x08, 0, 0x0003, 0x0A, 0),
                       [BOARD_VENDOR, SYSTEM_PRODUCT, SYSTEM_VERSION, "0"])
    chassis = _structure(3, 0x0003,
                         struct.pack("<BBBBBBBBBIBBBB", 1, 0x01, 0, 0, 0, 3, 3, 3, 3, 0, 0, 0, 0, 0),
                         [BOARD_VENDOR])
    oem = _structure(11, 0x0004, struct.pack("<B", 2),
                     [f"vboxVer_{VBOX_VERSION}", f"vboxRev_{VBOX_REVISION}"])
    end = _structure(END_OF_TABLE, 0xFEFF, b"", [])
    return [bios, system, board, chassis, oem, end]


def build(vm_uuid: str) -> tuple[bytes, bytes]:
    items = structures(vm_uuid)
    table = b"".join(items)
    max_size = max(len(s) for s in items)
    ep = bytearray(struct.pack("<4sBBBBHB5s5sBHIHB", b"_SM_", 0, 0x1F, 2, 8, max_size, 0, bytes(5),
                               b"_DMI_", 0,
                               len(table), 0, len(items), 0x28))
    ep[0x15] = (-sum(ep[0x10:0x1F])) & 0xFF
    ep[4] = (-sum(ep)) & 0xFF
    return bytes(ep), table
