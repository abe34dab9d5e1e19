"""What the VMM tells SeaBIOS through fw_cfg: RAM map, CPUs, boot order, boot policy.

VirtualBox hands its BIOS the same facts through CMOS and its own VMMDev/DMI interfaces;
SeaBIOS built for QEMU reads them from fw_cfg items and files (vmm.devices.fw_cfg).  The
boot order comes from the machine's --boot1..4 (CFGM `BootOrder/<n>` = HardDisk, DVD,
Floppy, Network) as a `bootorder` file of device paths, ending in HALT so that a device
type left out of the order is not booted; with no bootable medium SeaBIOS halts with its
message and the VM keeps running, as VirtualBox's does (`etc/boot-fail-wait` = -1).
"""

from __future__ import annotations

import struct
import uuid as uuidlib

from vmm import firmware
from vmm.cfgm import CfgNode
from vmm.devices import fw_cfg as keys
from vmm.devices.fw_cfg import FwCfg
from vmm.memory import GuestMemory

E820_RAM = 1
BOOT_DEVICES = ("HardDisk", "DVD", "Floppy", "Network")
DEFAULT_BOOT_ORDER = ("Floppy", "DVD", "HardDisk")      # VirtualBox's default --boot1..3


VGA_BIOS = "vgabios-isavga.bin"      # SeaVGABIOS for a plain (ISA) VGA: text modes on the legacy ports


def find_bios() -> str:
    return str(firmware.find())


def vga_bios() -> bytes | None:
    """The VGA option ROM SeaBIOS runs (int 10h, so the firmware and boot loaders print on the
    VGA text screen), from the same package as the BIOS; None if it is missing."""
    try:
        rom = bytearray(firmware.find(VGA_BIOS).read_bytes())
    except (firmware.FirmwareError, OSError):
        return None
    return fix_rom_checksum(rom)


def fix_rom_checksum(rom: bytearray) -> bytes | None:
    """An option ROM's bytes sum to 0 over its declared length (512-byte units at offset 2);
    Debian's images are shipped unpatched, so the last byte of that length is set here."""
    if len(rom) < 3 or rom[0:2] != b"\x55\xaa":
        return None
    length = rom[2] * 512
    if not 0 < length <= len(rom):
        return None
    rom[length - 1] = (rom[length - 1] - sum(rom[:length])) & 0xFF
    return bytes(rom[:length])


def e820_table(memory: GuestMemory) -> bytes:
    return b"".join(struct.pack("<QQI", base, length, E820_RAM) for base, length, _ in memory.regions)


def device_path(controller_type: str, slot: int, port: int, device: int = 0) -> str | None:
    """The OpenFirmware path SeaBIOS matches a boot device against (its bootprio_find_*)."""
    pci = f"/pci@i0cf8/*@{slot:x}"
    if controller_type == "IntelAhci":
        return f"{pci}/drive@{port:x}/disk@0"
    if controller_type in ("PIIX3", "PIIX4", "ICH6"):
        return f"/pci@i0cf8/*@{slot:x},1/drive@{port:x}/disk@{device:x}"
    if controller_type == "VirtioSCSI":
        return f"{pci}/*@0/*@{port:x},0"
    return None


def boot_order(cfg: CfgNode) -> list[str]:
    """BootOrder/1..4 values (device type names; "Null" and unknown ones skipped)."""
    node = cfg.child("BootOrder")
    if node is None:
        return list(DEFAULT_BOOT_ORDER)
    order = []
    for _, kind in sorted((k, v) for k, v in node.values.items() if k.isdigit()):
        if kind in BOOT_DEVICES and kind not in order:
            order.append(kind)
    return order


def bootorder_file(cfg: CfgNode, storage) -> bytes:
    """Device paths in --boot1..4 order: every disk for HardDisk, every optical drive for DVD."""
    lines = []
    for kind in boot_order(cfg):
        for pc in storage:
            for port, dev, is_dvd in pc.boot_devices():
                if (kind == "DVD") == is_dvd and kind in ("HardDisk", "DVD"):
                    path = device_path(pc.controller_type, pc.slot, port, dev)
                    if path:
                        lines.append(path)
    lines.append("HALT")
    return "\n".join(lines).encode() + b"\0"


def populate(fw: FwCfg, cfg: CfgNode, memory: GuestMemory, storage, acpi_config=None) -> None:
    """acpi_config: a callable returning the vmm.devices.acpi.AcpiConfig of the machine as it is
    now (None: no ACPI tables; SeaBIOS then offers none either)."""
    cpus = 1    # EM runs one vCPU
    try:
        vm_uuid = uuidlib.UUID(cfg.get_str("UUID", "")).bytes
    except ValueError:
        vm_uuid = bytes(16)
    fw.add(keys.UUID, vm_uuid)
    fw.add(keys.RAM_SIZE, struct.pack("<Q", memory.size))
    fw.add(keys.NB_CPUS, struct.pack("<H", cpus))
    fw.add(keys.MAX_CPUS, struct.pack("<H", cpus))
    fw.add(keys.NUMA, struct.pack("<Q", 0))
    menu = cfg.get_str("Firmware/BootMenu", "MessageAndMenu") != "Disabled"
    fw.add(keys.BOOT_MENU, struct.pack("<H", int(menu)))
    fw.add_file("etc/show-boot-menu", struct.pack("<H", int(menu)))
    fw.add_file("etc/boot-menu-wait", struct.pack("<H", max(0, min(cfg.get_int("Firmware/LogoDisplayTime", 0),
                                                                   0xFFFF))))
    fw.add_file("etc/e820", e820_table(memory))
    fw.add_file("bootorder", bootorder_file(cfg, storage))
    fw.add_file("etc/boot-fail-wait", struct.pack("<i", -1))
    if acpi_config is not None:
        AcpiForFirmware(acpi_config).install(fw)
    install_smbios(fw, cfg.get_str("UUID", ""))
    rom = vga_bios()
    if rom is not None:
        fw.add_file(f"vgaroms/{VGA_BIOS}", rom)


# -- ACPI tables through QEMU's table loader ----------------------------------------------------------

LOADER_ALLOCATE, LOADER_ADD_POINTER, LOADER_ADD_CHECKSUM = 1, 2, 3
ZONE_HIGH, ZONE_FSEG = 1, 2
LOADER_ENTRY = 128
TABLES_FILE, RSDP_FILE, LOADER_FILE = "etc/acpi/tables", "etc/acpi/rsdp", "etc/table-loader"
RSDP_SIZE = 36
TABLES_SLACK = 1024          # room for the tables to grow between the first build and the firmware's read


def _name(name: str) -> bytes:
    return name.encode().ljust(56, b"\0")


def _allocate(name: str, align: int, zone: int) -> bytes:
    return struct.pack("<I", LOADER_ALLOCATE) + _name(name) + struct.pack("<IB", align, zone)


def _pointer(dest: str, src: str, offset: int, size: int) -> bytes:
    return struct.pack("<I", LOADER_ADD_POINTER) + _name(dest) + _name(src) + struct.pack("<IB", offset, size)


def _checksum(name: str, offset: int, start: int, length: int) -> bytes:
    return struct.pack("<I", LOADER_ADD_CHECKSUM) + _name(name) + struct.pack("<III", offset, start, length)


def loader_commands(blob: bytes) -> list[bytes]:
    """Relocations for tables built at address 0 (so every pointer holds an offset into the blob):
    the firmware allocates the blob and the RSDP, adds the blob's address to each pointer field
    and fixes each checksum."""
    def u32(off: int) -> int:
        return struct.unpack_from("<I", blob, off)[0]

    rsdt, xsdt = u32(16), struct.unpack_from("<Q", blob, 24)[0]
    cmds = [_allocate(TABLES_FILE, 64, ZONE_HIGH), _allocate(RSDP_FILE, 16, ZONE_FSEG),
            _pointer(RSDP_FILE, TABLES_FILE, 16, 4), _pointer(RSDP_FILE, TABLES_FILE, 24, 8),
            _checksum(RSDP_FILE, 8, 0, 20), _checksum(RSDP_FILE, 32, 0, RSDP_SIZE)]
    entries = [u32(rsdt + 36 + 4 * i) for i in range((u32(rsdt + 4) - 36) // 4)]
    for i in range(len(entries)):
        cmds.append(_pointer(TABLES_FILE, TABLES_FILE, rsdt + 36 + 4 * i, 4))
        cmds.append(_pointer(TABLES_FILE, TABLES_FILE, xsdt + 36 + 8 * i, 8))
    for table in entries:
        if blob[table:table + 4] == b"FACP":
            for off, size in ((36, 4), (40, 4), (132, 8), (140, 8)):
                cmds.append(_pointer(TABLES_FILE, TABLES_FILE, table + off, size))
    for table in [rsdt, xsdt] + entries:
        cmds.append(_checksum(TABLES_FILE, table + 9, table, u32(table + 4)))
    return [c.ljust(LOADER_ENTRY, b"\0") for c in cmds]


class AcpiForFirmware:
    """The VMM's ACPI tables as fw_cfg files, made when the firmware reads the loader script
    (by then it has programmed PMBASE and the PIRQ routes the tables describe)."""

    def __init__(self, make_config):
        self.make_config = make_config
        from vmm.devices.acpi import build_acpi_tables
        self._build = build_acpi_tables
        first = build_acpi_tables(make_config(), 0).data
        self.tables_size = len(first) + TABLES_SLACK
        self.loader_size = len(loader_commands(first)) * LOADER_ENTRY
        self._blob: bytes | None = None

    def _tables(self) -> bytes:
        if self._blob is None:
            self._blob = self._build(self.make_config(), 0).data
        return self._blob

    def _loader(self) -> bytes:
        self._blob = None                 # a new boot: build again from the chipset's state
        blob = self._tables()
        if len(blob) > self.tables_size:
            raise ValueError("the ACPI tables outgrew their fw_cfg file")
        return b"".join(loader_commands(blob))

    def install(self, fw: FwCfg) -> None:
        fw.add_file(LOADER_FILE, size=self.loader_size, make=self._loader)
        fw.add_file(TABLES_FILE, size=self.tables_size, make=self._tables)
        fw.add_file(RSDP_FILE, size=RSDP_SIZE, make=lambda: self._tables()[:RSDP_SIZE])


def install_smbios(fw: FwCfg, vm_uuid: str) -> None:
    from vmm.devices import smbios
    anchor, tables = smbios.build(vm_uuid)
    fw.add_file("etc/smbios/smbios-tables", tables)
    fw.add_file("etc/smbios/smbios-anchor", anchor)
