"""HM's vCPU: one KVM vCPU fd with its mmap'ed kvm_run, behind vmm.engine's Vcpu contract.

`run()` is the hot path: one KVM_RUN ioctl (GIL released), then the exit is decoded
straight from the shared kvm_run page into a contract exit.  KVM cannot call back into
Python, so port and MMIO accesses come back as IoExit/MmioExit and EM completes reads
with `complete_io()` before the next run.  String I/O that KVM batches (REP INS/OUTS)
is handed to EM one element at a time, so EM never has to know about batching.

`kick()` works from any thread: it sets kvm_run.immediate_exit (so a run that is about
to start returns at once) and sends KICK_SIGNAL to the thread inside KVM_RUN (so a run in
progress returns with EINTR).  Both end as InterruptedExit.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import signal
import struct
import threading
from typing import TYPE_CHECKING

from vmm.engine import (
    CpuState,
    HaltExit,
    InternalErrorExit,
    InterruptedExit,
    IoExit,
    MmioExit,
    ShutdownExit,
    VcpuExit,
)
from vmm.hm import abi, state
from vmm.hm.kvm import KvmError, ioctl, raw_ioctl

if TYPE_CHECKING:
    from vmm.hm.vm import HmVm

KICK_SIGNAL = signal.SIGRTMIN + 4
# kvm_run decoded in one step on the hot path: exit_reason, then the io member of the union
_IO_EXIT = struct.Struct("<8xI20xBBHIQ")
_VALUE = {2: struct.Struct("<H").unpack_from, 4: struct.Struct("<I").unpack_from}
_EXIT_IO = abi.EXIT_IO
_KVM_RUN = abi.KVM_RUN
_IO_OUT = abi.KVM_EXIT_IO_OUT
_get_ident = threading.get_ident
_get_errno = ctypes.get_errno

# MSRs carried in CpuState.msrs (those KVM lists as saveable are kept, the rest dropped)
STATE_MSRS = (0x10, 0x174, 0x175, 0x176, 0x1A0, 0x277, 0xC0000081, 0xC0000082, 0xC0000083, 0xC0000084,
              0xC0000102, 0xC0000103, 0x4B564D00, 0x4B564D01, 0x11, 0x12)
MSR_IA32_TSC = 0x10
MSR_IA32_MISC_ENABLE = 0x1A0
MISC_ENABLE_FAST_STRING = 1
RFLAGS_IF = 1 << 9


class HmError(Exception):
    """HM cannot do what was asked (wrong interrupt model, bad state)."""


def _noop_handler(_signum, _frame) -> None:
    """KICK_SIGNAL only has to interrupt KVM_RUN; nothing to do when Python sees it."""


def install_kick_handler() -> None:
    """A handler (not SIG_DFL, which kills, nor SIG_IGN, which is never delivered) for kicks."""
    current = signal.getsignal(KICK_SIGNAL)
    if current not in (signal.SIG_DFL, signal.SIG_IGN, None):
        return
    if threading.current_thread() is not threading.main_thread():
        raise HmError("HM needs its kick signal handler installed from the main thread: create the first "
                      "HmVm on the main thread or call vmm.hm.vcpu.install_kick_handler() there")
    signal.signal(KICK_SIGNAL, _noop_handler)


class HmVcpu:
    def __init__(self, vm: HmVm, index: int):
        self.index = index
        self.vm = vm
        self.fd = ioctl(vm.fd, abi.KVM_CREATE_VCPU, index, "KVM_CREATE_VCPU")
        try:
            self._mm = mmap.mmap(self.fd, vm.kvm.vcpu_mmap_size, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError:
            os.close(self.fd)
            raise
        self._hdr = abi.KvmRunHeader.from_buffer(self._mm)
        self._io = abi.RunIo.from_buffer(self._mm, abi.RUN_UNION)
        self._mmio = abi.RunMmio.from_buffer(self._mm, abi.RUN_UNION)
        self._run_ioctl = raw_ioctl()
        self._tid: int | None = None
        self._queued: list[VcpuExit] = []      # further parts of a batched/split access, reversed
        self._mmio_parts: list[int] | None = None   # halves of a split 8-byte MMIO read
        self._in_offset = -1                   # where the next IN value goes in kvm_run, -1: none
        self._in_size = 0
        self._mmio_read_pending = False
        self._needs_flush = False              # completed I/O not yet consumed by KVM
        # 1: kvm_run's interrupt fields are current; 0: ask KVM (after set_state); -1: injected since
        self._irq_info = 0
        try:
            try:
                self.tsc_khz = ioctl(self.fd, abi.KVM_GET_TSC_KHZ, None, "KVM_GET_TSC_KHZ")
            except KvmError:
                self.tsc_khz = 0
            self.cpuid = vm.cpuid_for(index, self.tsc_khz)
            self._set_cpuid(self.cpuid)
            supported = vm.saveable_msrs
            self._state_msrs = [m for m in STATE_MSRS if m in supported]
            self.reset()
        except BaseException:
            self.close()
            raise

    # -- setup ---------------------------------------------------------------------------------
    def _set_cpuid(self, entries) -> None:
        buf = abi.cpuid2_type(len(entries))()
        buf.nent = len(entries)
        for slot, values in zip(buf.entries, entries, strict=True):
            (slot.function, slot.index, slot.flags, slot.eax, slot.ebx, slot.ecx, slot.edx) = values
        ioctl(self.fd, abi.KVM_SET_CPUID2, ctypes.addressof(buf), "KVM_SET_CPUID2")

    def reset(self) -> None:
        """Power-on state: real mode at F000:FFF0, TSC 0, no pending events."""
        self._queued.clear()
        self._in_offset = -1
        self._mmio_read_pending = False
        self._mmio_parts = None
        self._flush()
        sregs = abi.KvmSregs()
        ioctl(self.fd, abi.KVM_GET_SREGS, ctypes.addressof(sregs), "KVM_GET_SREGS")
        state.power_on_sregs(sregs)
        if self.vm.user_apic:      # IA32_APIC_BASE of the VMM's xAPIC: enabled at 0xFEE00000, BSP on vCPU 0
            sregs.apic_base = state.APIC_BASE_POWER_ON | (state.APIC_BASE_BSP if self.index == 0 else 0)
        ioctl(self.fd, abi.KVM_SET_SREGS, ctypes.addressof(sregs), "KVM_SET_SREGS")
        regs = abi.KvmRegs()
        regs.rip, regs.rflags = 0xFFF0, 0x2
        regs.rdx = self._cpu_signature()
        ioctl(self.fd, abi.KVM_SET_REGS, ctypes.addressof(regs), "KVM_SET_REGS")
        self._set_fxsave(state.fpu_to_fxsave(abi.KvmFpu(fcw=0x37F, mxcsr=0x1F80)))
        self._clear_events()
        msrs = {MSR_IA32_TSC: 0, MSR_IA32_MISC_ENABLE: MISC_ENABLE_FAST_STRING}
        self.set_msrs({k: v for k, v in msrs.items() if k in self.vm.saveable_msrs})
        if self.vm.kernel_irqchip:
            mp = abi.KvmMpState(abi.KVM_MP_STATE_RUNNABLE)
            ioctl(self.fd, abi.KVM_SET_MP_STATE, ctypes.addressof(mp), "KVM_SET_MP_STATE")
        self._irq_info = 0

    def _clear_events(self) -> None:
        """Drop pending/injected exceptions, interrupts and NMIs (read-modify-write keeps KVM's flags)."""
        ev = abi.KvmVcpuEvents()
        ioctl(self.fd, abi.KVM_GET_VCPU_EVENTS, ctypes.addressof(ev), "KVM_GET_VCPU_EVENTS")
        ev.exc_injected = ev.exc_pending = ev.exc_has_error_code = ev.exc_nr = ev.exc_error_code = 0
        ev.int_injected = ev.int_nr = ev.int_soft = ev.int_shadow = 0
        ev.nmi_injected = ev.nmi_pending = ev.nmi_masked = 0
        ev.exception_has_payload, ev.exception_payload, ev.triple_fault = 0, 0, 0
        ev.flags = 0
        ioctl(self.fd, abi.KVM_SET_VCPU_EVENTS, ctypes.addressof(ev), "KVM_SET_VCPU_EVENTS")

    def _cpu_signature(self) -> int:
        for function, _, _, eax, *_ in self.cpuid:
            if function == 1:
                return eax
        return 0

    # -- the run loop ----------------------------------------------------------------------------
    def run(self) -> VcpuExit:
        if self._queued:
            return self._queued.pop()
        self._tid = _get_ident()
        ret = self._run_ioctl(self.fd, _KVM_RUN, None)
        self._tid = None
        self._needs_flush = False
        self._irq_info = 1
        if ret < 0:
            err = _get_errno()
            self._hdr.immediate_exit = 0
            if err in (errno.EINTR, errno.EAGAIN):
                return InterruptedExit()
            return InternalErrorExit(f"KVM_RUN failed: {os.strerror(err)}", {"errno": err})
        mm = self._mm
        reason, direction, size, port, count, off = _IO_EXIT.unpack_from(mm)
        if reason == _EXIT_IO:
            if direction == _IO_OUT:
                if count == 1:
                    return IoExit(port, size, True, mm[off] if size == 1 else _VALUE[size](mm, off)[0])
                values = [int.from_bytes(mm[off + i * size:off + (i + 1) * size], "little")
                          for i in range(count)]
                self._queued = [IoExit(port, size, True, v) for v in reversed(values[1:])]
                return IoExit(port, size, True, values[0])
            self._in_offset, self._in_size = off, size
            if count > 1:
                self._queued = [IoExit(port, size, False) for _ in range(count - 1)]
            return IoExit(port, size, False)
        if reason == abi.EXIT_MMIO:
            mmio = self._mmio
            size, addr = mmio.len, mmio.phys_addr
            # 8-byte accesses reach devices as two 4-byte ones (low half first), as on REM
            if mmio.is_write:
                value = int.from_bytes(bytes(mmio.data[:size]), "little")
                if size == 8:
                    self._queued = [MmioExit(addr + 4, 4, True, value >> 32)]
                    return MmioExit(addr, 4, True, value & 0xFFFF_FFFF)
                return MmioExit(addr, size, True, value)
            self._mmio_read_pending = True
            if size == 8:
                self._mmio_parts = []
                self._queued = [MmioExit(addr + 4, 4, False)]
                return MmioExit(addr, 4, False)
            return MmioExit(addr, size, False)
        return self._slow_exit(reason)

    def _slow_exit(self, reason: int) -> VcpuExit:
        if reason in (abi.EXIT_IRQ_WINDOW_OPEN, abi.EXIT_INTR):
            return InterruptedExit()
        if reason == abi.EXIT_HLT:
            return HaltExit()
        if reason == abi.EXIT_SHUTDOWN:
            return ShutdownExit("triple fault")
        if reason == abi.EXIT_SYSTEM_EVENT:
            ev = abi.RunSystemEvent.from_buffer(self._mm, abi.RUN_UNION)
            return ShutdownExit(f"system event: {abi.SYSTEM_EVENT_NAMES.get(ev.type, ev.type)}")
        if reason == abi.EXIT_FAIL_ENTRY:
            fe = abi.RunFailEntry.from_buffer(self._mm, abi.RUN_UNION)
            return InternalErrorExit("KVM could not enter the guest (FAIL_ENTRY)",
                                     {"hardware_entry_failure_reason": hex(fe.hardware_entry_failure_reason),
                                      "rip": hex(self._rip())})
        if reason == abi.EXIT_INTERNAL_ERROR:
            ie = abi.RunInternal.from_buffer(self._mm, abi.RUN_UNION)
            what = abi.INTERNAL_ERROR_SUBERRORS.get(ie.suberror, f"suberror {ie.suberror}")
            return InternalErrorExit(f"KVM internal error: {what}",
                                     {"suberror": ie.suberror, "rip": hex(self._rip()),
                                      "data": [hex(x) for x in ie.data[:min(ie.ndata, 16)]]})
        if reason == abi.EXIT_EXCEPTION:
            ex = abi.RunException.from_buffer(self._mm, abi.RUN_UNION)
            return InternalErrorExit("unhandled guest exception",
                                     {"vector": ex.exception, "error_code": ex.error_code,
                                      "rip": hex(self._rip())})
        return InternalErrorExit(f"unexpected KVM exit reason {reason}", {"rip": hex(self._rip())})

    def _rip(self) -> int:
        regs = abi.KvmRegs()
        try:
            ioctl(self.fd, abi.KVM_GET_REGS, ctypes.addressof(regs), "KVM_GET_REGS")
        except KvmError:
            return -1
        return regs.rip

    def complete_io(self, value: int) -> None:
        if self._in_offset >= 0:
            size = self._in_size
            off = self._in_offset
            self._mm[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
            self._in_offset = off + size if self._queued else -1
        elif self._mmio_read_pending:
            parts = self._mmio_parts
            if parts is not None:
                parts.append(value & 0xFFFF_FFFF)
                if len(parts) < 2:
                    return      # the high half comes with the queued exit
                value = parts[0] | parts[1] << 32
                self._mmio_parts = None
            size = self._mmio.len
            self._mmio.data[:size] = list((value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))
            self._mmio_read_pending = False
        else:
            raise HmError("complete_io() without a pending IN or MMIO read")
        self._needs_flush = True

    def kick(self) -> None:
        if self.fd < 0:
            return      # closed: nothing runs any more
        self._hdr.immediate_exit = 1
        tid = self._tid
        if tid is not None:
            try:
                signal.pthread_kill(tid, KICK_SIGNAL)
            except (ProcessLookupError, OSError):
                pass

    def _flush(self) -> None:
        """Let KVM consume a completed IN/MMIO read so registers are final (KVM's documented way)."""
        if not self._needs_flush:
            return
        hdr = self._hdr
        hdr.immediate_exit = 1
        ret = self._run_ioctl(self.fd, abi.KVM_RUN, None)
        hdr.immediate_exit = 0
        self._needs_flush = False
        if ret < 0 and _get_errno() not in (errno.EINTR, errno.EAGAIN):
            raise KvmError(_get_errno(), f"KVM_RUN (flush): {os.strerror(_get_errno())}")

    # -- interrupts ------------------------------------------------------------------------------
    def interrupts_enabled(self) -> bool:
        if self._irq_info:
            hdr = self._hdr
            return self._irq_info > 0 and bool(hdr.ready_for_interrupt_injection and hdr.if_flag)
        regs = abi.KvmRegs()
        ioctl(self.fd, abi.KVM_GET_REGS, ctypes.addressof(regs), "KVM_GET_REGS")
        events = abi.KvmVcpuEvents()
        ioctl(self.fd, abi.KVM_GET_VCPU_EVENTS, ctypes.addressof(events), "KVM_GET_VCPU_EVENTS")
        return bool(regs.rflags & RFLAGS_IF) and not events.int_shadow and not events.int_injected

    def inject_interrupt(self, vector: int) -> None:
        if self.vm.kernel_irqchip:
            raise HmError("the in-kernel irqchip delivers interrupts: raise lines with HmVm.set_irq()")
        if not 0 <= vector <= 255:
            raise ValueError(f"interrupt vector {vector} out of range")
        irq = abi.KvmInterrupt(vector)
        ioctl(self.fd, abi.KVM_INTERRUPT, ctypes.addressof(irq), "KVM_INTERRUPT")
        self._irq_info = -1

    def request_interrupt_window(self, wanted: bool) -> None:
        if not self.vm.kernel_irqchip:
            self._hdr.request_interrupt_window = 1 if wanted else 0

    # -- state -----------------------------------------------------------------------------------
    def get_msrs(self, indices: list[int]) -> dict[int, int]:
        buf = abi.msrs_type(len(indices))()
        buf.nmsrs = len(indices)
        for slot, idx in zip(buf.entries, indices, strict=True):
            slot.index = idx
        n = ioctl(self.fd, abi.KVM_GET_MSRS, ctypes.addressof(buf), "KVM_GET_MSRS")
        return {buf.entries[i].index: buf.entries[i].data for i in range(n)}

    def set_msrs(self, values: dict[int, int]) -> None:
        buf = abi.msrs_type(len(values))()
        buf.nmsrs = len(values)
        for slot, (idx, val) in zip(buf.entries, values.items(), strict=True):
            slot.index, slot.data = idx, val & 0xFFFF_FFFF_FFFF_FFFF
        n = ioctl(self.fd, abi.KVM_SET_MSRS, ctypes.addressof(buf), "KVM_SET_MSRS")
        if n != len(values):
            bad = list(values)[n]
            raise HmError(f"KVM refused MSR {bad:#x} = {values[bad]:#x}")

    def get_state(self) -> CpuState:
        self._flush()
        regs, sregs = abi.KvmRegs(), abi.KvmSregs()
        ioctl(self.fd, abi.KVM_GET_REGS, ctypes.addressof(regs), "KVM_GET_REGS")
        ioctl(self.fd, abi.KVM_GET_SREGS, ctypes.addressof(sregs), "KVM_GET_SREGS")
        s = CpuState()
        s.gpr = {name: getattr(regs, name) for name in abi.GPR_NAMES}
        s.seg = {name: state.segment_from_kvm(getattr(sregs, kname))
                 for name, kname in state.SEGMENTS.items()}
        s.gdt = (sregs.gdt.base, sregs.gdt.limit)
        s.idt = (sregs.idt.base, sregs.idt.limit)
        s.cr0, s.cr2, s.cr3, s.cr4, s.efer = sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.efer
        s.msrs = self.get_msrs(self._state_msrs) if self._state_msrs else {}
        s.msrs[state.MSR_APIC_BASE] = sregs.apic_base
        s.fpu = self._get_fxsave()
        return s

    # The XSAVE area starts with the FXSAVE image; KVM_GET_FPU loses MXCSR on some kernels (PVM).
    def _get_fxsave(self) -> bytes:
        if self.vm.info.has("XSAVE"):
            buf = (ctypes.c_uint8 * abi.XSAVE_SIZE)()
            ioctl(self.fd, abi.KVM_GET_XSAVE, ctypes.addressof(buf), "KVM_GET_XSAVE")
            return bytes(buf)[:state.FXSAVE_SIZE]
        fpu = abi.KvmFpu()
        ioctl(self.fd, abi.KVM_GET_FPU, ctypes.addressof(fpu), "KVM_GET_FPU")
        return state.fpu_to_fxsave(fpu)

    def _set_fxsave(self, blob: bytes) -> None:
        if len(blob) < state.FXSAVE_SIZE:
            raise ValueError(f"FPU state must be an FXSAVE image of {state.FXSAVE_SIZE} bytes, "
                             f"got {len(blob)}")
        if self.vm.info.has("XSAVE"):
            buf = (ctypes.c_uint8 * abi.XSAVE_SIZE)()
            ioctl(self.fd, abi.KVM_GET_XSAVE, ctypes.addressof(buf), "KVM_GET_XSAVE")
            buf[:state.FXSAVE_SIZE] = blob[:state.FXSAVE_SIZE]
            buf[abi.XSAVE_HEADER_XSTATE_BV] |= 3      # x87 and SSE state present
            ioctl(self.fd, abi.KVM_SET_XSAVE, ctypes.addressof(buf), "KVM_SET_XSAVE")
            return
        fpu = abi.KvmFpu()
        state.fxsave_to_fpu(blob, fpu)
        ioctl(self.fd, abi.KVM_SET_FPU, ctypes.addressof(fpu), "KVM_SET_FPU")

    def set_state(self, s: CpuState) -> None:
        self._flush()
        self._queued.clear()
        self._in_offset = -1
        self._mmio_read_pending = False
        self._mmio_parts = None
        regs, sregs = abi.KvmRegs(), abi.KvmSregs()
        ioctl(self.fd, abi.KVM_GET_REGS, ctypes.addressof(regs), "KVM_GET_REGS")
        ioctl(self.fd, abi.KVM_GET_SREGS, ctypes.addressof(sregs), "KVM_GET_SREGS")
        for name, value in s.gpr.items():
            if name not in abi.GPR_NAMES:
                raise ValueError(f"unknown register {name!r}")
            setattr(regs, name, value & 0xFFFF_FFFF_FFFF_FFFF)
        for name, seg in s.seg.items():
            kname = state.SEGMENTS.get(name)
            if kname is None:
                raise ValueError(f"unknown segment register {name!r}")
            state.segment_to_kvm(seg, getattr(sregs, kname))
        sregs.gdt.base, sregs.gdt.limit = s.gdt[0], s.gdt[1] & 0xFFFF
        sregs.idt.base, sregs.idt.limit = s.idt[0], s.idt[1] & 0xFFFF
        sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.efer = s.cr0, s.cr2, s.cr3, s.cr4, s.efer
        msrs = dict(s.msrs)
        if state.MSR_APIC_BASE in msrs:
            sregs.apic_base = msrs.pop(state.MSR_APIC_BASE)
        ioctl(self.fd, abi.KVM_SET_SREGS, ctypes.addressof(sregs), "KVM_SET_SREGS")
        ioctl(self.fd, abi.KVM_SET_REGS, ctypes.addressof(regs), "KVM_SET_REGS")
        if s.fpu:
            self._set_fxsave(s.fpu)
        keep = {k: v for k, v in msrs.items() if k in self._state_msrs}
        if keep:
            self.set_msrs(keep)
        self._irq_info = 0

    def close(self) -> None:
        if self.fd < 0:
            return
        del self._hdr, self._io, self._mmio
        self._mm.close()
        os.close(self.fd)
        self.fd = -1
