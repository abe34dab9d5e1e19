"""REM with the project's unicorn build: asynchronous preemption at block boundaries and
self-modifying code (guest stores through any alias, device DMA into code pages).

The stress tests are the ones that caught stock unicorn 2.1.4: a stop requested from another
thread re-ran read-modify-write instructions whose store had happened, and made SYSCALL /
CPUID hooks be skipped."""

import threading
import time

import pytest

from tests.unit.vmm.rem.asm import assemble, needs_binutils
from vmm.boot import cpu_setup
from vmm.bus import Bus
from vmm.engine import HaltExit, InterruptedExit
from vmm.gim import Gim
from vmm.memory import GuestMemory
from vmm.rem import qemu_cpu
from vmm.rem.engine import RemVm

pytestmark = needs_binutils
CODE = 0x100000
ALIAS = 0x80_0000_0000          # PML4[1] = PML4[0]: a second virtual mapping of low RAM
FUNC = 0x180000                 # a page of code the guest rewrites


@pytest.fixture(autouse=True)
def _projects_unicorn():
    assert qemu_cpu.PATCHED, ("REM runs a stock unicorn: " + qemu_cpu.library_description())


def make_vcpu(src: str, io: Bus | None = None, gim: Gim | None = None):
    mem = GuestMemory(16 << 20)
    mem.write(CODE, assemble(src, CODE))
    vcpu = RemVm(mem, io or Bus("io"), Bus("mmio"), gim=gim).create_vcpu(0)
    vcpu.set_state(cpu_setup.long_mode_64(mem, CODE))
    return vcpu, mem


def gpr(vcpu, *names):
    g = vcpu.get_state().gpr
    return [g[n] for n in names]


def run_with_kicks(vcpu, period: float, limit_s: float = 120.0):
    """Run to HLT while another thread kicks every `period` seconds; returns (exit, runs)."""
    stop = threading.Event()

    def kicker():
        while not stop.is_set():
            time.sleep(period)
            vcpu.kick()
    t = threading.Thread(target=kicker)
    t.start()
    runs, end = 0, time.monotonic() + limit_s
    try:
        while time.monotonic() < end:
            ex = vcpu.run()
            runs += 1
            if not isinstance(ex, InterruptedExit):
                return ex, runs
    finally:
        stop.set()
        t.join()
    return None, runs


def test_a_spinning_guest_is_preempted_by_a_kick_from_another_thread():
    vcpu, _ = make_vcpu(".code64\n1: inc %rax\n jmp 1b\n")
    threading.Timer(0.05, vcpu.kick).start()
    assert isinstance(vcpu.run(), InterruptedExit)     # stock 2.1.4 REM: never returns
    a = gpr(vcpu, "rax")[0]
    threading.Timer(0.05, vcpu.kick).start()
    assert isinstance(vcpu.run(), InterruptedExit)
    assert gpr(vcpu, "rax")[0] > a                      # and it resumes where it stopped


LOCKED = """.code64
    mov $0x200000, %rsp
    xor %r12, %r12
    mov $1, %rdx
loop:
    lock incq c1(%rip)
    incq c2(%rip)
    mov $1, %rdx
    lock xadd %rdx, c3(%rip)
    mov c4(%rip), %rax
1:  lea 1(%rax), %rcx
    lock cmpxchg %rcx, c4(%rip)
    jne 1b
    addl $1, c5(%rip)
    inc %r12
    cmp $N, %r12
    jne loop
    mov c1(%rip), %r8
    mov c2(%rip), %r9
    mov c3(%rip), %r10
    mov c4(%rip), %r11
    mov c5(%rip), %r13d
    hlt
.align 64
c1: .quad 0
c2: .quad 0
c3: .quad 0
c4: .quad 0
c5: .quad 0
"""


def test_read_modify_write_counters_survive_frequent_async_stops():
    n = 300_000
    vcpu, _ = make_vcpu(LOCKED.replace("$N", f"${n}"))
    ex, runs = run_with_kicks(vcpu, 0.0001)
    assert isinstance(ex, HaltExit)
    assert gpr(vcpu, "r12", "r8", "r9", "r10", "r11", "r13") == [n] * 6
    assert runs > 20                                    # the stops really landed inside the loop


SYSCALLS = """.code64
    mov $0x200000, %rsp
    mov $0xc0000080, %ecx          # EFER.SCE
    rdmsr
    or $1, %eax
    wrmsr
    mov $0xc0000081, %ecx          # STAR: kernel CS 0x10, SS 0x18
    xor %eax, %eax
    mov $0x00180010, %edx
    wrmsr
    mov $0xc0000082, %ecx          # LSTAR
    lea sysentry(%rip), %rax
    mov %rax, %rdx
    shr $32, %rdx
    wrmsr
    mov $0xc0000084, %ecx          # FMASK: nothing
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    xor %r12, %r12                 # iterations
    xor %r13, %r13                 # system calls the "kernel" saw
    xor %r14, %r14                 # wrong answers
loop:
    lea 5(%r12), %rax
    syscall                        # the kernel doubles rax
    lea 10(%r12,%r12), %rbx
    cmp %rbx, %rax
    je 1f
    inc %r14
1:  mov $0x40000000, %eax          # GIM's CPUID leaf (a hook answers it)
    cpuid
    cmp $0x4b4d564b, %ebx          # "KVMK"
    je 2f
    inc %r14
2:  inc %r12
    cmp $N, %r12
    jne loop
    hlt
sysentry:                          # SYSCALL from ring 0: return without SYSRET
    inc %r13
    add %rax, %rax
    push %r11
    popfq
    jmp *%rcx
"""


def test_syscall_and_cpuid_hooks_run_under_frequent_async_stops():
    n = 20_000
    vcpu, _ = make_vcpu(SYSCALLS.replace("$N", f"${n}"), gim=Gim("kvm"))
    ex, runs = run_with_kicks(vcpu, 0.0001)
    assert isinstance(ex, HaltExit)
    assert gpr(vcpu, "r12", "r13", "r14") == [n, n, 0]
    assert runs > 20


ALIAS_SMC = """.code64
    mov $0x200000, %rsp
    mov %cr3, %rax                 # PML4[1] = PML4[0]: low RAM again at 512 GiB
    mov (%rax), %rbx
    mov %rbx, 8(%rax)
    mov %rax, %cr3
    xor %r12, %r12
    xor %r14, %r14                 # rounds that ran stale code
    movabs $ALIAS+FUNC+1, %rdi     # the immediate of `mov $imm, %eax` through the alias
    mov $FUNC+1, %rsi              # ... and through the identity mapping
loop:
    mov %r12d, %eax
    test $1, %r12
    jz 1f
    mov %eax, (%rdi)
    jmp 2f
1:  mov %eax, (%rsi)
2:  mov $FUNC, %rax
    call *%rax
    cmp %r12d, %eax
    je 3f
    inc %r14
3:  inc %r12
    cmp $1000, %r12
    jne loop
    hlt
"""


def test_code_rewritten_through_any_mapping_runs_new():
    vcpu, mem = make_vcpu(ALIAS_SMC.replace("ALIAS", str(ALIAS)).replace("FUNC", str(FUNC)))
    mem.write(FUNC, bytes.fromhex("b8ffffffff") + b"\xc3")          # mov $-1, %eax; ret
    assert isinstance(vcpu.run(), HaltExit)
    assert gpr(vcpu, "r12", "r14") == [1000, 0]


class DmaDevice:
    """A port that, when written, 'DMA's new code into FUNC (as a disk read would)."""

    def __init__(self, mem: GuestMemory):
        self.mem = mem
        self.value = 1

    def read(self, offset, size):
        return 0

    def write(self, offset, size, value):
        self.value = value
        self.mem.write(FUNC, bytes([0xB8]) + value.to_bytes(4, "little") + b"\xc3")


DMA_SYNC = """.code64
    mov $0x200000, %rsp
    xor %r12, %r12
    xor %r14, %r14
loop:
    lea 7(%r12), %eax
    out %al, $0x90                 # the device writes `mov $(r12+7), %eax; ret` at FUNC
    mov $FUNC, %rax
    call *%rax
    lea 7(%r12), %ebx
    and $0xff, %ebx
    cmp %ebx, %eax
    je 1f
    inc %r14
1:  inc %r12
    cmp $200, %r12
    jne loop
    hlt
"""


def test_device_dma_into_a_code_page_runs_the_new_code():
    io = Bus("io")
    vcpu, mem = make_vcpu(DMA_SYNC.replace("FUNC", str(FUNC)), io=io)
    io.register(0x90, 1, DmaDevice(mem))
    ex, _ = run_with_kicks(vcpu, 0.01)
    assert isinstance(ex, HaltExit)
    assert gpr(vcpu, "r12", "r14") == [200, 0]


DMA_ASYNC = """.code64
    mov $0x200000, %rsp
    xor %r12, %r12
1:  mov $FUNC, %rax
    call *%rax                     # returns 1 until a device thread rewrites FUNC
    inc %r12
    cmp $2, %eax
    jne 1b
    hlt
"""


def test_dma_from_another_thread_reaches_a_guest_running_that_code():
    vcpu, mem = make_vcpu(DMA_ASYNC.replace("FUNC", str(FUNC)))
    mem.write(FUNC, bytes.fromhex("b801000000c3"))
    threading.Timer(0.1, lambda: mem.write(FUNC, bytes.fromhex("b802000000c3"))).start()
    ex, _ = run_with_kicks(vcpu, 0.05, limit_s=30)
    assert isinstance(ex, HaltExit)                     # stale code would spin for ever
    assert gpr(vcpu, "r12")[0] > 1
