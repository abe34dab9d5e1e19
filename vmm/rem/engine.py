"""REM: the software engine — unicorn (QEMU TCG) behind vmm.engine's contract.

What unicorn leaves to the VMM and how REM does it:
- Guest RAM: the GuestMemory mapping is mapped into unicorn with mem_map_ptr; the VGA
  hole and the rest of the 4 GiB below the firmware ROM are MMIO routed to the MMIO bus;
  the PAM segments and the ROM are vmm/rem/physmap.py's.
- Port I/O: IN/OUT instruction hooks call the port bus inline (no exit per access).
- Exceptions: unicorn reports them at UC_HOOK_INTR; the hook hands them to QEMU's own
  delivery code (see qemu_cpu.py), so #PF/#GP/#UD/int3/INT n reach the guest's IDT with
  error codes, privilege change and IST, and QEMU's double/triple-fault logic applies.
- SYSCALL: stock unicorn only calls hooks for it; the project's build performs the SDM
  transition (STAR/LSTAR/CSTAR/FMASK) itself from long mode (patch 0007), and the hook here
  does it with a stock library and raises #UD where SYSCALL is not enabled.
- Preemption: with the project's unicorn build (scripts/unicorn; qemu_cpu.PATCHED), a
  kick from any thread stops the guest at the next translation-block boundary, as QEMU's
  cpu_exit does, so a guest spinning without I/O still gets its timer tick.  Stock 2.1.4
  checked for a stop after every load and store and then re-ran the instruction whose
  store had happened (doubling an `incq (m)` or `lock xadd`), and skipped the SYSCALL
  hook once a stop was pending: it corrupted guests.  With a stock library REM falls
  back to stopping at the next safe point on the vCPU thread (a port access, an
  exception or interrupt delivery, SYSCALL, HLT); a console command (`kick_urgent`) then
  stops a guest that reaches none within FORCE_STOP_S asynchronously, as a last resort.
- Self-modifying code: the project's build write-protects a page exactly while it holds
  translated code (any virtual alias), so guest stores run at full speed elsewhere; device
  writes into guest RAM (GuestMemory write listeners) drop the code of the pages they hit
  before the guest runs again (the vCPU is stopped at the next block to do it).
- Runs use unicorn's exits API with no exits and `until=0`, which keeps unicorn from
  translating an `until` address through the guest page tables after every run (that
  clobbered CR2 and the in-flight exception state).
- CPUID: the GIM provider (vmm.gim; "none" by default) answers leaf 1 (hypervisor-present
  bit) and the hypervisor block 0x40000000+ from the provider; every other leaf is QEMU's
  own answer (the hook returns at once).  REM implements none of the providers' MSRs or
  hypercalls, so its EngineSupport offers none of them (KVM guests keep their own clock).
- HLT: QEMU halts and returns; REM reports HaltExit and EM waits.  A triple fault ends
  the run without a halt and is reported as ShutdownExit.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time

from unicorn import (
    UC_ARCH_X86,
    UC_HOOK_INSN,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_MODE_64,
    UC_PROT_ALL,
    UC_PROT_EXEC,
    Uc,
    UcError,
)
from unicorn.unicorn_py3 import unicorn as unicorn_lib
from unicorn.x86_const import (
    UC_CPU_X86_QEMU64,
    UC_X86_INS_CPUID,
    UC_X86_INS_IN,
    UC_X86_INS_OUT,
    UC_X86_INS_SYSCALL,
    UC_X86_REG_EFLAGS,
)

from vmm.bus import Bus
from vmm.engine import (
    CpuState,
    HaltExit,
    InternalErrorExit,
    InterruptedExit,
    ShutdownExit,
    VcpuExit,
)
from vmm.gim import HYPERVISOR_BASE, HYPERVISOR_END, EngineSupport, Gim
from vmm.memory import GuestMemory
from vmm.rem import delivery_check, regs
from vmm.rem.physmap import RemPhysMap
from vmm.rem.qemu_cpu import (
    HF_CS32,
    HF_CS64,
    HF_SS32,
    OFF_CR,
    OFF_DF,
    OFF_EFLAGS,
    OFF_EIP,
    OFF_IDT,
    OFF_REGS,
    PATCHED,
    R_CS,
    R_SS,
    QemuCpu,
    UnicornLayoutError,
    library_description,
)
from vmm.rem.string_io import bulk_rep_ins

MSR_EFER = 0xC000_0080
MSR_STAR = 0xC000_0081
MSR_LSTAR = 0xC000_0082
MSR_CSTAR = 0xC000_0083
MSR_FMASK = 0xC000_0084
EFER_SCE = 1
EFER_LMA = 1 << 10
RF_MASK = 1 << 16
DF_MASK = 1 << 10
OFF_EFER = 592         # CPUX86State.efer (checked by regs.py's users through msr_read)
FOUR_GIB = 1 << 32
# QEMU's default CPU model (as `qemu-system-x86_64 -accel tcg`), not unicorn's default Haswell:
# a guest on an Intel model turns on page-table isolation (a TLB flush at every kernel entry),
# and without rep_good it clears and copies memory with flag-heavy loops that TCG runs slowly.
CPU_MODEL = UC_CPU_X86_QEMU64
# more pending DMA ranges than this: flush all translated code instead
DMA_RANGES_MAX = 1024
log = logging.getLogger(__name__)
# A kernel that runs this long without a safe point is stopped asynchronously anyway.
FORCE_STOP_S = 0.2
# CPUState.halted (QEMU 5.0 in unicorn 2.1.4), checked when the vCPU is created
OFF_CPU_HALTED = 0x8198

# flags of the flat segments SYSCALL loads (QEMU's descriptor attribute layout)
_SYSCALL_CS = (1 << 23) | (1 << 15) | (1 << 12) | (1 << 11) | (1 << 9) | (1 << 8)
_SYSCALL_SS = (1 << 23) | (1 << 22) | (1 << 15) | (1 << 12) | (1 << 9) | (1 << 8)
_DESC_L = 1 << 21
_DESC_B = 1 << 22


_PREFIXES = frozenset((0xF2, 0xF3, 0x66, 0x67, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, *range(0x40, 0x50)))
_uclib = unicorn_lib.uclib
_uclib.uc_vmem_read.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.c_void_p,
                                ctypes.c_size_t]
_uclib.uc_vmem_read.restype = ctypes.c_int


class RemVm:
    """One guest machine on unicorn; each vCPU is its own unicorn instance over the same RAM."""

    name = "REM"

    # what REM implements behind a provider's CPUID promises: no clock MSRs, hypercalls or
    # Hyper-V synthetic MSRs
    SUPPORT = EngineSupport()

    def __init__(self, memory: GuestMemory, io_bus: Bus, mmio_bus: Bus, gim: Gim | None = None,
                 local_apic: bool = False):
        """gim: the paravirt provider answering CPUID (None: provider none; QEMU's own CPU model
        sets the hypervisor bit, which VirtualBox's none clears).  local_apic: the VMM models the
        local APIC on the MMIO bus, so CPUID keeps QEMU's APIC bit (else the guest uses the 8259A)."""
        self.local_apic = local_apic
        gim = Gim("none") if gim is None else gim
        self.memory = memory
        self.io_bus = io_bus
        self.mmio_bus = mmio_bus
        sup = gim.support
        if sup.kvm_clock_msrs or sup.kvm_hypercalls or sup.hyperv_msrs:
            # the guest would trust MSRs or hypercalls that fault here
            raise ValueError(f"REM implements no paravirt MSRs or hypercalls; {gim.name} offered {sup}")
        self.gim = gim
        self.vcpus: list[RemVcpu] = []
        self.firmware = None          # vmm.firmware.FirmwareImage, set before the first vCPU
        self.legacy_windows = None    # vmm.physmap windows of the PAM segments
        # a stock library is never used silently (VBox.log; stderr of the dev runner)
        (log.info if PATCHED else log.warning)("REM: %s", library_description())

    def flush_code(self) -> None:
        """RAM was replaced wholesale (machine reset): forget every translated block (vCPU thread)."""
        for v in self.vcpus:
            if v.uc is not None:
                v.uc.ctl_flush_tb()

    def set_legacy_windows(self, windows) -> None:
        """The chipset switched PAM segments (on the vCPU thread): remap them in every vCPU."""
        self.legacy_windows = list(windows)
        for v in self.vcpus:
            v.physmap.set_windows(self.legacy_windows)

    def create_vcpu(self, index: int) -> RemVcpu:
        if index != len(self.vcpus):
            raise ValueError(f"vCPUs are created in order; expected index {len(self.vcpus)}")
        if index > 0:
            raise ValueError("REM runs one vCPU")
        vcpu = RemVcpu(self, index)
        self.vcpus.append(vcpu)
        return vcpu

    def close(self) -> None:
        for v in self.vcpus:
            v.close()
        self.vcpus.clear()


class RemVcpu:
    def __init__(self, vm: RemVm, index: int):
        self.index = index
        self.vm = vm
        self._io = vm.io_bus
        self._mmio = vm.mmio_bus
        uc = self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        uc.ctl_set_cpu_model(CPU_MODEL)
        uc.ctl_exits_enabled(True)
        uc.ctl_set_exits([])
        self._hooks = []           # keep the ctypes callbacks alive
        self._calibrate_halted()
        self.cpu = QemuCpu(uc)
        if PATCHED:
            self.cpu.set_block_stops()
            self.cpu.set_native_syscall()
        if not vm.local_apic:
            self.cpu.clear_apic_feature()
        self.physmap = RemPhysMap(uc, vm.memory, vm.firmware, vm.legacy_windows, self._io_mmio_read,
                                  self._io_mmio_write)
        self.mmio_base = self.physmap.mmio_base
        self.physmap.watch(vm.mmio_bus)
        self._hooks += self.physmap.add_write_prot_hooks()
        self._hooks.append(uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, UC_X86_INS_IN))
        self._hooks.append(uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, UC_X86_INS_OUT))
        self._hooks.append(uc.hook_add(UC_HOOK_INSN, self._on_syscall, None, 1, 0, UC_X86_INS_SYSCALL))
        self._hooks.append(uc.hook_add(UC_HOOK_INTR, self._on_exception))
        self._gim = vm.gim
        self._hooks.append(uc.hook_add(UC_HOOK_INSN, self._on_cpuid, None, 1, 0, UC_X86_INS_CPUID))
        self._hooks.append(uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid))
        self._halted = ctypes.c_uint32.from_address(self.cpu.cs + OFF_CPU_HALTED)
        self._lock = threading.Lock()
        self._running = False
        self._kicked = False
        self._urgent = False
        self._urgent_at = 0.0
        self._want_window = False
        self._stop_reason: str | None = None
        self._triple = False
        self._error: BaseException | None = None
        self._thread: int | None = None             # the vCPU thread while run() is active
        self._dma: list[tuple[int, int]] = []     # guest-physical ranges devices wrote
        self._dma_all = False
        self.exits = {"syscall": 0, "exception": 0, "interrupt": 0, "halt": 0, "kick": 0, "dma": 0}
        if PATCHED:
            vm.memory.add_write_listener(self._on_guest_write)

    # -- setup ---------------------------------------------------------------------------------
    def _calibrate_halted(self) -> None:
        """Check that CPUState.halted sits where REM reads it: run one HLT on a scratch page."""
        uc, page = self.uc, 0xFFFF_F000
        uc.mem_map(page, 0x1000, UC_PROT_ALL)
        uc.mem_write(page, b"\xf4")
        cpu = QemuCpu(uc)
        halted = ctypes.c_uint32.from_address(cpu.cs + OFF_CPU_HALTED)
        uc.emu_start(page, 0)
        ok = halted.value == 1
        uc.mem_unmap(page, 0x1000)
        if not ok:
            raise UnicornLayoutError("unicorn's CPUState.halted is not where REM expects it")

    def close(self) -> None:
        if PATCHED:
            self.vm.memory.remove_write_listener(self._on_guest_write)
        self.physmap.unwatch()
        with self._lock:
            self.uc = None

    # -- device writes into guest RAM ----------------------------------------------------------
    def _on_guest_write(self, gpa: int, length: int) -> None:
        """Any thread: a device wrote guest RAM.  Translated code of those pages is dropped on
        the vCPU thread before the guest runs again; a running guest stops at its next block."""
        with self._lock:
            if len(self._dma) < DMA_RANGES_MAX:
                self._dma.append((gpa, length))
            else:
                self._dma_all = True
            if self._running and self.uc is not None:
                self.cpu.request_stop()

    def _flush_dma(self) -> None:
        with self._lock:
            ranges, self._dma = self._dma, []
            everything, self._dma_all = self._dma_all, False
        if everything:
            self.uc.ctl_flush_tb()
            return
        for gpa, length in ranges:
            self.cpu.invalidate_phys(gpa, length)

    def _on_in(self, uc, port, size, _data):
        try:
            value = self._io.read(port, size)
            bulk_rep_ins(self.cpu, self._fetch, self._io, self.vm.memory, port, size)
        except Exception as e:      # a device bug must not unwind through unicorn
            self._fail(e)
            return (1 << (8 * size)) - 1
        if self._kicked and not self._string_in():
            uc.emu_stop()           # a safe point: the run ends after this instruction's block
        return value

    def _string_in(self) -> bool:
        """Is the IN being hooked an INS (REP or not)?  A stop requested there lands after the
        store, RIP goes back to the instruction and the port is read again: a byte of a PIO or
        fw_cfg transfer would be lost.  Such a run ends at the next safe point instead."""
        cpu = self.cpu
        code = self._fetch(cpu.segment(R_CS)[1] + cpu.u64(OFF_EIP), 8)
        if code is None:
            return False
        for b in code:
            if b in _PREFIXES:
                continue
            return b in (0x6C, 0x6D)
        return False

    def _fetch(self, linear: int, n: int) -> bytes | None:
        """n bytes of code at a linear address, as the vCPU would fetch them; None if unmapped."""
        buf = ctypes.create_string_buffer(n)
        if _uclib.uc_vmem_read(self.uc._uch, linear & 0xFFFF_FFFF_FFFF_FFFF, UC_PROT_EXEC, buf, n) != 0:
            return None
        return buf.raw

    def _on_out(self, uc, port, size, value, _data):
        try:
            self._io.write(port, size, value & ((1 << (8 * size)) - 1))
        except Exception as e:
            self._fail(e)
        if self._kicked:
            uc.emu_stop()

    def _io_mmio_read(self, address, size):
        try:
            return self._mmio.read(address, size)
        except Exception as e:
            self._fail(e)
            return 0

    def _io_mmio_write(self, address, size, value):
        try:
            self._mmio.write(address, size, value)
        except Exception as e:
            self._fail(e)

    def _on_cpuid(self, uc, _data):
        """GIM's leaves: leaf 1 patched, 0x40000000+ replaced; 0 lets QEMU answer the rest itself."""
        cpu = self.cpu
        leaf = cpu.u32(OFF_REGS)
        if leaf != 1 and not HYPERVISOR_BASE <= leaf < HYPERVISOR_END:
            return 0
        subleaf = cpu.u32(OFF_REGS + 8)
        native = cpu.cpuid(leaf, subleaf) if leaf == 1 else (0, 0, 0, 0)
        eax, ebx, ecx, edx = self._gim.cpuid(leaf, subleaf, native)
        for index, value in ((0, eax), (3, ebx), (1, ecx), (2, edx)):    # RAX, RBX, RCX, RDX
            cpu.set_u64(OFF_REGS + 8 * index, value)                       # CPUID zero-extends
        return 1

    def _on_exception(self, uc, intno, _data):
        self.exits["exception"] += 1
        cpu = self.cpu
        target = delivery_check.escalate(self.vm.memory, intno, *self._delivery_regs())
        if target == intno:
            cpu.deliver_pending_exception()
        elif target is not None:
            cpu.deliver_fault(target)             # #GP or #DF (error code 0) instead of a bad gate
        else:
            self._stop_reason = "triple"
            uc.emu_stop()
            return
        if self._kicked:
            uc.emu_stop()

    def _delivery_regs(self) -> tuple[int, ...]:
        cpu = self.cpu
        return (cpu.u64(OFF_CR), cpu.u64(OFF_CR + 24), cpu.u64(OFF_CR + 32), cpu.u64(OFF_EFER),
                cpu.u64(OFF_IDT + 8), cpu.u32(OFF_IDT + 16))

    def _on_invalid(self, uc, _data):
        # #UD: unicorn reports it here instead of UC_HOOK_INTR; QEMU has set up the exception.
        self._on_exception(uc, 6, _data)
        return True

    def _on_syscall(self, uc, _data):
        self.exits["syscall"] += 1
        if not self._syscall_in_hook():
            self._stop_reason = "syscall-ud"
            uc.emu_stop()
        elif self._kicked:
            uc.emu_stop()

    def _fail(self, e: BaseException) -> None:
        self._error = e
        self.uc.emu_stop()

    # -- contract ------------------------------------------------------------------------------
    def run(self) -> VcpuExit:
        uc, cpu = self.uc, self.cpu
        if self._triple:
            self._triple = False
            return ShutdownExit("triple fault (interrupt delivery)")
        self._thread = threading.get_ident()
        while True:
            with self._lock:
                if self._kicked:
                    self._kicked = self._urgent = False
                    self.exits["kick"] += 1
                    return InterruptedExit()
                self._running = True
            self._stop_reason = None
            if self._dma or self._dma_all:
                self._flush_dma()
            if self.physmap.direct_pending:
                self.physmap.apply_direct()
            try:
                uc.emu_start(cpu.u64(8 * 16), 0)
            except UcError as e:
                if not self.physmap.store_pending:
                    return InternalErrorExit(f"unicorn: {e}", {"rip": hex(cpu.u64(8 * 16))})
                try:                                           # a store into ROM / read-only shadow RAM
                    self.physmap.step_over_store(cpu.u64(8 * 16))
                except UcError as e2:
                    return InternalErrorExit(f"unicorn: {e2}", {"rip": hex(cpu.u64(8 * 16))})
                continue
            finally:
                with self._lock:
                    self._running = False
            if self._error is not None:
                err, self._error = self._error, None
                return InternalErrorExit(f"device error: {err!r}", {"rip": hex(cpu.u64(8 * 16))})
            reason = self._stop_reason
            if reason == "triple":
                return ShutdownExit("triple fault")
            if reason == "syscall-ud":
                # SYSCALL with EFER.SCE clear (or outside long mode): #UD at the instruction
                cpu.set_u64(OFF_EIP, cpu.u64(OFF_EIP) - 2)
                cpu.deliver_fault(6)
                continue
            if cpu.take_halted() if PATCHED else self._halted.value:
                self._halted.value = 0
                self.exits["halt"] += 1
                return HaltExit()
            if self._kicked or (self._want_window and cpu.interrupts_enabled()):
                with self._lock:
                    self._kicked = self._urgent = False
                self.exits["kick"] += 1
                return InterruptedExit()
            if self._dma or self._dma_all:
                self.exits["dma"] += 1             # stopped to drop code a device overwrote
                continue
            # Emulation ended on its own without HLT: QEMU's triple-fault path (EXCP_HLT).
            return ShutdownExit("triple fault")

    def complete_io(self, value: int) -> None:
        raise RuntimeError("REM completes port and MMIO accesses inline; there is no pending I/O")

    def kick(self) -> None:
        """Ask the run to end (timer due, interrupt pending): at the next block boundary with the
        project's unicorn build, else at the next safe point."""
        with self._lock:
            self._kicked = True
            if PATCHED and self._running and self.uc is not None:
                self.cpu.request_stop()

    def kick_inline(self) -> None:
        """On the vCPU thread, inside a hook: an interrupt became pending through the guest's own
        access; end this run at the next block so EM delivers it (or waits for IF)."""
        with self._lock:
            if not self._running:
                return                      # EM looks at the interrupt controller before the next run
            self._kicked = True
            if PATCHED and self.uc is not None:
                self.cpu.request_stop()

    def kick_urgent(self) -> None:
        """A console command waits: like kick(), but a kernel that reaches no safe point within
        FORCE_STOP_S is stopped asynchronously (the last resort; see the module docstring)."""
        if PATCHED:
            self.kick()
            return
        now = time.monotonic()
        with self._lock:
            if not self._urgent:
                self._urgent = True
                self._urgent_at = now
            self._kicked = True
            if self._running and self.uc is not None and now - self._urgent_at >= FORCE_STOP_S:
                self.uc.emu_stop()

    def interrupts_enabled(self) -> bool:
        return self.cpu.interrupts_enabled()

    def inject_interrupt(self, vector: int) -> None:
        self.exits["interrupt"] += 1
        target = delivery_check.escalate(self.vm.memory, vector & 0xFF, *self._delivery_regs())
        if target == vector & 0xFF:
            self.cpu.deliver_hardware_interrupt(vector)
        elif target is not None:
            self.cpu.deliver_fault(target)
        else:
            self._triple = True                    # reported by the next run()

    def request_interrupt_window(self, wanted: bool) -> None:
        """EM has an interrupt waiting for IF: with the project's build the run ends right after
        the instruction that enables interrupts (an interrupt-window exit); else at EM's next
        poll (WINDOW_NS)."""
        self._want_window = wanted
        if PATCHED:
            self.cpu.set_irq_window(wanted)

    # -- SYSCALL (SDM: 64-bit and compatibility mode callers) ----------------------------------
    def _syscall_in_hook(self) -> bool:
        """Inside the SYSCALL hook: enter the kernel as the SDM says; False if SYSCALL must #UD.

        QEMU restored RIP to the SYSCALL before the hook and adds the instruction length (2)
        after it, and the block ends there, so the new CS/SS/CPL take effect at once.  As in
        QEMU's own SYSCALL, the arithmetic flags stay as they are (the kernel does not read
        them); IF, TF, DF, AC... are cleared by FMASK in env->eflags and env->df.
        """
        uc, cpu = self.uc, self.cpu
        efer = cpu.u64(OFF_EFER)
        if not efer & EFER_SCE or not efer & EFER_LMA:
            return False
        rip = cpu.u64(OFF_EIP)
        rflags = uc.reg_read(UC_X86_REG_EFLAGS)
        star = uc.msr_read(MSR_STAR)
        fmask = uc.msr_read(MSR_FMASK)
        code64 = bool(cpu.hflags & HF_CS64)
        target = uc.msr_read(MSR_LSTAR if code64 else MSR_CSTAR)
        cpu.set_u64(OFF_REGS + 8 * 1, rip + 2)                   # RCX = return address
        cpu.set_u64(OFF_REGS + 8 * 11, rflags & ~RF_MASK)         # R11 = RFLAGS
        cpu.set_u64(OFF_EFLAGS, cpu.u64(OFF_EFLAGS) & ~(fmask | RF_MASK) & ~0x8D5)
        if fmask & DF_MASK:
            cpu.set_u32(OFF_DF, 1)
        sel = (star >> 32) & 0xFFFC
        cpu.set_segment(R_CS, sel, 0, 0xFFFFFFFF, _SYSCALL_CS | _DESC_L)
        cpu.set_segment(R_SS, sel + 8, 0, 0xFFFFFFFF, _SYSCALL_SS)
        cpu.hflags = (cpu.hflags & ~3) | HF_CS32 | HF_SS32 | HF_CS64
        cpu.set_u64(OFF_EIP, target - 2)
        return True

    # -- state ---------------------------------------------------------------------------------
    def get_state(self) -> CpuState:
        return regs.read_state(self.uc, self.cpu)

    def set_state(self, state: CpuState) -> None:
        regs.write_state(self.uc, self.cpu, state)


