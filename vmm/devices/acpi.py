"""ACPI for the guest: the tables (RSDP, RSDT/XSDT, FADT, FACS, MADT, DSDT in AML) and the PM registers.

With these Linux can power the VM off (\\_S5 + PM1 control: SLP_TYP/SLP_EN -> `on_power_off`),
reboot through the FADT reset register (-> `on_reset`), react to the fixed-hardware power
button (`press_power_button()`, the console's acpipowerbutton), use the PM timer as a clock
source, and route legacy PCI INTx through \\_SB.PCI0._PRT.

Tables: `build_acpi_tables(AcpiConfig(...), base)` returns one blob to copy to guest-physical
`base` (16-byte aligned; the legacy RSDP search area is 0xE0000-0xFFFFF, or pass `rsdp_address`
in boot_params / the PVH start info).  The RSDP is at `base`; the MADT is built only when
`apic=True`; the DSDT holds \\_S5, a PS/2 keyboard device when `i8042=True`, and a PCI host
bridge (PNP0A03) with _CRS windows and a static _PRT from `pci_irqs` when `pci=True`.

PM register block `AcpiPm` (I/O, 0x20 bytes, at AcpiConfig.pm_base, VirtualBox uses 0x4000):
    0x00 PM1a_STS (16, write 1 to clear)  0x02 PM1a_EN (16)   0x04 PM1a_CNT (16)
    0x08 PM_TMR (32-bit counter at 3.579545 MHz, read-only)   0x10 RESET_REG (8, write 0x01)
The SCI (`sci` IrqLine; IRQ 9, level-triggered) is high while SCI_EN and an enabled status bit
is set.  SCI_EN is set from the start (no SMI_CMD: the machine is always in ACPI mode).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from vmm.devices.base import IrqLine
from vmm.tm import Clock

# ---------------------------------------------------------------------------------------------
# AML encoding (just what the DSDT needs)
# ---------------------------------------------------------------------------------------------


def _pkg_length(body_len: int) -> bytes:
    """PkgLength encoding; the encoded length counts its own bytes."""
    if body_len + 1 < 0x40:
        return bytes((body_len + 1,))
    for extra in (1, 2, 3):
        total = body_len + 1 + extra
        if total < 1 << (4 + 8 * extra):
            out = [(extra << 6) | (total & 0x0F)]
            rest = total >> 4
            for _ in range(extra):
                out.append(rest & 0xFF)
                rest >>= 8
            return bytes(out)
    raise ValueError("AML package too large")


def _name_seg(seg: str) -> bytes:
    if not 1 <= len(seg) <= 4 or not all(c.isalnum() or c == "_" for c in seg) or seg[0].isdigit():
        raise ValueError(f"bad AML name segment {seg!r}")
    return seg.upper().ljust(4, "_").encode("ascii")


def aml_name(path: str) -> bytes:
    """NameString: '\\_SB.PCI0' style paths."""
    prefix = b""
    if path.startswith("\\"):
        prefix, path = b"\\", path[1:]
    while path.startswith("^"):
        prefix, path = prefix + b"^", path[1:]
    segs = [s for s in path.split(".") if s]
    if not segs:
        return prefix + b"\x00"
    body = b"".join(_name_seg(s) for s in segs)
    if len(segs) == 1:
        return prefix + body
    if len(segs) == 2:
        return prefix + b"\x2E" + body
    return prefix + b"\x2F" + bytes((len(segs),)) + body


def aml_int(v: int) -> bytes:
    if v < 0:
        raise ValueError("AML integers are unsigned")
    if v == 0:
        return b"\x00"
    if v == 1:
        return b"\x01"
    if v <= 0xFF:
        return b"\x0A" + bytes((v,))
    if v <= 0xFFFF:
        return b"\x0B" + struct.pack("<H", v)
    if v <= 0xFFFF_FFFF:
        return b"\x0C" + struct.pack("<I", v)
    return b"\x0E" + struct.pack("<Q", v)


def aml_eisa_id(text: str) -> bytes:
    """EISAID("PNP0A03") as the 32-bit compressed id (an integer object)."""
    if len(text) != 7 or not text[:3].isalpha() or not text[:3].isupper():
        raise ValueError(f"bad EISA id {text!r}")
    v = ((ord(text[0]) - 0x40) << 26) | ((ord(text[1]) - 0x40) << 21) | ((ord(text[2]) - 0x40) << 16)
    v |= int(text[3:], 16)
    return aml_int(int.from_bytes(v.to_bytes(4, "big"), "little"))


def aml_name_def(name: str, value: bytes) -> bytes:
    return b"\x08" + aml_name(name) + value


def aml_package(elements: Sequence[bytes]) -> bytes:
    if len(elements) > 255:
        raise ValueError("AML package too long")
    body = bytes((len(elements),)) + b"".join(elements)
    return b"\x12" + _pkg_length(len(body)) + body


def aml_buffer(data: bytes) -> bytes:
    body = aml_int(len(data)) + data
    return b"\x11" + _pkg_length(len(body)) + body


def aml_scope(name: str, terms: Iterable[bytes]) -> bytes:
    body = aml_name(name) + b"".join(terms)
    return b"\x10" + _pkg_length(len(body)) + body


def aml_device(name: str, terms: Iterable[bytes]) -> bytes:
    body = aml_name(name) + b"".join(terms)
    return b"\x5B\x82" + _pkg_length(len(body)) + body


# Resource descriptors for _CRS buffers
def res_io(base: int, length: int) -> bytes:
    return struct.pack("<BBHHBB", 0x47, 0x01, base, base, 0x01, length)


def res_irq(irq: int) -> bytes:
    return struct.pack("<BH", 0x22, 1 << irq)


def res_word_bus(first: int, last: int) -> bytes:
    return struct.pack("<BHBBBHHHHH", 0x88, 13, 2, 0x0C, 0, 0, first, last, 0, last - first + 1)


def res_word_io(first: int, last: int) -> bytes:
    return struct.pack("<BHBBBHHHHH", 0x88, 13, 1, 0x0C, 0x03, 0, first, last, 0, last - first + 1)


def res_dword_memory(first: int, last: int) -> bytes:
    return struct.pack("<BHBBBIIIII", 0x87, 23, 0, 0x0C, 0x03, 0, first, last, 0, last - first + 1)


def res_qword_memory(first: int, last: int) -> bytes:
    return struct.pack("<BHBBBQQQQQ", 0x8A, 43, 0, 0x0C, 0x03, 0, first, last, 0, last - first + 1)


def resource_template(descs: Iterable[bytes]) -> bytes:
    return aml_buffer(b"".join(descs) + b"\x79\x00")


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

PM_TIMER_HZ = 3_579_545
PM_SPAN = 0x20
PM1_STS, PM1_EN, PM1_CNT, PM_TMR, PM_RESET = 0x00, 0x02, 0x04, 0x08, 0x10
RESET_VALUE = 0x01
SLP_TYP_S5 = 5
OEM_ID = b"VBOX  "
CREATOR_ID = b"VBPY"


@dataclass
class AcpiConfig:
    pm_base: int = 0x4000
    sci_irq: int = 9
    cpu_count: int = 1
    apic: bool = False                   # build a MADT (local APICs + one I/O APIC)
    lapic_address: int = 0xFEE0_0000
    ioapic_id: int | None = None         # default: cpu_count
    ioapic_address: int = 0xFEC0_0000
    ioapic_gsi_base: int = 0
    irq0_to_gsi2: bool = True            # the usual ISA IRQ0 -> GSI2 override
    pci: bool = False                    # \_SB.PCI0 host bridge
    pci_irqs: list[tuple[int, int, int]] = field(default_factory=list)   # (slot, pin 0-3, irq/GSI)
    pci_mmio: tuple[int, int] = (0xE000_0000, 0xFEBF_FFFF)               # 32-bit window, inclusive
    pci_mmio64: tuple[int, int] | None = None
    i8042: bool = True                   # declare the PS/2 keyboard controller (and the FADT flag)
    vga: bool = False                    # a VGA at the legacy ports (FADT: "VGA not present" if not)
    pm_timer_32bit: bool = True

    def validate(self) -> None:
        if not 0 < self.pm_base <= 0xFFFF - PM_SPAN:
            raise ValueError(f"ACPI PM base {self.pm_base:#x} out of the I/O space")
        if not 0 <= self.sci_irq <= 15:
            raise ValueError(f"SCI IRQ {self.sci_irq} is not an ISA IRQ")
        if not 1 <= self.cpu_count <= 255:
            raise ValueError(f"CPU count {self.cpu_count} out of range")
        for slot, pin, irq in self.pci_irqs:
            if not (0 <= slot <= 31 and 0 <= pin <= 3 and 0 <= irq <= 0xFFFF_FFFF):
                raise ValueError(f"bad PCI IRQ route (slot {slot}, pin {pin}, irq {irq})")
        lo, hi = self.pci_mmio
        if not 0 <= lo < hi <= 0xFFFF_FFFF:
            raise ValueError("bad PCI MMIO window")


@dataclass
class AcpiTables:
    base: int
    data: bytes
    rsdp_address: int
    tables: dict[str, int]           # signature -> guest-physical address

    def write_to(self, memory) -> None:
        """Copy the blob into guest RAM (a vmm.memory.GuestMemory)."""
        memory.write(self.base, self.data)


def _checksum(data: bytes) -> int:
    return (-sum(data)) & 0xFF


def _table(sig: bytes, revision: int, body: bytes, table_id: bytes) -> bytes:
    length = 36 + len(body)
    hdr = struct.pack("<4sIBB6s8sI4sI", sig, length, revision, 0, OEM_ID, table_id.ljust(8, b" "), 1,
                      CREATOR_ID, 1)
    raw = bytearray(hdr + body)
    raw[9] = _checksum(raw)
    return bytes(raw)


def _gas(space: int, bit_width: int, access: int, address: int) -> bytes:
    return struct.pack("<BBBBQ", space, bit_width, 0, access, address)


def build_dsdt(cfg: AcpiConfig) -> bytes:
    terms = [aml_name_def("\\_S5", aml_package([aml_int(SLP_TYP_S5), aml_int(SLP_TYP_S5),
                                                 aml_int(0), aml_int(0)]))]
    sb: list[bytes] = []
    if cfg.pci:
        crs = [res_word_bus(0, 255), res_io(0xCF8, 8), res_word_io(0x0000, 0x0CF7),
               res_word_io(0x0D00, 0xFFFF),
               res_dword_memory(0xA0000, 0xBFFFF), res_dword_memory(*cfg.pci_mmio)]
        if cfg.pci_mmio64 is not None:
            crs.append(res_qword_memory(*cfg.pci_mmio64))
        prt = [aml_package([aml_int((slot << 16) | 0xFFFF), aml_int(pin), aml_int(0), aml_int(irq)])
               for slot, pin, irq in cfg.pci_irqs]
        sb.append(aml_device("PCI0", [
            aml_name_def("_HID", aml_eisa_id("PNP0A03")),
            aml_name_def("_UID", aml_int(0)),
            aml_name_def("_BBN", aml_int(0)),
            aml_name_def("_CRS", resource_template(crs)),
            aml_name_def("_PRT", aml_package(prt)),
        ]))
    if cfg.i8042:
        sb.append(aml_device("PS2K", [
            aml_name_def("_HID", aml_eisa_id("PNP0303")),
            aml_name_def("_CRS", resource_template([res_io(0x60, 1), res_io(0x64, 1), res_irq(1)])),
        ]))
    if sb:
        terms.append(aml_scope("\\_SB", sb))
    return _table(b"DSDT", 2, b"".join(terms), b"VBOXBIOS")


def _facs() -> bytes:
    return struct.pack("<4sIIIIIQB3sI24s", b"FACS", 64, 0, 0, 0, 0, 0, 2, b"\0" * 3, 0, b"\0" * 24)


def _fadt(cfg: AcpiConfig, facs: int, dsdt: int) -> bytes:
    pm = cfg.pm_base
    # WBINVD, C1, no sleep button, FIX_RTC, reset
    flags = (1 << 0) | (1 << 2) | (1 << 5) | (1 << 6) | (1 << 10)
    if cfg.pm_timer_32bit:
        flags |= 1 << 8                                             # TMR_VAL_EXT
    boot_arch = 0x0001 | 0x0010                                     # legacy devices; no PCIe ASPM
    if cfg.i8042:
        boot_arch |= 0x0002                                         # 8042 present
    if not cfg.vga:
        boot_arch |= 0x0004                                         # do not probe for a VGA
    if not cfg.apic:
        boot_arch |= 0x0008                                         # no APIC, so no MSI
    body = bytearray(244 - 36)

    def put(off: int, fmt: str, *vals: int) -> None:
        struct.pack_into("<" + fmt, body, off - 36, *vals)

    put(36, "I", facs)
    put(40, "I", dsdt)
    put(45, "B", 0)                       # preferred PM profile: unspecified
    put(46, "H", cfg.sci_irq)
    put(56, "I", pm + PM1_STS)
    put(64, "I", pm + PM1_CNT)
    put(76, "I", pm + PM_TMR)
    put(88, "BBBB", 4, 2, 0, 4)           # PM1_EVT_LEN, PM1_CNT_LEN, PM2_CNT_LEN, PM_TMR_LEN
    put(96, "HH", 101, 1001)              # no C2/C3
    put(108, "B", 0x32)                   # RTC century register
    put(109, "H", boot_arch)
    put(112, "I", flags)
    body[116 - 36:128 - 36] = _gas(1, 8, 1, pm + PM_RESET)
    put(128, "B", RESET_VALUE)
    put(132, "Q", facs)
    put(140, "Q", dsdt)
    body[148 - 36:160 - 36] = _gas(1, 32, 0, pm + PM1_STS)
    body[172 - 36:184 - 36] = _gas(1, 16, 0, pm + PM1_CNT)
    body[208 - 36:220 - 36] = _gas(1, 32, 0, pm + PM_TMR)
    return _table(b"FACP", 4, bytes(body), b"VBOXFACP")


def _madt(cfg: AcpiConfig) -> bytes:
    body = bytearray(struct.pack("<II", cfg.lapic_address, 1))     # PCAT_COMPAT: 8259s present
    for cpu in range(cfg.cpu_count):
        body += struct.pack("<BBBBI", 0, 8, cpu, cpu, 1)
    ioapic_id = cfg.cpu_count if cfg.ioapic_id is None else cfg.ioapic_id
    body += struct.pack("<BBBBII", 1, 12, ioapic_id & 0xFF, 0, cfg.ioapic_address, cfg.ioapic_gsi_base)
    if cfg.irq0_to_gsi2:
        body += struct.pack("<BBBBIH", 2, 10, 0, 0, 2, 0)
    body += struct.pack("<BBBBIH", 2, 10, 0, cfg.sci_irq, cfg.sci_irq, 0x000D)  # SCI: level, active high
    body += struct.pack("<BBBHB", 4, 6, 0xFF, 0, 1)                              # LINT1 is NMI on all CPUs
    return _table(b"APIC", 3, bytes(body), b"VBOXAPIC")


def build_acpi_tables(cfg: AcpiConfig, base: int) -> AcpiTables:
    cfg.validate()
    if base % 16 or base < 0:
        raise ValueError(f"ACPI tables base {base:#x} must be 16-byte aligned")
    blob = bytearray()
    where: dict[str, int] = {}

    def place(sig: str, data: bytes, align: int = 16) -> int:
        blob.extend(b"\0" * (-len(blob) % align))
        addr = base + len(blob)
        blob.extend(data)
        where[sig] = addr
        return addr

    place("RSDP", bytes(36))                       # filled in at the end
    facs = place("FACS", _facs(), 64)
    dsdt = place("DSDT", build_dsdt(cfg))
    entries = [place("FACP", _fadt(cfg, facs, dsdt))]
    if cfg.apic:
        entries.append(place("APIC", _madt(cfg)))
    rsdt = place("RSDT", _table(b"RSDT", 1, struct.pack(f"<{len(entries)}I", *entries), b"VBOXRSDT"))
    xsdt = place("XSDT", _table(b"XSDT", 1, struct.pack(f"<{len(entries)}Q", *entries), b"VBOXXSDT"))
    rsdp = bytearray(struct.pack("<8sB6sBII", b"RSD PTR ", 0, OEM_ID, 2, rsdt, 36)
                     + struct.pack("<QB3s", xsdt, 0, b"\0" * 3))
    rsdp[8] = _checksum(rsdp[:20])
    rsdp[32] = _checksum(rsdp)
    blob[0:36] = rsdp
    return AcpiTables(base=base, data=bytes(blob), rsdp_address=base, tables=where)


# ---------------------------------------------------------------------------------------------
# PM registers
# ---------------------------------------------------------------------------------------------

STS_TMR, STS_GBL, STS_PWRBTN, STS_SLPBTN, STS_RTC, STS_WAK = 0x0001, 0x0020, 0x0100, 0x0200, 0x0400, 0x8000
_STS_EVENTS = STS_TMR | STS_GBL | STS_PWRBTN | STS_SLPBTN | STS_RTC
_STS_WRITABLE = _STS_EVENTS | 0x0010 | 0x4000 | STS_WAK
CNT_SCI_EN, CNT_SLP_EN = 0x0001, 0x2000
_NS = 1_000_000_000
_REGS = ((PM1_STS, 2), (PM1_EN, 2), (PM1_CNT, 2), (PM_TMR, 4), (PM_RESET, 1))


@dataclass
class AcpiPmState:
    sts: int = 0
    en: int = 0
    cnt: int = CNT_SCI_EN
    tmr_eval_ns: int = 0
    tmr_deadline: int | None = None


class AcpiPm:
    """PM1a event/control, PM timer and reset register."""

    SPAN = PM_SPAN

    def __init__(self, sci: IrqLine, clock: Clock, on_power_off: Callable[[], None],
                 on_reset: Callable[[], None] | None = None, timer_32bit: bool = True):
        self.sci = sci
        self.clock = clock
        self.on_power_off = on_power_off
        self.on_reset = on_reset
        self._tmr_bits = 32 if timer_32bit else 24
        self.s = AcpiPmState(tmr_eval_ns=clock.now_ns())
        self._button_lock = threading.Lock()
        self._button_presses = 0
        self._button_timer = clock.new_timer(self._deliver_button)
        self._tmr_timer = clock.new_timer(self._on_tmr_overflow)

    # -- host side --------------------------------------------------------------------------------
    def press_power_button(self) -> None:
        """Any thread: the console's power button; delivered on the device thread."""
        with self._button_lock:
            self._button_presses += 1
        self._button_timer.arm(self.clock.now_ns())

    def _deliver_button(self) -> None:
        with self._button_lock:
            presses, self._button_presses = self._button_presses, 0
        if presses:
            self.s.sts |= STS_PWRBTN
            self._update_sci()

    # -- PM timer ---------------------------------------------------------------------------------
    def timer_value(self) -> int:
        return (self.clock.now_ns() * PM_TIMER_HZ // _NS) & ((1 << self._tmr_bits) - 1)

    def _msb_epoch(self, ns: int) -> int:
        return (ns * PM_TIMER_HZ // _NS) >> (self._tmr_bits - 1)

    def _catch_up_tmr(self) -> None:
        now = self.clock.now_ns()
        if self._msb_epoch(now) != self._msb_epoch(self.s.tmr_eval_ns):
            self.s.sts |= STS_TMR
        self.s.tmr_eval_ns = now

    def _schedule_tmr(self) -> None:
        if self.s.en & STS_TMR and not self.s.sts & STS_TMR:
            half = 1 << (self._tmr_bits - 1)
            nxt_tick = (self._msb_epoch(self.clock.now_ns()) + 1) * half
            self.s.tmr_deadline = -(-nxt_tick * _NS // PM_TIMER_HZ)
            self._tmr_timer.arm(self.s.tmr_deadline)
        else:
            self.s.tmr_deadline = None
            self._tmr_timer.cancel()

    def _on_tmr_overflow(self) -> None:
        self.s.tmr_deadline = None
        self._catch_up_tmr()
        self._update_sci()

    # -- SCI --------------------------------------------------------------------------------------
    def _update_sci(self) -> None:
        s = self.s
        self.sci.set_level(bool(s.cnt & CNT_SCI_EN and s.sts & s.en & _STS_EVENTS))
        self._schedule_tmr()

    # -- registers --------------------------------------------------------------------------------
    def _reg_value(self, reg: int) -> int:
        if reg == PM1_STS:
            self._catch_up_tmr()
            return self.s.sts
        if reg == PM1_EN:
            return self.s.en
        if reg == PM1_CNT:
            return self.s.cnt & ~CNT_SLP_EN
        if reg == PM_TMR:
            return self.timer_value()
        return 0

    def read(self, offset: int, size: int) -> int:
        if size not in (1, 2, 4) or offset < 0 or offset + size > PM_SPAN:
            return (1 << (8 * size)) - 1 if size in (1, 2, 4) else 0xFF
        if offset == PM_TMR and size == 4:
            return self.timer_value()
        v = 0
        for i in range(size):
            pos = offset + i
            for reg, width in _REGS:
                if reg <= pos < reg + width:
                    v |= ((self._reg_value(reg) >> (8 * (pos - reg))) & 0xFF) << (8 * i)
                    break
        return v

    def write(self, offset: int, size: int, value: int) -> None:
        if size not in (1, 2, 4) or offset < 0 or offset + size > PM_SPAN:
            return
        for reg, width in _REGS:
            lo, hi = max(offset, reg), min(offset + size, reg + width)
            if lo >= hi:
                continue
            mask = val = 0
            for pos in range(lo, hi):
                shift = 8 * (pos - reg)
                mask |= 0xFF << shift
                val |= ((value >> (8 * (pos - offset))) & 0xFF) << shift
            self._write_reg(reg, mask, val)
        self._update_sci()

    def _write_reg(self, reg: int, mask: int, val: int) -> None:
        s = self.s
        if reg == PM1_STS:
            self._catch_up_tmr()
            s.sts &= ~(val & mask & _STS_WRITABLE)
        elif reg == PM1_EN:
            s.en = (s.en & ~mask) | (val & mask & (STS_TMR | STS_GBL | STS_PWRBTN | STS_SLPBTN | STS_RTC))
        elif reg == PM1_CNT:
            s.cnt = (s.cnt & ~mask) | (val & mask & 0x1C07)
            if val & mask & CNT_SLP_EN:
                self._sleep((s.cnt >> 10) & 7)
        elif reg == PM_RESET and val & 0xFF == RESET_VALUE and self.on_reset is not None:
            self.on_reset()

    def _sleep(self, slp_typ: int) -> None:
        if slp_typ == SLP_TYP_S5:
            self.on_power_off()
        # other sleep types are not offered in the DSDT: a guest asking for them keeps running

    # -- saved state ------------------------------------------------------------------------------
    def get_state(self) -> AcpiPmState:
        self._catch_up_tmr()
        return AcpiPmState(**vars(self.s))

    def set_state(self, state: AcpiPmState) -> None:
        self.s = AcpiPmState(**vars(state))
        self.s.cnt &= 0x1C07
        self._update_sci()
