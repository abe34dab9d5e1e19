"""The /dev/kvm binary interface: ioctl numbers, capability ids and ctypes structures.

Only what HM uses, with the x86-64 layouts of <linux/kvm.h> (checked against the
kernel headers by tests/unit/vmm/hm/test_abi.py when a C compiler is present).
"""

from __future__ import annotations

import ctypes

KVMIO = 0xAE
KVM_API_VERSION = 12


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


def _io(nr: int) -> int:
    return _ioc(0, nr, 0)


def _iow(nr: int, size: int) -> int:
    return _ioc(1, nr, size)


def _ior(nr: int, size: int) -> int:
    return _ioc(2, nr, size)


def _iowr(nr: int, size: int) -> int:
    return _ioc(3, nr, size)


# ---- structures ----------------------------------------------------------------------

class KvmRegs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")]


GPR_NAMES = tuple(name for name, _ in KvmRegs._fields_)


class KvmSegment(ctypes.Structure):
    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint32), ("selector", ctypes.c_uint16),
                ("type", ctypes.c_uint8), ("present", ctypes.c_uint8), ("dpl", ctypes.c_uint8),
                ("db", ctypes.c_uint8), ("s", ctypes.c_uint8), ("l", ctypes.c_uint8),
                ("g", ctypes.c_uint8), ("avl", ctypes.c_uint8), ("unusable", ctypes.c_uint8),
                ("padding", ctypes.c_uint8)]


class KvmDtable(ctypes.Structure):
    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint16), ("padding", ctypes.c_uint16 * 3)]


SEGMENT_NAMES = ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")


class KvmSregs(ctypes.Structure):
    _fields_ = ([(n, KvmSegment) for n in SEGMENT_NAMES]
                + [("gdt", KvmDtable), ("idt", KvmDtable)]
                + [(n, ctypes.c_uint64) for n in ("cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base")]
                + [("interrupt_bitmap", ctypes.c_uint64 * 4)])


class KvmFpu(ctypes.Structure):
    _fields_ = [("fpr", ctypes.c_uint8 * 128), ("fcw", ctypes.c_uint16), ("fsw", ctypes.c_uint16),
                ("ftwx", ctypes.c_uint8), ("pad1", ctypes.c_uint8), ("last_opcode", ctypes.c_uint16),
                ("last_ip", ctypes.c_uint64), ("last_dp", ctypes.c_uint64),
                ("xmm", ctypes.c_uint8 * 256), ("mxcsr", ctypes.c_uint32), ("pad2", ctypes.c_uint32)]


class KvmUserspaceMemoryRegion(ctypes.Structure):
    _fields_ = [("slot", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("guest_phys_addr", ctypes.c_uint64),
                ("memory_size", ctypes.c_uint64), ("userspace_addr", ctypes.c_uint64)]


class KvmCpuidEntry2(ctypes.Structure):
    _fields_ = [("function", ctypes.c_uint32), ("index", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("eax", ctypes.c_uint32), ("ebx", ctypes.c_uint32), ("ecx", ctypes.c_uint32),
                ("edx", ctypes.c_uint32), ("padding", ctypes.c_uint32 * 3)]


KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1


def cpuid2_type(count: int) -> type[ctypes.Structure]:
    """struct kvm_cpuid2 with room for `count` entries."""
    class KvmCpuid2(ctypes.Structure):
        _fields_ = [("nent", ctypes.c_uint32), ("padding", ctypes.c_uint32),
                    ("entries", KvmCpuidEntry2 * count)]
    return KvmCpuid2


class KvmMsrEntry(ctypes.Structure):
    _fields_ = [("index", ctypes.c_uint32), ("reserved", ctypes.c_uint32), ("data", ctypes.c_uint64)]


def msrs_type(count: int) -> type[ctypes.Structure]:
    """struct kvm_msrs with room for `count` entries."""
    class KvmMsrs(ctypes.Structure):
        _fields_ = [("nmsrs", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("entries", KvmMsrEntry * count)]
    return KvmMsrs


def msr_list_type(count: int) -> type[ctypes.Structure]:
    class KvmMsrList(ctypes.Structure):
        _fields_ = [("nmsrs", ctypes.c_uint32), ("indices", ctypes.c_uint32 * count)]
    return KvmMsrList


class KvmPitConfig(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint32), ("pad", ctypes.c_uint32 * 15)]


KVM_PIT_SPEAKER_DUMMY = 1


class KvmIrqLevel(ctypes.Structure):
    _fields_ = [("irq", ctypes.c_uint32), ("level", ctypes.c_uint32)]


class KvmInterrupt(ctypes.Structure):
    _fields_ = [("irq", ctypes.c_uint32)]


class KvmVcpuEvents(ctypes.Structure):
    _fields_ = [("exc_injected", ctypes.c_uint8), ("exc_nr", ctypes.c_uint8),
                ("exc_has_error_code", ctypes.c_uint8), ("exc_pending", ctypes.c_uint8),
                ("exc_error_code", ctypes.c_uint32),
                ("int_injected", ctypes.c_uint8), ("int_nr", ctypes.c_uint8), ("int_soft", ctypes.c_uint8),
                ("int_shadow", ctypes.c_uint8),
                ("nmi_injected", ctypes.c_uint8), ("nmi_pending", ctypes.c_uint8),
                ("nmi_masked", ctypes.c_uint8), ("nmi_pad", ctypes.c_uint8),
                ("sipi_vector", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("smi", ctypes.c_uint8 * 4), ("triple_fault", ctypes.c_uint8),
                ("reserved", ctypes.c_uint8 * 26), ("exception_has_payload", ctypes.c_uint8),
                ("exception_payload", ctypes.c_uint64)]


class KvmMpState(ctypes.Structure):
    _fields_ = [("mp_state", ctypes.c_uint32)]


KVM_MP_STATE_RUNNABLE = 0
KVM_MP_STATE_HALTED = 3


class KvmClockData(ctypes.Structure):
    _fields_ = [("clock", ctypes.c_uint64), ("flags", ctypes.c_uint32), ("pad0", ctypes.c_uint32),
                ("realtime", ctypes.c_uint64), ("host_tsc", ctypes.c_uint64), ("pad", ctypes.c_uint32 * 4)]


class KvmIrqchip(ctypes.Structure):
    _fields_ = [("chip_id", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("chip", ctypes.c_uint8 * 512)]


class KvmPitState2(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint8 * 112)]


# kvm_run: fixed header, then the exit union at offset 32.
RUN_REQUEST_INTERRUPT_WINDOW = 0
RUN_IMMEDIATE_EXIT = 1
RUN_EXIT_REASON = 8
RUN_READY_FOR_INTERRUPT_INJECTION = 12
RUN_IF_FLAG = 13
RUN_UNION = 32


class KvmRunHeader(ctypes.Structure):
    _fields_ = [("request_interrupt_window", ctypes.c_uint8), ("immediate_exit", ctypes.c_uint8),
                ("padding1", ctypes.c_uint8 * 6), ("exit_reason", ctypes.c_uint32),
                ("ready_for_interrupt_injection", ctypes.c_uint8), ("if_flag", ctypes.c_uint8),
                ("flags", ctypes.c_uint16), ("cr8", ctypes.c_uint64), ("apic_base", ctypes.c_uint64),
                # union members used by HM, overlaid by hand at RUN_UNION
                ("u", ctypes.c_uint8 * 256)]


class RunIo(ctypes.Structure):
    _fields_ = [("direction", ctypes.c_uint8), ("size", ctypes.c_uint8), ("port", ctypes.c_uint16),
                ("count", ctypes.c_uint32), ("data_offset", ctypes.c_uint64)]


KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1


class RunMmio(ctypes.Structure):
    _fields_ = [("phys_addr", ctypes.c_uint64), ("data", ctypes.c_uint8 * 8), ("len", ctypes.c_uint32),
                ("is_write", ctypes.c_uint8)]


class RunInternal(ctypes.Structure):
    _fields_ = [("suberror", ctypes.c_uint32), ("ndata", ctypes.c_uint32), ("data", ctypes.c_uint64 * 16)]


class RunFailEntry(ctypes.Structure):
    _fields_ = [("hardware_entry_failure_reason", ctypes.c_uint64), ("cpu", ctypes.c_uint32)]


class RunSystemEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("ndata", ctypes.c_uint32), ("data", ctypes.c_uint64 * 16)]


class RunException(ctypes.Structure):
    _fields_ = [("exception", ctypes.c_uint32), ("error_code", ctypes.c_uint32)]


# ---- ioctls ----------------------------------------------------------------------------

KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_GET_MSR_INDEX_LIST = _iowr(0x02, 4)
KVM_CHECK_EXTENSION = _io(0x03)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_GET_SUPPORTED_CPUID = _iowr(0x05, 8)
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, ctypes.sizeof(KvmUserspaceMemoryRegion))
KVM_SET_TSS_ADDR = _io(0x47)
KVM_SET_IDENTITY_MAP_ADDR = _iow(0x48, 8)
KVM_CREATE_IRQCHIP = _io(0x60)
KVM_IRQ_LINE = _iow(0x61, ctypes.sizeof(KvmIrqLevel))
KVM_GET_IRQCHIP = _iowr(0x62, ctypes.sizeof(KvmIrqchip))
KVM_SET_IRQCHIP = _ior(0x63, ctypes.sizeof(KvmIrqchip))
KVM_CREATE_PIT2 = _iow(0x77, ctypes.sizeof(KvmPitConfig))
KVM_SET_CLOCK = _iow(0x7B, ctypes.sizeof(KvmClockData))
KVM_GET_CLOCK = _ior(0x7C, ctypes.sizeof(KvmClockData))
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, ctypes.sizeof(KvmRegs))
KVM_SET_REGS = _iow(0x82, ctypes.sizeof(KvmRegs))
KVM_GET_SREGS = _ior(0x83, ctypes.sizeof(KvmSregs))
KVM_SET_SREGS = _iow(0x84, ctypes.sizeof(KvmSregs))
KVM_INTERRUPT = _iow(0x86, ctypes.sizeof(KvmInterrupt))
KVM_GET_MSRS = _iowr(0x88, 8)
KVM_SET_MSRS = _iow(0x89, 8)
KVM_GET_FPU = _ior(0x8C, ctypes.sizeof(KvmFpu))
KVM_SET_FPU = _iow(0x8D, ctypes.sizeof(KvmFpu))
KVM_SET_CPUID2 = _iow(0x90, 8)
KVM_GET_MP_STATE = _ior(0x98, ctypes.sizeof(KvmMpState))
KVM_SET_MP_STATE = _iow(0x99, ctypes.sizeof(KvmMpState))
KVM_GET_PIT2 = _ior(0x9F, ctypes.sizeof(KvmPitState2))
KVM_SET_PIT2 = _iow(0xA0, ctypes.sizeof(KvmPitState2))
KVM_GET_VCPU_EVENTS = _ior(0x9F, ctypes.sizeof(KvmVcpuEvents))
KVM_SET_VCPU_EVENTS = _iow(0xA0, ctypes.sizeof(KvmVcpuEvents))
KVM_SET_TSC_KHZ = _io(0xA2)
KVM_GET_XSAVE = _ior(0xA4, 4096)
KVM_SET_XSAVE = _iow(0xA5, 4096)
XSAVE_SIZE = 4096
XSAVE_HEADER_XSTATE_BV = 512
KVM_GET_TSC_KHZ = _io(0xA3)

# ---- capabilities and exit reasons -----------------------------------------------------

CAP_IRQCHIP = 0
CAP_HLT = 1
CAP_USER_MEMORY = 3
CAP_SET_TSS_ADDR = 4
CAP_EXT_CPUID = 7
CAP_CLOCKSOURCE = 8
CAP_NR_VCPUS = 9
CAP_NR_MEMSLOTS = 10
CAP_PIT = 11
CAP_MP_STATE = 14
CAP_SYNC_MMU = 16
CAP_PIT2 = 33
CAP_SET_IDENTITY_MAP_ADDR = 37
CAP_ADJUST_CLOCK = 39
CAP_INTERNAL_ERROR_DATA = 40
CAP_HYPERV = 44
CAP_VCPU_EVENTS = 41
CAP_XSAVE = 55
CAP_GET_TSC_KHZ = 61
CAP_MAX_VCPUS = 66
CAP_KVMCLOCK_CTRL = 76
CAP_READONLY_MEM = 81
CAP_SPLIT_IRQCHIP = 121
CAP_IMMEDIATE_EXIT = 136

CAP_NAMES = {
    CAP_IRQCHIP: "IRQCHIP", CAP_HLT: "HLT", CAP_USER_MEMORY: "USER_MEMORY", CAP_SET_TSS_ADDR: "SET_TSS_ADDR",
    CAP_EXT_CPUID: "EXT_CPUID", CAP_CLOCKSOURCE: "CLOCKSOURCE", CAP_NR_VCPUS: "NR_VCPUS",
    CAP_NR_MEMSLOTS: "NR_MEMSLOTS", CAP_PIT: "PIT", CAP_MP_STATE: "MP_STATE", CAP_SYNC_MMU: "SYNC_MMU",
    CAP_PIT2: "PIT2", CAP_SET_IDENTITY_MAP_ADDR: "SET_IDENTITY_MAP_ADDR", CAP_ADJUST_CLOCK: "ADJUST_CLOCK",
    CAP_INTERNAL_ERROR_DATA: "INTERNAL_ERROR_DATA", CAP_HYPERV: "HYPERV", CAP_VCPU_EVENTS: "VCPU_EVENTS",
    CAP_XSAVE: "XSAVE",
    CAP_GET_TSC_KHZ: "GET_TSC_KHZ", CAP_MAX_VCPUS: "MAX_VCPUS", CAP_KVMCLOCK_CTRL: "KVMCLOCK_CTRL",
    CAP_READONLY_MEM: "READONLY_MEM", CAP_SPLIT_IRQCHIP: "SPLIT_IRQCHIP",
    CAP_IMMEDIATE_EXIT: "IMMEDIATE_EXIT",
}

EXIT_UNKNOWN = 0
EXIT_EXCEPTION = 1
EXIT_IO = 2
EXIT_HYPERCALL = 3
EXIT_DEBUG = 4
EXIT_HLT = 5
EXIT_MMIO = 6
EXIT_IRQ_WINDOW_OPEN = 7
EXIT_SHUTDOWN = 8
EXIT_FAIL_ENTRY = 9
EXIT_INTR = 10
EXIT_INTERNAL_ERROR = 17
EXIT_SYSTEM_EVENT = 24

INTERNAL_ERROR_SUBERRORS = {1: "emulation failure", 2: "simultaneous exceptions", 3: "delivery event",
                            4: "unexpected exit reason"}
SYSTEM_EVENT_NAMES = {1: "shutdown", 2: "reset", 3: "crash"}
