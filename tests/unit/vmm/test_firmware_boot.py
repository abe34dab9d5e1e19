"""A VM without a kernel starts in SeaBIOS (REM, in-process): the reset vector, shadowing through
PAM, fw_cfg, the VGA text screen, the boot order, and VBox.log's screen dump when the guest gets
stuck.  Also the PAM windows as REM maps them: stores into read-only shadow RAM or ROM vanish."""

from __future__ import annotations

import logging
import struct
import time

import pytest

from vmm import firmware
from vmm.cfgm import CfgNode
from vmm.firmware_config import bootorder_file, fix_rom_checksum, loader_commands
from vmm.serial.backends import SerialBackend
from vmm.vm import Machine

pytestmark = pytest.mark.skipif(not any(p.is_file() for p in firmware.candidates()),
                                reason="no SeaBIOS image (python3 -m vmm.firmware fetches Debian's seabios)")


class Capture(SerialBackend):
    def __init__(self):
        super().__init__()
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data


def _cfg(**values) -> CfgNode:
    cfg = CfgNode()
    cfg.set("RamSize", 32 << 20)
    cfg.set("UUID", "0f0e0d0c-0b0a-4908-8706-050403020100")
    for key, value in values.items():
        cfg.set(key.replace("__", "/"), value)
    return cfg


def _wait(pred, timeout=60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _disk(tmp_path, code: bytes):
    path = tmp_path / "disk.img"
    path.write_bytes((code.ljust(510, b"\0") + b"\x55\xaa").ljust(1 << 20, b"\0"))
    return str(path)


def _with_disk(path: str, **values) -> CfgNode:
    cfg = _cfg(BootOrder__1="HardDisk", **values)
    ctl = cfg.node("Devices/storage/0")
    ctl.set("Name", "SATA")
    ctl.set("Type", "IntelAhci")
    ctl.node("Attachments/0").set("Port", 0)
    ctl.node("Attachments/0").set("Path", path)
    return cfg


def _engine(kind: str) -> str:
    if kind == "hm":
        from tests.unit.vmm.hm.harness import hm_unusable
        reason = hm_unusable()
        if reason:
            pytest.skip(reason)
    return kind


ENGINES = (pytest.param("hm", marks=pytest.mark.kvm), "rem")


@pytest.mark.parametrize("engine", ENGINES)
def test_no_bootable_device_keeps_running_with_the_message_on_screen(caplog, engine):
    caplog.set_level(logging.INFO, logger="vboxpy")
    stops = []
    m = Machine(_cfg(Engine=_engine(engine)), on_stop=lambda *a: stops.append(a))
    try:
        assert m.boot_image is None and "firmware" in m.describe()[3]
        m.start()
        assert _wait(lambda: "No bootable device." in "\n".join(m.vga.text_lines()))
        assert m.running and not stops
        assert any("BIOS: SeaBIOS (version" in r.getMessage() for r in caplog.records)
        assert m.host_bridge.pam[0] == 0x10          # the F segment shadowed and write-protected
        m.power_off().result(10)
    finally:
        m.wait(10)
        m.close()
    assert stops[0][0] == "poweroff"


def test_debug_info_shows_the_live_timers_and_devices():
    m = Machine(_cfg(Engine=_engine("rem")), on_stop=lambda *a: None)
    try:
        m.start()
        assert _wait(lambda: "No bootable device." in "\n".join(m.vga.text_lines()))
        info = m.debug_info()
        assert info[0].startswith("EM: state=RUNNING") and info[1].startswith("TM: now=")
        # the BIOS's 18.2 Hz tick on PIT channel 0
        assert any(line.startswith("TM: timer _Channel._on_timer at ") for line in info)
        assert any(line.startswith("CPU: interrupts_enabled=") for line in info)
        assert any(line.startswith("pit: PitState(") for line in info)
        assert any(line.startswith("pic: ") for line in info)
        m.power_off().result(10)
    finally:
        m.wait(10)
        m.close()


def test_boot_sector_prints_through_int10_then_a_triple_fault_logs_the_screen(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vboxpy")
    msg = b"HELLO FROM THE BOOT SECTOR"
    code = bytearray([
        0xBE, 0x00, 0x00,            # mov si, msg (patched)
        0x2E, 0xAC,                  # next: cs lodsb
        0x84, 0xC0,                  # test al, al
        0x74, 0x06,                  # jz fault
        0xB4, 0x0E,                  # mov ah, 0x0e (teletype)
        0xCD, 0x10,                  # int 0x10
        0xEB, 0xF4,                  # jmp next
        0x0F, 0x01, 0x1E, 0x00, 0x7E,  # fault: lidt [0x7e00] (a zero-limit IDT)
        0xCC,                        # int3 -> triple fault
    ])
    code[1:3] = (0x7C00 + len(code)).to_bytes(2, "little")
    stops = []
    m = Machine(_with_disk(_disk(tmp_path, bytes(code) + msg + b"\0")), on_stop=lambda *a: stops.append(a))
    try:
        m.start()
        assert _wait(lambda: bool(stops))
    finally:
        m.wait(10)
        m.close()
    assert stops[0][0] == "stuck"
    screen = [r.getMessage() for r in caplog.records if "VGA text screen" in r.getMessage()]
    assert screen and "HELLO FROM THE BOOT SECTOR" in screen[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_shadow_ram_and_rom_ignore_stores(tmp_path, engine):
    """The boot sector stores into the write-protected F segment, reads it back at once (same
    translated block) and prints what it saw on COM1."""
    code = bytearray([
        0xB8, 0x00, 0xF0,                     # mov ax, 0xf000
        0x8E, 0xD8,                           # mov ds, ax
        0xA0, 0x00, 0x00,                     # mov al, [0]
        0x88, 0xC3,                           # mov bl, al
        0xF6, 0xD0,                           # not al
        0xA2, 0x00, 0x00,                     # mov [0], al      (F000:0000, read-only shadow)
        0xA0, 0x00, 0x00,                     # mov al, [0]
        0x38, 0xD8,                           # cmp al, bl
        0xB0, 0x53,                           # mov al, 'S'      (same: the store vanished)
        0x74, 0x02,                           # je out
        0xB0, 0x57,                           # mov al, 'W'      (the store went through)
        0xBA, 0xF8, 0x03,                     # out: mov dx, 0x3f8
        0xEE,                                 # out dx, al
        0xFA, 0xF4,                           # cli; hlt
    ])
    com = Capture()
    m = Machine(_with_disk(_disk(tmp_path, bytes(code)), Devices__serial__0__Enabled=True,
                           Engine=_engine(engine)), serial_backends={0: com})
    try:
        m.start()
        assert _wait(lambda: bool(com.data))
        m.power_off().result(10)
    finally:
        m.wait(10)
        m.close()
    assert bytes(com.data) == b"S"


def test_bootorder_lists_disks_in_boot_order_and_halts():
    class Placed:
        controller_type, slot = "IntelAhci", 13

        def boot_devices(self):
            return [(0, 0, False), (2, 0, False)]

    class Scsi:
        controller_type, slot = "VirtioSCSI", 15

        def boot_devices(self):
            return [(1, 0, False)]

    text = bootorder_file(_cfg(BootOrder__1="DVD", BootOrder__2="HardDisk", BootOrder__3="Null"),
                          [Placed(), Scsi()]).decode()
    assert text.split("\n") == ["/pci@i0cf8/*@d/drive@0/disk@0", "/pci@i0cf8/*@d/drive@2/disk@0",
                                "/pci@i0cf8/*@f/*@0/*@1,0", "HALT\0"]
    assert bootorder_file(_cfg(BootOrder__1="Network"), [Placed()]) == b"HALT\0"


def test_table_loader_relocates_every_pointer_and_checksum():
    from vmm.devices.acpi import AcpiConfig, build_acpi_tables
    blob = build_acpi_tables(AcpiConfig(pm_base=0x600, pci=True, pci_irqs=[(13, 0, 10)]), 0).data
    cmds = loader_commands(blob)
    kinds = [struct.unpack_from("<I", c)[0] for c in cmds]
    assert kinds[:2] == [1, 1] and all(len(c) == 128 for c in cmds)
    assert kinds.count(2) == 2 + 2 * 1 + 4 and kinds.count(3) == 2 + 3   # RSDP, RSDT/XSDT entry, FADT
    assert fix_rom_checksum(bytearray(b"\x55\xaa\x01" + bytes(509) + b"junk")) is not None
    assert fix_rom_checksum(bytearray(b"\x55\xaa\x09" + bytes(100))) is None


def test_smbios_structures_carry_virtualbox_strings():
    from vmm.devices import smbios
    anchor, table = smbios.build("0f0e0d0c-0b0a-4908-8706-050403020100")
    assert anchor[:4] == b"_SM_" and sum(anchor) & 0xFF == 0 and sum(anchor[0x10:0x1F]) & 0xFF == 0
    assert struct.unpack_from("<H", anchor, 0x16)[0] == len(table)
    found, pos = {}, 0
    while pos < len(table):                       # walk: formatted area, then strings up to "\0\0"
        stype, length = table[pos], table[pos + 1]
        end = table.index(b"\0\0", pos + length) + 2
        found[stype] = [s.decode() for s in table[pos + length:end].split(b"\0") if s]
        pos = end
    assert list(found) == [0, 1, 2, 3, 11, 127]
    assert found[0][0] == "innotek GmbH" and found[1][:2] == ["innotek GmbH", "VirtualBox"]
    assert found[2][0] == "Oracle Corporation" and found[11][0].startswith("vboxVer_")
    uuid_le = table[table.index(b"\x01\x1b") + 8:table.index(b"\x01\x1b") + 24]
    assert uuid_le == bytes.fromhex("0c0d0e0f0a0b08498706050403020100")
