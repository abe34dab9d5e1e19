"""The local APIC of one vCPU (xAPIC, memory-mapped at IA32_APIC_BASE, PC: 0xFEE00000) and the
APIC bus that connects the local APICs, the IO-APIC and MSI writers.

With the APIC on, EM asks the vCPU's `LocalApic` which vector to inject (`has_interrupt()` /
`acknowledge()`), as it asks the 8259A pair without one.  The 8259A reaches the CPU through
LINT0 programmed as ExtINT ("virtual wire"): the APIC then hands the PIC's vector over.
The register page (4 KiB, 32-bit registers on 16-byte boundaries), after the Intel SDM vol. 3
chapter "Advanced Programmable Interrupt Controller" and VirtualBox's APIC (VMM/VMMAll/APICAll.cpp):

    0x020 ID   0x030 version (RO)   0x080 TPR   0x090 APR (RO)   0x0A0 PPR (RO)   0x0B0 EOI (WO)
    0x0D0 LDR  0x0E0 DFR   0x0F0 SVR (bit 8: software enable)   0x100-0x170 ISR   0x180-0x1F0 TMR
    0x200-0x270 IRR   0x280 ESR   0x300/0x310 ICR low/high   0x320 LVT timer   0x330 thermal
    0x340 performance counters   0x350 LINT0   0x360 LINT1   0x370 error
    0x380 timer initial count   0x390 current count (RO)   0x3E0 divide configuration

The timer counts at TIMER_HZ (VirtualBox and KVM clock their APIC timer at 1 GHz) divided by the
divide configuration, one-shot or periodic; TSC-deadline mode is not offered (CPUID says so).
Reserved registers read 0 and ignore writes; accesses that are not aligned 32-bit ones read the
bytes of the register they fall in and are dropped on write; a guest cannot crash the model.
Every method runs on the thread that owns the devices (EM's vCPU thread, or a test).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from vmm.tm import Clock

log = logging.getLogger(__name__)

APIC_BASE_DEFAULT = 0xFEE0_0000
APIC_PAGE = 0x1000
TIMER_HZ = 1_000_000_000
APIC_VERSION = 0x14                 # integrated APIC (Pentium 4 / Xeon class), as VirtualBox reports
MAX_LVT = 5                         # timer, thermal, perf, LINT0, LINT1, error

# IA32_APIC_BASE (MSR 0x1B)
MSR_IA32_APIC_BASE = 0x1B
BASE_BSP = 1 << 8
BASE_X2APIC = 1 << 10
BASE_ENABLE = 1 << 11
BASE_ADDR_MASK = 0xF_FFFF_F000

# register offsets
REG_ID, REG_VERSION, REG_TPR, REG_APR, REG_PPR, REG_EOI = 0x020, 0x030, 0x080, 0x090, 0x0A0, 0x0B0
REG_RRD, REG_LDR, REG_DFR, REG_SVR = 0x0C0, 0x0D0, 0x0E0, 0x0F0
REG_ISR, REG_TMR, REG_IRR, REG_ESR = 0x100, 0x180, 0x200, 0x280
REG_ICR_LO, REG_ICR_HI = 0x300, 0x310
REG_LVT_TIMER, REG_LVT_THERMAL, REG_LVT_PERF = 0x320, 0x330, 0x340
REG_LVT_LINT0, REG_LVT_LINT1, REG_LVT_ERROR = 0x350, 0x360, 0x370
REG_TIMER_INITIAL, REG_TIMER_CURRENT, REG_TIMER_DIVIDE = 0x380, 0x390, 0x3E0
LVT_REGS = (REG_LVT_TIMER, REG_LVT_THERMAL, REG_LVT_PERF, REG_LVT_LINT0, REG_LVT_LINT1, REG_LVT_ERROR)
LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR = range(6)

SVR_ENABLE = 1 << 8
SVR_FOCUS_DISABLED = 1 << 9
SVR_WRITABLE = 0xFF | SVR_ENABLE | SVR_FOCUS_DISABLED

LVT_MASKED = 1 << 16
LVT_LEVEL = 1 << 15                 # trigger mode (LINT0/LINT1 only)
LVT_REMOTE_IRR = 1 << 14
LVT_DELIVERY_STATUS = 1 << 12
TIMER_PERIODIC = 1 << 17
# writable bits of each LVT: vector, delivery mode (where it has one), polarity/trigger (LINTn), mask
_LVT_WRITABLE = (0x0003_00FF | LVT_MASKED,              # timer: vector, mode (bits 17-18), mask
                 0x0000_07FF | LVT_MASKED,              # thermal: vector, delivery mode
                 0x0000_07FF | LVT_MASKED,              # performance counters
                 0x0000_A7FF | LVT_MASKED,              # LINT0: + polarity, trigger mode
                 0x0000_A7FF | LVT_MASKED,              # LINT1
                 0x0000_00FF | LVT_MASKED)              # error: vector only

# delivery modes (ICR, LVT, IO-APIC redirection entries, MSI data)
DM_FIXED, DM_LOWEST, DM_SMI, DM_NMI, DM_INIT, DM_SIPI, DM_EXTINT = 0, 1, 2, 4, 5, 6, 7
ICR_DEST_LOGICAL = 1 << 11
ICR_DELIVERY_STATUS = 1 << 12
ICR_LEVEL_ASSERT = 1 << 14
ICR_TRIGGER_LEVEL = 1 << 15
ICR_LO_WRITABLE = 0x000C_CFFF        # vector, mode, dest mode, level, trigger, shorthand
SH_NONE, SH_SELF, SH_ALL, SH_OTHERS = 0, 1, 2, 3

# ESR bits (the ones an xAPIC without checksum errors can set)
ESR_SEND_ILLEGAL_VECTOR = 1 << 5
ESR_RECV_ILLEGAL_VECTOR = 1 << 6
ESR_ILLEGAL_REGISTER = 1 << 7

MIN_PERIOD_NS = 100_000              # a periodic timer never fires more often than every 100 us


_this_cpu = threading.local()       # the local APIC of the vCPU whose thread is running


def _highest(bits: int) -> int:
    """The highest set bit of a 256-bit vector register, -1 if none."""
    return bits.bit_length() - 1


@dataclass
class LocalApicState:
    apic_base: int = APIC_BASE_DEFAULT | BASE_ENABLE
    id: int = 0
    tpr: int = 0
    ldr: int = 0
    dfr: int = 0xFFFF_FFFF
    svr: int = 0xFF
    # 256-bit vector registers: ints in the live device, 32-byte little-endian bitmaps in saved state
    irr: int | bytes = 0
    isr: int | bytes = 0
    tmr: int | bytes = 0
    esr: int = 0                     # what the guest reads
    esr_pending: int = 0             # errors since the last ESR write
    icr_lo: int = 0
    icr_hi: int = 0
    lvt: list[int] = field(default_factory=lambda: [LVT_MASKED] * 6)
    timer_initial: int = 0
    timer_divide: int = 0
    timer_start_ns: int = 0          # when the current count was last equal to the initial count
    timer_running: bool = False
    lint_levels: int = 0             # bit 0: LINT0 input, bit 1: LINT1 input
    nmi_pending: bool = False
    extint_message: bool = False     # an ExtINT message (IO-APIC) waits for the 8259's vector
    init_pending: bool = False
    sipi_vector: int | None = None


class ApicBus:
    """The APIC bus: local APICs by vCPU, interrupt messages from the IO-APIC, IPIs and MSIs.

    `deliver()` is the one path a message takes (ICR, IO-APIC redirection entry, MSI write);
    `on_eoi(vector)` listeners (the IO-APIC) hear level-triggered EOIs broadcast by a local APIC.
    """

    def __init__(self) -> None:
        self.apics: list[LocalApic] = []
        self.eoi_listeners: list[Callable[[int], None]] = []

    def attach(self, apic: LocalApic) -> None:
        self.apics.append(apic)
        apic.bus = self

    def broadcast_eoi(self, vector: int) -> None:
        for listener in self.eoi_listeners:
            listener(vector)

    def targets(self, dest: int, logical: bool, shorthand: int = SH_NONE,
                source: LocalApic | None = None) -> list[LocalApic]:
        if shorthand == SH_SELF:
            return [source] if source is not None else []
        if shorthand == SH_ALL:
            return list(self.apics)
        if shorthand == SH_OTHERS:
            return [a for a in self.apics if a is not source]
        return [a for a in self.apics if a.matches(dest, logical)]

    def deliver(self, dest: int, logical: bool, mode: int, vector: int, level_trigger: bool = False,
                shorthand: int = SH_NONE, source: LocalApic | None = None, assert_: bool = True) -> bool:
        """Send one interrupt message; False when no local APIC took it."""
        targets = self.targets(dest, logical, shorthand, source)
        if mode == DM_LOWEST and len(targets) > 1:
            enabled = [a for a in targets if a.software_enabled] or targets
            targets = [min(enabled, key=lambda a: a.ppr())]
        taken = False
        for apic in targets:
            taken = apic.receive(mode, vector, level_trigger, assert_) or taken
        return taken

    def msi(self, address: int, data: int) -> bool:
        """An MSI: a device's DMA write of `data` to 0xFEExxxxx (PCI 3.0 / Intel SDM message format)."""
        if address >> 20 != APIC_BASE_DEFAULT >> 20:
            return False
        dest = (address >> 12) & 0xFF
        logical = bool(address & (1 << 2))
        mode = (data >> 8) & 7
        if mode in (DM_INIT, DM_SIPI, 3):
            return False                                   # not valid in an MSI
        return self.deliver(dest, logical, mode, data & 0xFF, bool(data & (1 << 15)))


class LocalApic:
    """One vCPU's local APIC: registers, priority logic, the LVTs and the timer."""

    def __init__(self, clock: Clock, apic_id: int = 0, bsp: bool = True,
                 on_change: Callable[[bool], None] | None = None, pic=None):
        self.clock = clock
        self.apic_id = apic_id
        self.bsp = bsp
        self.on_change = on_change          # EM: an interrupt may now be pending
        self.pic = pic                      # the 8259A pair on LINT0 (ExtINT); has_interrupt/acknowledge
        self.bus: ApicBus | None = None
        self.on_init: Callable[[], None] | None = None          # INIT IPI for this vCPU
        self.on_sipi: Callable[[int], None] | None = None       # STARTUP IPI (vector = page number)
        self._timer = clock.new_timer(self._timer_fired)
        self.s = self._power_on_state()

    def _power_on_state(self) -> LocalApicState:
        base = APIC_BASE_DEFAULT | BASE_ENABLE | (BASE_BSP if self.bsp else 0)
        state = LocalApicState(apic_base=base, id=self.apic_id << 24)
        if self.bsp:
            # the boot CPU's LINT0 starts as ExtINT, unmasked, so the 8259A reaches the CPU from
            # the first instruction on: firmware (SeaBIOS) and real-mode boot loaders take PIC
            # interrupts without ever programming the APIC
            state.lvt[LVT_LINT0] = DM_EXTINT << 8
        return state

    def reset(self) -> None:
        self._timer.cancel()
        self.s = self._power_on_state()

    def bind_current_thread(self) -> None:
        """Called on the vCPU's own thread (EM): its accesses to the APIC page reach this APIC."""
        _this_cpu.apic = self

    def firmware_setup(self) -> None:
        """What a PC BIOS leaves behind for the OS: the APIC software-enabled, LINT0 as ExtINT
        (virtual wire: the 8259A reaches the CPU), LINT1 as NMI.  The direct kernel boot, which
        skips the firmware, does this itself."""
        self.write(REG_SVR, 4, 0x1FF)
        self.write(REG_LVT_LINT0, 4, DM_EXTINT << 8)
        self.write(REG_LVT_LINT1, 4, DM_NMI << 8)

    # -- state -----------------------------------------------------------------------------------
    @property
    def hardware_enabled(self) -> bool:
        return bool(self.s.apic_base & BASE_ENABLE)

    @property
    def software_enabled(self) -> bool:
        return self.hardware_enabled and bool(self.s.svr & SVR_ENABLE)

    @property
    def base_address(self) -> int:
        return self.s.apic_base & BASE_ADDR_MASK

    def ppr(self) -> int:
        s = self.s
        isrv = _highest(s.isr)
        isr_class = (isrv & 0xF0) if isrv >= 0 else 0
        return s.tpr & 0xFF if (s.tpr & 0xF0) >= isr_class else isr_class

    def matches(self, dest: int, logical: bool) -> bool:
        """Does a message to `dest` (physical id or logical mask) address this APIC?"""
        if not self.hardware_enabled:
            return False
        if not logical:
            return dest == 0xFF or dest == (self.s.id >> 24) & 0xFF
        if dest == 0xFF:
            return True
        ldr = (self.s.ldr >> 24) & 0xFF
        if (self.s.dfr >> 28) & 0xF == 0xF:                    # flat model
            return bool(ldr & dest)
        return (ldr >> 4) == (dest >> 4) and bool(ldr & dest & 0x0F)   # cluster model

    # -- MSR -------------------------------------------------------------------------------------
    def read_msr_base(self) -> int:
        return self.s.apic_base

    def write_msr_base(self, value: int) -> bool:
        """IA32_APIC_BASE write; False (the CPU's #GP) for reserved bits or x2APIC mode."""
        if value & ~(BASE_ADDR_MASK | BASE_ENABLE | BASE_BSP | BASE_X2APIC) or value & BASE_X2APIC:
            return False
        was_enabled = self.hardware_enabled
        self.s.apic_base = (value & (BASE_ADDR_MASK | BASE_ENABLE)) | (self.s.apic_base & BASE_BSP)
        if was_enabled and not self.hardware_enabled:
            # disabling through the MSR is like a reset of the APIC's registers (SDM 10.4.3)
            base = self.s.apic_base
            self._timer.cancel()
            self.s = LocalApicState(apic_base=base, id=self.s.id)
        return True

    # -- registers -------------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if size not in (1, 2, 4, 8) or not 0 <= offset < APIC_PAGE:
            return 0
        value = 0
        for i in range(size):                   # bytes of the 32-bit register(s) they fall in
            pos = offset + i
            if pos >= APIC_PAGE:
                break
            reg = pos & ~0xF
            within = pos & 0xF
            if within >= 4:
                continue                        # the upper 12 bytes of each 16-byte slot read 0
            value |= ((self._read_reg(reg) >> (8 * within)) & 0xFF) << (8 * i)
        return value

    def _read_reg(self, reg: int) -> int:
        s = self.s
        if reg == REG_ID:
            return s.id
        if reg == REG_VERSION:
            return (MAX_LVT << 16) | APIC_VERSION
        if reg == REG_TPR:
            return s.tpr
        if reg == REG_PPR:
            return self.ppr()
        if reg == REG_LDR:
            return s.ldr
        if reg == REG_DFR:
            return s.dfr
        if reg == REG_SVR:
            return s.svr
        if REG_ISR <= reg < REG_ISR + 0x80:
            return (s.isr >> (32 * ((reg - REG_ISR) >> 4))) & 0xFFFF_FFFF
        if REG_TMR <= reg < REG_TMR + 0x80:
            return (s.tmr >> (32 * ((reg - REG_TMR) >> 4))) & 0xFFFF_FFFF
        if REG_IRR <= reg < REG_IRR + 0x80:
            return (s.irr >> (32 * ((reg - REG_IRR) >> 4))) & 0xFFFF_FFFF
        if reg == REG_ESR:
            return s.esr
        if reg == REG_ICR_LO:
            return s.icr_lo
        if reg == REG_ICR_HI:
            return s.icr_hi
        if reg in LVT_REGS:
            return s.lvt[LVT_REGS.index(reg)]
        if reg == REG_TIMER_INITIAL:
            return s.timer_initial
        if reg == REG_TIMER_CURRENT:
            return self.timer_current()
        if reg == REG_TIMER_DIVIDE:
            return s.timer_divide
        return 0                                # APR, RRD, EOI and reserved registers

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 4 or offset & 0xF or not 0 <= offset < APIC_PAGE:
            return                              # the APIC takes aligned 32-bit writes only
        self._write_reg(offset, value & 0xFFFF_FFFF)

    def _write_reg(self, reg: int, value: int) -> None:
        s = self.s
        if reg == REG_ID:
            s.id = value & 0xFF00_0000
        elif reg == REG_TPR:
            s.tpr = value & 0xFF
            self._changed()
        elif reg == REG_EOI:
            self.eoi()
        elif reg == REG_LDR:
            s.ldr = value & 0xFF00_0000
        elif reg == REG_DFR:
            s.dfr = (value & 0xF000_0000) | 0x0FFF_FFFF
        elif reg == REG_SVR:
            s.svr = (value & SVR_WRITABLE) | (s.svr & ~SVR_WRITABLE & 0xFFFF_FFFF)
            if not s.svr & SVR_ENABLE:          # software disable masks every LVT (SDM 10.4.7.2)
                s.lvt = [v | LVT_MASKED for v in s.lvt]
            self._changed()
        elif reg == REG_ESR:
            s.esr, s.esr_pending = s.esr_pending, 0
        elif reg == REG_ICR_HI:
            s.icr_hi = value & 0xFF00_0000
        elif reg == REG_ICR_LO:
            s.icr_lo = value & ICR_LO_WRITABLE
            self._send_ipi()
        elif reg in LVT_REGS:
            self._write_lvt(LVT_REGS.index(reg), value)
        elif reg == REG_TIMER_INITIAL:
            s.timer_initial = value
            self._start_timer()
        elif reg == REG_TIMER_DIVIDE:
            current = self.timer_current()
            s.timer_divide = value & 0xB
            if s.timer_running:                 # keep counting from where it is, at the new rate
                done = s.timer_initial - current
                s.timer_start_ns = self.clock.now_ns() - done * self._tick_ns()
                self._arm_timer()
        elif reg in (REG_VERSION, REG_APR, REG_PPR, REG_RRD, REG_TIMER_CURRENT) \
                or REG_ISR <= reg < REG_IRR + 0x80:
            pass                                # read-only
        else:
            self._error(ESR_ILLEGAL_REGISTER)

    def _write_lvt(self, index: int, value: int) -> None:
        s = self.s
        old = s.lvt[index]
        keep = old & (LVT_REMOTE_IRR | LVT_DELIVERY_STATUS)
        new = (value & _LVT_WRITABLE[index]) | keep
        if not s.svr & SVR_ENABLE:
            new |= LVT_MASKED
        s.lvt[index] = new
        if index == LVT_TIMER and (old ^ new) & TIMER_PERIODIC:
            self._arm_timer()
        if index in (LVT_LINT0, LVT_LINT1):
            self._changed()

    def _error(self, bits: int) -> None:
        s = self.s
        new = bits & ~s.esr_pending
        s.esr_pending |= bits
        lvt = s.lvt[LVT_ERROR]
        if new and not lvt & LVT_MASKED:
            self._accept(lvt & 0xFF, False)

    # -- interrupt acceptance --------------------------------------------------------------------
    def receive(self, mode: int, vector: int, level_trigger: bool, assert_: bool = True) -> bool:
        """A message from the APIC bus (IPI, IO-APIC, MSI) or a local source."""
        if not self.hardware_enabled:
            return False
        if mode in (DM_FIXED, DM_LOWEST):
            if not self.software_enabled:
                return False                    # a software-disabled APIC accepts no fixed interrupts
            self._accept(vector, level_trigger)
        elif mode == DM_NMI:
            self.s.nmi_pending = True
            self._changed()
        elif mode == DM_INIT:
            if not assert_ and level_trigger:
                return True                     # INIT level de-assert: a no-op on integrated APICs
            self.s.init_pending = True
            if self.on_init is not None:
                self.on_init()
        elif mode == DM_SIPI:
            self.s.sipi_vector = vector & 0xFF
            if self.on_sipi is not None:
                self.on_sipi(vector & 0xFF)
        elif mode == DM_EXTINT:
            if self.pic is None:
                return False
            self.s.extint_message = True        # the vector comes from the 8259A at acknowledge
            self._changed()
        else:
            log.debug("APIC %d: delivery mode %d dropped", self.apic_id, mode)
            return False
        return True

    def _accept(self, vector: int, level_trigger: bool) -> None:
        vector &= 0xFF
        if vector < 16:
            self._error(ESR_RECV_ILLEGAL_VECTOR)
            return
        s = self.s
        bit = 1 << vector
        s.irr |= bit
        s.tmr = (s.tmr | bit) if level_trigger else (s.tmr & ~bit)
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None and self.has_interrupt():
            self.on_change(True)

    # -- LINT0 / LINT1 inputs ---------------------------------------------------------------------
    def _extint_pending(self) -> bool:
        if self.pic is None:
            return False
        if not self.hardware_enabled:
            return self.pic.has_interrupt()     # a disabled APIC leaves LINT0 as the CPU's INTR pin
        lvt = self.s.lvt[LVT_LINT0]
        wired = not lvt & LVT_MASKED and (lvt >> 8) & 7 == DM_EXTINT
        return (wired or self.s.extint_message) and self.pic.has_interrupt()

    def set_lint(self, n: int, level: bool) -> None:
        """A LINT0/LINT1 input line (LINT0 in ExtINT mode asks the PIC; this serves the other modes)."""
        if n not in (0, 1):
            return
        s = self.s
        was = bool(s.lint_levels & (1 << n))
        s.lint_levels = (s.lint_levels | (1 << n)) if level else (s.lint_levels & ~(1 << n))
        lvt = s.lvt[LVT_LINT0 + n]
        if lvt & LVT_MASKED or not self.hardware_enabled:
            return
        mode = (lvt >> 8) & 7
        if mode == DM_EXTINT:
            self._changed()
        elif level and (not was or lvt & LVT_LEVEL):
            if mode == DM_NMI:
                s.nmi_pending = True
                self._changed()
            elif mode == DM_FIXED and not (lvt & LVT_LEVEL and lvt & LVT_REMOTE_IRR):
                if lvt & LVT_LEVEL:
                    s.lvt[LVT_LINT0 + n] |= LVT_REMOTE_IRR
                self._accept(lvt & 0xFF, bool(lvt & LVT_LEVEL))

    def pic_changed(self, level: bool) -> None:
        """The 8259A's INT output changed (PicPair.on_change): wake the vCPU if it passes LINT0."""
        if level and self.on_change is not None and self._extint_pending():
            self.on_change(True)

    # -- what EM asks ------------------------------------------------------------------------------
    def _deliverable(self) -> int:
        """The IRR vector the priority rules let through now, -1 if none."""
        s = self.s
        if not s.irr or not self.software_enabled:
            return -1
        v = _highest(s.irr)
        return v if (v & 0xF0) > (self.ppr() & 0xF0) else -1

    def has_interrupt(self) -> bool:
        return self._extint_pending() or self._deliverable() >= 0

    def acknowledge(self) -> int:
        """INTA: the vector to inject (ExtINT first, as the 8259A's wire bypasses the priority logic)."""
        if self._extint_pending():
            self.s.extint_message = False
            return self.pic.acknowledge()
        v = self._deliverable()
        if v < 0:
            return self.s.svr & 0xFF            # spurious interrupt
        s = self.s
        s.irr &= ~(1 << v)
        s.isr |= 1 << v
        return v

    def take_nmi(self) -> bool:
        """Consume a pending NMI (NMI IPI, LINT1 in NMI mode).  The engine contract has no NMI
        injection yet, so EM does not call this: the NMI stays recorded in the APIC's state."""
        pending, self.s.nmi_pending = self.s.nmi_pending, False
        return pending

    def eoi(self) -> None:
        s = self.s
        v = _highest(s.isr)
        if v < 0:
            return
        s.isr &= ~(1 << v)
        if s.tmr & (1 << v):
            s.tmr &= ~(1 << v)
            for i in (LVT_LINT0, LVT_LINT1):   # a level LINT fixed interrupt can come again
                if s.lvt[i] & LVT_REMOTE_IRR and s.lvt[i] & 0xFF == v:
                    s.lvt[i] &= ~LVT_REMOTE_IRR
            if self.bus is not None:
                self.bus.broadcast_eoi(v)
        self._changed()

    # -- IPIs ----------------------------------------------------------------------------------------
    def _send_ipi(self) -> None:
        s = self.s
        lo = s.icr_lo
        vector, mode = lo & 0xFF, (lo >> 8) & 7
        shorthand = (lo >> 18) & 3
        logical = bool(lo & ICR_DEST_LOGICAL)
        level = bool(lo & ICR_TRIGGER_LEVEL)
        assert_ = bool(lo & ICR_LEVEL_ASSERT) or not level
        if mode in (DM_FIXED, DM_LOWEST) and vector < 16:
            self._error(ESR_SEND_ILLEGAL_VECTOR)
            return
        if mode in (DM_SMI, 3, DM_EXTINT):
            log.debug("APIC %d: IPI with delivery mode %d ignored", self.apic_id, mode)
            return
        if mode in (DM_INIT, DM_SIPI) and shorthand in (SH_SELF, SH_ALL):
            shorthand = SH_OTHERS if shorthand == SH_ALL else shorthand
            if shorthand == SH_SELF:
                return                          # INIT/SIPI to self are not valid
        dest = (s.icr_hi >> 24) & 0xFF
        if self.bus is not None:
            self.bus.deliver(dest, logical, mode, vector, level, shorthand, self, assert_)
        elif shorthand in (SH_SELF, SH_ALL) or self.matches(dest, logical):
            self.receive(mode, vector, level, assert_)
        s.icr_lo &= ~ICR_DELIVERY_STATUS        # delivered at once: the guest never sees it busy

    # -- timer ---------------------------------------------------------------------------------------
    def _tick_ns(self) -> int:
        """Nanoseconds per timer tick: the 1 GHz bus clock divided as the divide register says."""
        d = self.s.timer_divide
        code = ((d >> 1) & 4) | (d & 3)
        return 1 if code == 7 else 2 << code

    def _start_timer(self) -> None:
        s = self.s
        s.timer_start_ns = self.clock.now_ns()
        s.timer_running = s.timer_initial != 0
        self._arm_timer()

    def _period_ns(self) -> int:
        return self.s.timer_initial * self._tick_ns()

    def timer_current(self) -> int:
        s = self.s
        if not s.timer_running or s.timer_initial == 0:
            return 0
        ticks = (self.clock.now_ns() - s.timer_start_ns) // self._tick_ns()
        if s.lvt[LVT_TIMER] & TIMER_PERIODIC:
            return s.timer_initial - ticks % s.timer_initial
        return max(0, s.timer_initial - ticks)

    def _arm_timer(self) -> None:
        s = self.s
        if not s.timer_running:
            self._timer.cancel()
            return
        period = self._period_ns()
        now = self.clock.now_ns()
        if s.lvt[LVT_TIMER] & TIMER_PERIODIC:
            elapsed = now - s.timer_start_ns
            deadline = s.timer_start_ns + (elapsed // period + 1) * period
            self._timer.arm(max(deadline, now + MIN_PERIOD_NS) if period < MIN_PERIOD_NS else deadline)
        else:
            self._timer.arm(s.timer_start_ns + period)   # one-shot: fires once, then stops running

    def _timer_fired(self) -> None:
        s = self.s
        if not s.timer_running:
            return
        lvt = s.lvt[LVT_TIMER]
        if not lvt & LVT_MASKED:
            self._accept(lvt & 0xFF, False)
        if lvt & TIMER_PERIODIC:
            self._arm_timer()
        else:
            s.timer_running = False             # one-shot: the count stays at 0

    # -- saved state -----------------------------------------------------------------------------------
    def get_state(self) -> LocalApicState:
        st = LocalApicState(**vars(self.s))
        st.lvt = list(self.s.lvt)
        st.irr, st.isr, st.tmr = (int(v).to_bytes(32, "little") for v in (self.s.irr, self.s.isr, self.s.tmr))
        return st

    def set_state(self, state: LocalApicState) -> None:
        self._timer.cancel()
        self.s = LocalApicState(**vars(state))
        self.s.lvt = [int(v) & 0xFFFF_FFFF for v in (list(state.lvt) + [LVT_MASKED] * 6)[:6]]
        self.s.irr, self.s.isr, self.s.tmr = (
            (int.from_bytes(v[:32], "little") if isinstance(v, (bytes, bytearray)) else int(v))
            & ((1 << 256) - 1)
            for v in (state.irr, state.isr, state.tmr)
        )
        self._arm_timer()


class LocalApicWindow:
    """The APIC page as the MMIO bus sees it: every CPU finds its own local APIC at the same address.

    An access goes to the APIC bound to the accessing vCPU's thread (`bind_current_thread`), else to
    the boot CPU's (device threads, tests)."""

    def __init__(self, apics: list[LocalApic]):
        self.apics = apics

    def _apic(self) -> LocalApic:
        return getattr(_this_cpu, "apic", None) or self.apics[0]

    def read(self, offset: int, size: int) -> int:
        return self._apic().read(offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self._apic().write(offset, size, value)
