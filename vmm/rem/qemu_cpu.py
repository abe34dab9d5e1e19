"""Reach the QEMU CPU inside unicorn: the pieces unicorn's API leaves out.

unicorn 2.1.4 (pinned) is QEMU 5 TCG without an interrupt controller: it never delivers
an exception through the guest's IDT, has no call for an external interrupt and exposes
neither the interrupt shadow nor the CPL.  Its shared library does export QEMU's own
delivery code (`x86_cpu_do_interrupt`, `do_interrupt_x86_hardirq`), so REM hands every
exception and hardware interrupt to it: real-mode IVT, protected-mode and long-mode IDT
gates, privilege change through the TSS, IST stacks and error codes all behave as QEMU's.

With the project's own unicorn build (scripts/unicorn; PATCHED below) the delivery, the
interrupt shadow, HLT, preemption and DMA invalidation go through small exported functions
of the patch instead (uc_vbox_*); the offsets below remain for register and segment state.
A stock library still works, with the limits the engine's docstring lists.

The `CPUX86State` pointer is found at run time (registers written with marker values are
searched for near the CPUState) and the field offsets used here are checked against
values written through the public API before the engine is used; a unicorn build whose
layout differs is refused with an error instead of being patched blindly.
"""

from __future__ import annotations

import ctypes
import os

from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn.unicorn_py3.unicorn import uclib
from unicorn.x86_const import UC_X86_REG_CR3, UC_X86_REG_IDTR, UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RIP

# CPUX86State field offsets (QEMU 5.0 layout, verified in QemuCpu.__init__)
OFF_REGS = 0
OFF_EIP = 128
OFF_EFLAGS = 136
OFF_HFLAGS = 176
OFF_HFLAGS2 = 180
OFF_SEGS = 184          # SegmentCache segs[6]: {u32 selector; u64 base; u32 limit; u32 flags}
SEG_SIZE = 24
OFF_LDT = OFF_SEGS + 6 * SEG_SIZE
OFF_TR = OFF_LDT + SEG_SIZE
OFF_GDT = OFF_TR + SEG_SIZE
OFF_IDT = OFF_GDT + SEG_SIZE
OFF_CR = OFF_IDT + SEG_SIZE
OFF_DF = 172            # df (+1 / -1: the direction flag lives here, not in eflags)
CR0_PG = 1 << 31

# hflags bits
HF_CPL_MASK = 0x3
HF_INHIBIT_IRQ = 1 << 3
HF_CS32 = 1 << 4
HF_SS32 = 1 << 5
HF_ADDSEG = 1 << 6
HF_PE = 1 << 7
HF_LMA = 1 << 14
HF_CS64 = 1 << 15
IF_MASK = 1 << 9
VM_MASK = 1 << 17

# segment indexes in env->segs
R_ES, R_CS, R_SS, R_DS, R_FS, R_GS = range(6)

# descriptor attribute bits as QEMU keeps them (flags word of SegmentCache)
DESC_B = 1 << 22
DESC_L = 1 << 21
DESC_DPL_SHIFT = 13


class UnicornLayoutError(Exception):
    """This unicorn build's CPU state does not look like the one REM was written for."""


def _fn(name: str, restype, *argtypes):
    f = getattr(uclib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


def _optional(name: str, restype, *argtypes):
    """An entry point of the project's own unicorn build (scripts/unicorn); None in a stock library."""
    try:
        return _fn(name, restype, *argtypes)
    except AttributeError:
        return None


_get_cpu = _fn("qemu_get_cpu_x86_64", ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
_do_interrupt = _fn("x86_cpu_do_interrupt_x86_64", None, ctypes.c_void_p)
_hardirq = _fn("do_interrupt_x86_hardirq_x86_64", None, ctypes.c_void_p, ctypes.c_int, ctypes.c_int)
_clear_apic = _fn("cpu_clear_apic_feature_x86_64", None, ctypes.c_void_p)
_U32P = ctypes.POINTER(ctypes.c_uint32)
_cpuid = _fn("cpu_x86_cpuid_x86_64", None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
             _U32P, _U32P, _U32P, _U32P)


# The project's build (scripts/unicorn/patches): stops at block starts, code-page write
# protection, DMA invalidation and event delivery as exported functions.
_vbox_build = _optional("uc_vbox_build", ctypes.c_char_p)
_vbox_block_stops = _optional("uc_vbox_set_block_stops", ctypes.c_int, ctypes.c_void_p, ctypes.c_bool)
_vbox_request_stop = _optional("uc_vbox_request_stop", ctypes.c_int, ctypes.c_void_p)
_vbox_invalidate = _optional("uc_vbox_invalidate_phys", ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64,
                             ctypes.c_uint64)
_vbox_inject_irq = _optional("uc_vbox_x86_inject_irq", None, ctypes.c_void_p, ctypes.c_int)
_vbox_raise_fault = _optional("uc_vbox_x86_raise_fault", None, ctypes.c_void_p, ctypes.c_int)
_vbox_deliver_pending = _optional("uc_vbox_x86_deliver_pending", None, ctypes.c_void_p)
_vbox_irq_shadow = _optional("uc_vbox_x86_irq_shadow", ctypes.c_int, ctypes.c_void_p)
_vbox_halted = _optional("uc_vbox_x86_halted", ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
_vbox_irq_window = _optional("uc_vbox_x86_set_irq_window", ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
_vbox_native_syscall = _optional("uc_vbox_x86_native_syscall", ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
PATCHED = None not in (_vbox_build, _vbox_block_stops, _vbox_request_stop, _vbox_invalidate, _vbox_inject_irq,
                       _vbox_raise_fault, _vbox_deliver_pending, _vbox_irq_shadow, _vbox_halted,
                       _vbox_irq_window, _vbox_native_syscall)


def library_description() -> str:
    """Which unicorn library REM runs, for VBox.log and `--version --verbose`."""
    import unicorn
    path = getattr(uclib, "_name", "?")
    if PATCHED:
        return f"unicorn {unicorn.__version__} ({_vbox_build().decode()}) {path}"
    return (f"unicorn {unicorn.__version__} (stock build: slow stores, preemption at safe points only; "
            f"run scripts/install.sh to build the project's library) {path}")


def _find_env(cs: int) -> int:
    """Search the X86CPU object after the CPUState for regs[RAX], regs[RCX] marker values."""
    pattern = (0x5AFE_C0DE_1234_5678).to_bytes(8, "little") + (0x0BAD_F00D_8765_4321).to_bytes(8, "little")
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        window = b""
        for off in range(0, 0x40000, 0x1000):
            try:
                window += os.pread(fd, 0x1000, cs + off)
            except OSError:
                break
            hit = window.find(pattern)
            if hit >= 0:
                return cs + hit
    finally:
        os.close(fd)
    raise UnicornLayoutError("CPUX86State not found next to unicorn's CPUState")


class QemuCpu:
    """Typed access to one unicorn vCPU's QEMU state."""

    def __init__(self, uc: Uc):
        self._uch = uc._uch
        if uc._arch != UC_ARCH_X86 or uc._mode != UC_MODE_64:
            raise UnicornLayoutError("REM needs an x86 UC_MODE_64 unicorn instance")
        saved_rax, saved_rcx = uc.reg_read(UC_X86_REG_RAX), uc.reg_read(UC_X86_REG_RCX)
        uc.reg_write(UC_X86_REG_RAX, 0x5AFE_C0DE_1234_5678)
        uc.reg_write(UC_X86_REG_RCX, 0x0BAD_F00D_8765_4321)
        self.cs = _get_cpu(uc._uch, -1) or _get_cpu(uc._uch, 0)
        if not self.cs:
            raise UnicornLayoutError("unicorn has no CPU object")
        self.env = _find_env(self.cs)
        self._verify(uc)
        uc.reg_write(UC_X86_REG_RAX, saved_rax)
        uc.reg_write(UC_X86_REG_RCX, saved_rcx)
        self._eflags = ctypes.c_uint64.from_address(self.env + OFF_EFLAGS)
        self._hflags = ctypes.c_uint32.from_address(self.env + OFF_HFLAGS)

    def _verify(self, uc: Uc) -> None:
        rip, cr3, idtr = (
            uc.reg_read(UC_X86_REG_RIP), uc.reg_read(UC_X86_REG_CR3), uc.reg_read(UC_X86_REG_IDTR)
        )
        try:
            uc.reg_write(UC_X86_REG_RIP, 0x1234_5678_9ABC)
            uc.reg_write(UC_X86_REG_CR3, 0x7654_3000)
            uc.reg_write(UC_X86_REG_IDTR, (0, 0x00AB_CDEF_0000, 0x0FFF, 0))
            ok = (self.u64(OFF_EIP) == 0x1234_5678_9ABC and self.u64(OFF_CR + 3 * 8) == 0x7654_3000
                  and self.u64(OFF_IDT + 8) == 0x00AB_CDEF_0000 and self.u32(OFF_IDT + 16) == 0x0FFF
                  and self.u32(OFF_HFLAGS) & HF_PE)
        finally:
            uc.reg_write(UC_X86_REG_RIP, rip)
            uc.reg_write(UC_X86_REG_CR3, cr3)
            uc.reg_write(UC_X86_REG_IDTR, idtr)
        if not ok:
            raise UnicornLayoutError("unicorn's CPUX86State layout differs from QEMU 5.0's")

    # -- raw fields ----------------------------------------------------------------------------
    def u64(self, off: int) -> int:
        return ctypes.c_uint64.from_address(self.env + off).value

    def u32(self, off: int) -> int:
        return ctypes.c_uint32.from_address(self.env + off).value

    def set_u64(self, off: int, value: int) -> None:
        ctypes.c_uint64.from_address(self.env + off).value = value & 0xFFFF_FFFF_FFFF_FFFF

    def set_u32(self, off: int, value: int) -> None:
        ctypes.c_uint32.from_address(self.env + off).value = value & 0xFFFF_FFFF

    @property
    def hflags(self) -> int:
        return self._hflags.value

    @hflags.setter
    def hflags(self, value: int) -> None:
        self._hflags.value = value

    @property
    def cpl(self) -> int:
        return self._hflags.value & HF_CPL_MASK

    def interrupts_enabled(self) -> bool:
        if not self._eflags.value & IF_MASK:
            return False
        if PATCHED:
            return not _vbox_irq_shadow(self._uch)
        return not self._hflags.value & HF_INHIBIT_IRQ

    # -- segments ------------------------------------------------------------------------------
    def segment(self, index: int) -> tuple[int, int, int, int]:
        """(selector, base, limit, flags) of segs[index], or of the cache at an env offset (LDT, TR)."""
        off = OFF_SEGS + index * SEG_SIZE if index < 6 else index
        return self.u32(off), self.u64(off + 8), self.u32(off + 16), self.u32(off + 20)

    def set_segment(self, index: int, selector: int, base: int, limit: int, flags: int) -> None:
        """Load a segment cache directly (no descriptor table access), as a VMM's state load does."""
        off = OFF_SEGS + index * SEG_SIZE if index < 6 else index
        self.set_u32(off, selector)
        self.set_u64(off + 8, base)
        self.set_u32(off + 16, limit)
        self.set_u32(off + 20, flags)

    def recompute_segment_hflags(self) -> None:
        """CPL, CS32, SS32, CS64 and ADDSEG from the segment caches, as QEMU's segment load does."""
        h = self.hflags & ~(HF_CPL_MASK | HF_CS32 | HF_SS32 | HF_CS64 | HF_ADDSEG)
        cs_flags, ss_flags = self.segment(R_CS)[3], self.segment(R_SS)[3]
        pe = bool(self.u64(OFF_CR) & 1)
        vm = bool(self.u64(OFF_EFLAGS) & VM_MASK)
        if pe and not vm:
            h |= (ss_flags >> DESC_DPL_SHIFT) & 3
        elif vm:
            h |= 3
        if (h & HF_LMA) and cs_flags & DESC_L:
            h |= HF_CS32 | HF_SS32 | HF_CS64
        else:
            if cs_flags & DESC_B:
                h |= HF_CS32
            if ss_flags & DESC_B:
                h |= HF_SS32
            if not pe or vm or not h & HF_CS32:
                h |= HF_ADDSEG
            elif self.segment(R_DS)[1] | self.segment(R_ES)[1] | self.segment(R_SS)[1]:
                h |= HF_ADDSEG
        self.hflags = h

    # -- delivery ------------------------------------------------------------------------------
    def deliver_pending_exception(self) -> None:
        """From a UC_HOOK_INTR callback: deliver the exception QEMU just raised, as cpu_exec would."""
        if PATCHED:
            _vbox_deliver_pending(self._uch)
        else:
            _do_interrupt(self.cs)

    def deliver_hardware_interrupt(self, vector: int) -> None:
        if PATCHED:
            _vbox_inject_irq(self._uch, vector & 0xFF)
        else:
            _hardirq(self.env, vector & 0xFF, 1)

    def deliver_fault(self, vector: int) -> None:
        """A fault without error code (#UD) at the current RIP."""
        if PATCHED:
            _vbox_raise_fault(self._uch, vector & 0xFF)
        else:
            _hardirq(self.env, vector & 0xFF, 0)

    # -- the project's build only (PATCHED) -------------------------------------------------------
    def set_block_stops(self) -> None:
        """Stops take effect at translation-block starts only (before the first run)."""
        _vbox_block_stops(self._uch, True)

    def set_native_syscall(self) -> None:
        """SYSCALL from long mode enters the kernel inside the library; the VMM's hook only sees
        the ones that must raise #UD."""
        _vbox_native_syscall(self._uch, 1)

    def request_stop(self) -> None:
        """From any thread: the running emulation stops at the next block boundary."""
        _vbox_request_stop(self._uch)

    def set_irq_window(self, wanted: bool) -> None:
        """The next run stops as soon as the guest accepts an interrupt (vCPU thread only)."""
        _vbox_irq_window(self._uch, 1 if wanted else 0)

    def invalidate_phys(self, gpa: int, length: int) -> None:
        """Drop translated code of guest-physical pages a device wrote (vCPU thread only)."""
        _vbox_invalidate(self._uch, gpa, length)

    def take_halted(self) -> bool:
        """True when the last run ended in HLT (and resume the CPU)."""
        return bool(_vbox_halted(self._uch, 1))

    def cpuid(self, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        """QEMU's own CPUID answer (eax, ebx, ecx, edx) for the current CPU state."""
        out = [ctypes.c_uint32() for _ in range(4)]
        _cpuid(self.env, leaf & 0xFFFF_FFFF, subleaf & 0xFFFF_FFFF, *(ctypes.byref(r) for r in out))
        return tuple(r.value for r in out)   # type: ignore[return-value]

    def clear_apic_feature(self) -> None:
        """No local APIC in this VM: hide it in CPUID so the guest uses the 8259A."""
        _clear_apic(self.env)
