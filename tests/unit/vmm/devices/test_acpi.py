"""ACPI tables (parsed back field by field, AML checked byte-exact) and the PM register block."""

import shutil
import struct
import subprocess
import threading

import pytest

from vmm.devices.acpi import (
    PM_TIMER_HZ,
    RESET_VALUE,
    SLP_TYP_S5,
    AcpiConfig,
    AcpiPm,
    _pkg_length,
    aml_eisa_id,
    aml_int,
    aml_name,
    aml_package,
    build_acpi_tables,
    build_dsdt,
)
from vmm.devices.base import IrqLine
from vmm.memory import GuestMemory
from vmm.tm import FakeClock

BASE = 0xE0000


def _table_at(t, addr):
    off = addr - t.base
    sig = t.data[off:off + 4]
    length = struct.unpack_from("<I", t.data, off + 4)[0]
    raw = t.data[off:off + length]
    assert sum(raw) & 0xFF == 0, f"{sig} checksum"
    return sig, raw


def test_rsdp_rsdt_xsdt_and_checksums():
    t = build_acpi_tables(AcpiConfig(), BASE)
    rsdp = t.data[:36]
    assert t.rsdp_address == BASE and rsdp[:8] == b"RSD PTR "
    assert sum(rsdp[:20]) & 0xFF == 0 and sum(rsdp) & 0xFF == 0
    oem, rev, rsdt, length, xsdt = struct.unpack_from("<6sBIIQ", rsdp, 9)
    assert (oem, rev, length) == (b"VBOX  ", 2, 36)
    sig, raw = _table_at(t, rsdt)
    assert sig == b"RSDT" and struct.unpack_from("<I", raw, 36) == (t.tables["FACP"],) and len(raw) == 40
    sig, raw = _table_at(t, xsdt)
    assert sig == b"XSDT" and struct.unpack_from("<Q", raw, 36) == (t.tables["FACP"],) and len(raw) == 44
    assert "APIC" not in t.tables                   # no MADT without an APIC
    facs = t.tables["FACS"]
    assert facs % 64 == 0 and t.data[facs - BASE:facs - BASE + 4] == b"FACS"
    assert all(a % 16 == 0 for a in t.tables.values())


def test_fadt_points_at_the_pm_block_and_reset_register():
    cfg = AcpiConfig(pm_base=0x4000, sci_irq=9)
    t = build_acpi_tables(cfg, BASE)
    sig, f = _table_at(t, t.tables["FACP"])
    assert sig == b"FACP" and len(f) == 244 and f[8] == 4
    facs, dsdt = struct.unpack_from("<II", f, 36)
    assert (facs, dsdt) == (t.tables["FACS"], t.tables["DSDT"])
    assert struct.unpack_from("<H", f, 46)[0] == 9
    assert struct.unpack_from("<I", f, 48)[0] == 0                       # no SMI_CMD: always ACPI mode
    assert struct.unpack_from("<I", f, 56)[0] == 0x4000
    assert struct.unpack_from("<I", f, 64)[0] == 0x4004
    assert struct.unpack_from("<I", f, 76)[0] == 0x4008
    assert tuple(f[88:92]) == (4, 2, 0, 4)
    assert f[108] == 0x32
    assert struct.unpack_from("<H", f, 109)[0] == 0x1F                   # legacy, 8042, no VGA/MSI/ASPM
    t2 = build_acpi_tables(AcpiConfig(apic=True, vga=True, i8042=False), BASE)
    _, f2 = _table_at(t2, t2.tables["FACP"])
    assert struct.unpack_from("<H", f2, 109)[0] == 0x11
    flags = struct.unpack_from("<I", f, 112)[0]
    # reset reg, 32-bit timer, fixed PWRBTN
    assert flags & (1 << 10) and flags & (1 << 8) and not flags & (1 << 4)
    space, width, _, access, addr = struct.unpack_from("<BBBBQ", f, 116)
    assert (space, width, addr, f[128]) == (1, 8, 0x4010, RESET_VALUE)
    assert struct.unpack_from("<QQ", f, 132) == (facs, dsdt)
    assert struct.unpack_from("<BBBBQ", f, 208)[4] == 0x4008


def test_madt_with_apic():
    t = build_acpi_tables(AcpiConfig(apic=True, cpu_count=3), BASE)
    assert struct.unpack_from("<I", t.data, t.tables["RSDT"] - BASE + 36 + 4)[0] == t.tables["APIC"]
    sig, m = _table_at(t, t.tables["APIC"])
    assert sig == b"APIC"
    assert struct.unpack_from("<II", m, 36) == (0xFEE00000, 1)
    entries = []
    off = 44
    while off < len(m):
        entries.append(bytes(m[off:off + m[off + 1]]))
        off += m[off + 1]
    lapics = [e for e in entries if e[0] == 0]
    assert [(e[2], e[3]) for e in lapics] == [(0, 0), (1, 1), (2, 2)]
    ioapic = [e for e in entries if e[0] == 1][0]
    assert struct.unpack("<BBBBII", ioapic)[2:] == (3, 0, 0xFEC00000, 0)
    isos = [struct.unpack("<BBBBIH", e)[3:] for e in entries if e[0] == 2]
    assert (0, 2, 0) in isos and (9, 9, 0x0D) in isos


def test_dsdt_s5_prt_and_crs_bytes():
    cfg = AcpiConfig(pci=True, pci_irqs=[(1, 0, 11), (2, 3, 10)])
    d = build_dsdt(cfg)
    assert d[:4] == b"DSDT" and sum(d) & 0xFF == 0
    s5 = b"\x08\\_S5_" + aml_package([aml_int(SLP_TYP_S5)] * 2 + [aml_int(0)] * 2)
    assert s5 in d
    prt0 = aml_package([aml_int(0x0001FFFF), aml_int(0), aml_int(0), aml_int(11)])
    prt1 = aml_package([aml_int(0x0002FFFF), aml_int(3), aml_int(0), aml_int(10)])
    assert b"_PRT" + aml_package([prt0, prt1])[:1] in d and prt0 in d and prt1 in d
    assert b"PCI0" in d and aml_eisa_id("PNP0A03") in d
    # the 32-bit window is in _CRS: DWordMemory min/max
    assert struct.pack("<II", 0xE0000000, 0xFEBFFFFF) in d
    plain = build_dsdt(AcpiConfig(pci=False, i8042=False))
    assert b"PCI0" not in plain and b"PS2K" not in plain and s5 in plain


@pytest.mark.skipif(shutil.which("iasl") is None, reason="iasl (acpica-tools) not installed")
def test_dsdt_disassembles_and_recompiles_with_iasl(tmp_path):
    cfg = AcpiConfig(pci=True, pci_irqs=[(1, 0, 11), (1, 1, 10)], pci_mmio64=(1 << 36, (1 << 37) - 1))
    (tmp_path / "dsdt.dat").write_bytes(build_dsdt(cfg))
    subprocess.run(["iasl", "-d", "dsdt.dat"], cwd=tmp_path, check=True, capture_output=True)
    dsl = (tmp_path / "dsdt.dsl").read_text()
    assert 'EisaId ("PNP0A03")' in dsl and "Name (_PRT" in dsl and "QWordMemory" in dsl
    r = subprocess.run(["iasl", "dsdt.dsl"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and "0 Errors, 0 Warnings" in r.stdout + r.stderr


def test_aml_encodings():
    assert _pkg_length(0x3E) == b"\x3F"
    assert _pkg_length(0x3F) == bytes((0x41, 0x04))          # 0x41 total, 2 bytes
    assert _pkg_length(0xFFD) == bytes((0x4F, 0xFF))
    assert _pkg_length(0xFFE) == bytes((0x81, 0x00, 0x01))   # 0x1001 total, 3 bytes
    assert aml_name("\\_SB.PCI0") == b"\\\x2E_SB_PCI0"
    assert aml_name("A.B.C") == b"\x2F\x03A___B___C___"
    assert aml_int(0) == b"\x00" and aml_int(1) == b"\x01" and aml_int(0x12) == b"\x0A\x12"
    assert (aml_int(0x1234) == b"\x0B\x34\x12"
            and aml_int(1 << 32) == b"\x0E" + (1 << 32).to_bytes(8, "little"))
    assert aml_eisa_id("PNP0A03") == b"\x0C" + (0x030AD041).to_bytes(4, "little")
    for bad in ("1ABC", "TOOLONG", "a-b"):
        with pytest.raises(ValueError):
            aml_name(bad)


def test_config_validation_and_placement():
    with pytest.raises(ValueError):
        build_acpi_tables(AcpiConfig(), 0xE0008)
    with pytest.raises(ValueError):
        build_acpi_tables(AcpiConfig(pci=True, pci_irqs=[(32, 0, 11)]), BASE)
    with pytest.raises(ValueError):
        build_acpi_tables(AcpiConfig(sci_irq=20), BASE)
    t = build_acpi_tables(AcpiConfig(apic=True), BASE)
    mem = GuestMemory(1 << 20)
    t.write_to(mem)
    assert mem.read(BASE, 8) == b"RSD PTR "
    assert mem.read(t.tables["DSDT"], 4) == b"DSDT"


# ---- PM registers ---------------------------------------------------------------------------------

def _pm(**kw):
    clock = FakeClock()
    sci = IrqLine()
    ev = []
    pm = AcpiPm(sci, clock, on_power_off=lambda: ev.append("off"), on_reset=lambda: ev.append("reset"), **kw)
    return clock, sci, pm, ev


def test_pm_timer_frequency_and_width():
    clock, sci, pm, _ = _pm()
    t0 = pm.read(8, 4)
    clock.advance(1_000_000_000)
    assert (pm.read(8, 4) - t0) & 0xFFFFFFFF == PM_TIMER_HZ
    clock.advance(250_000_000)
    assert pm.read(8, 4) == 1_250_000_000 * PM_TIMER_HZ // 1_000_000_000
    v = pm.read(8, 4)
    assert pm.read(8, 2) == v & 0xFFFF and pm.read(10, 1) == (v >> 16) & 0xFF
    clock24, _, pm24, _ = _pm(timer_32bit=False)
    clock24.advance(10_000_000_000)
    assert pm24.read(8, 4) == (10 * PM_TIMER_HZ) & 0xFFFFFF


def test_power_button_raises_sci_until_cleared():
    clock, sci, pm, _ = _pm()
    assert pm.read(4, 2) & 1                  # SCI_EN from the start
    pm.press_power_button()
    clock.advance(0)
    assert pm.read(0, 2) & 0x0100 and not sci.level     # status set, not enabled
    pm.write(2, 2, 0x0100)                    # PWRBTN_EN
    assert sci.level
    pm.write(0, 2, 0x0100)                    # write 1 to clear
    assert not sci.level and not pm.read(0, 2) & 0x0100
    t = threading.Thread(target=pm.press_power_button)
    t.start()
    t.join()
    assert not sci.level                      # delivered only on the device thread
    clock.run_due()
    assert sci.level
    pm.write(4, 2, 0x0000)                    # SCI_EN off masks the SCI
    assert not sci.level


def test_s5_power_off_and_other_sleep_types():
    clock, sci, pm, ev = _pm()
    pm.write(4, 2, 0x0001 | (SLP_TYP_S5 << 10))       # ACPICA writes SLP_TYP first...
    assert ev == []
    pm.write(4, 2, 0x0001 | (SLP_TYP_S5 << 10) | 0x2000)   # ...then SLP_EN
    assert ev == ["off"]
    assert not pm.read(4, 2) & 0x2000                 # SLP_EN reads as 0
    pm.write(4, 2, 0x0001 | (1 << 10) | 0x2000)       # S1 is not offered: ignored
    assert ev == ["off"]
    pm.write(5, 1, ((SLP_TYP_S5 << 10) | 0x2000) >> 8)  # byte access to the high half
    assert ev == ["off", "off"]


def test_reset_register():
    clock, sci, pm, ev = _pm()
    pm.write(0x10, 1, 0x02)
    assert ev == []
    pm.write(0x10, 1, RESET_VALUE)
    assert ev == ["reset"]


def test_timer_overflow_status_and_sci():
    clock, sci, pm, _ = _pm(timer_32bit=False)
    half_ns = (1 << 23) * 1_000_000_000 // PM_TIMER_HZ
    pm.write(2, 2, 0x0001)                    # TMR_EN
    assert clock.next_deadline() is not None
    clock.advance(half_ns - 1000)
    assert not sci.level
    clock.advance(2000)
    assert sci.level and pm.read(0, 2) & 1
    pm.write(0, 2, 0x0001)
    assert not sci.level
    pm.write(2, 2, 0)                         # polled: status still set lazily, no timer
    assert clock.next_deadline() is None
    clock.advance(half_ns)
    assert pm.read(0, 1) & 1 and not sci.level


def test_pm_hostile_accesses_and_state_round_trip():
    clock, sci, pm, ev = _pm()
    pm.write(0x1F, 2, 0xFFFF)
    pm.write(4, 3, 0xFFFFFF)
    pm.write(-1, 1, 0)
    assert pm.read(0x20, 1) == 0xFF and pm.read(0, 8) == 0xFF and ev == []
    assert pm.read(0x14, 4) == 0
    pm.write(2, 2, 0x0101)
    pm.press_power_button()
    clock.advance(0)
    st = pm.get_state()
    clock2_sci = IrqLine()
    pm2 = AcpiPm(clock2_sci, clock, on_power_off=lambda: None)
    pm2.set_state(st)
    assert pm2.get_state() == st and clock2_sci.level
