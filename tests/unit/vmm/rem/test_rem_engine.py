"""REM on small assembled guests: exceptions and interrupts through the guest's IVT/IDT,
SYSCALL/SYSRET and ring changes through the TSS (RSP0, IST), HLT, triple fault, preemption."""

import threading
import time

from tests.unit.vmm.rem.asm import assemble, needs_binutils
from vmm.boot import cpu_setup
from vmm.bus import Bus
from vmm.engine import HaltExit, InterruptedExit, ShutdownExit
from vmm.memory import GuestMemory
from vmm.rem.engine import RemVm

pytestmark = needs_binutils

CODE = 0x100000

# Long-mode scaffolding: IDT at `idt`, gates set with `setgate` (rax = handler, rdi = gate, dx = attr|ist)
LM_LIB = """
setgate:
    mov %ax, (%rdi)
    movw $0x10, 2(%rdi)
    mov %dx, 4(%rdi)
    shr $16, %rax
    mov %ax, 6(%rdi)
    shr $16, %rax
    mov %eax, 8(%rdi)
    movl $0, 12(%rdi)
    ret
.align 16
idtr: .word 256*16-1
      .quad 0
.align 16
idt: .fill 256*16, 1, 0
"""


def make_vcpu(image: bytes, state_fn=cpu_setup.long_mode_64, io=None, base=CODE):
    mem = GuestMemory(16 << 20)
    mem.write(base, image)
    vcpu = RemVm(mem, io or Bus("io"), Bus("mmio")).create_vcpu(0)
    vcpu.set_state(state_fn(mem, base))
    return vcpu, mem


def gpr(vcpu, *names):
    s = vcpu.get_state().gpr
    return [s[n] for n in names]


def test_exceptions_reach_the_idt_with_rip_and_error_code():
    src = """.code64
    mov $0x200000, %rsp
    lea idt(%rip), %rax
    mov %rax, idtr+2(%rip)
    lidt idtr(%rip)
    lea h3(%rip), %rax
    lea idt+3*16(%rip), %rdi
    mov $0x8e00, %dx
    call setgate
    lea h6(%rip), %rax
    lea idt+6*16(%rip), %rdi
    call setgate
    lea h14(%rip), %rax
    lea idt+14*16(%rip), %rdi
    call setgate
    int3
after_int3:
    ud2
    mov $0x100000000, %rbx
    movq (%rbx), %rax          # not mapped: #PF, 3 bytes long
    hlt
h3: mov (%rsp), %r8
    iretq
h6: mov (%rsp), %r9
    addq $2, (%rsp)
    iretq
h14: pop %r10                  # error code
    mov %cr2, %r11
    addq $3, (%rsp)
    iretq
""" + LM_LIB
    image = assemble(src, CODE)
    vcpu, _ = make_vcpu(image)
    assert isinstance(vcpu.run(), HaltExit)
    r8, r9, r10, r11, rip = gpr(vcpu, "r8", "r9", "r10", "r11", "rip")
    int3_at = CODE + image.index(b"\xcc")
    assert r8 == int3_at + 1                      # int3 pushes the next RIP
    assert r9 == int3_at + 1                      # #UD pushes the faulting RIP (ud2 follows int3)
    assert r10 == 0 and r11 == 0x1_0000_0000      # read, not present, supervisor; CR2 = address
    assert rip == CODE + len(image) - len(LM_LIB.encode()) + 0 or rip > int3_at
    assert vcpu.exits["exception"] == 3


def test_real_mode_interrupt_through_the_ivt():
    src = """.code16
    xor %ax, %ax
    mov %ax, %ds
    movw $handler, 0x08*4
    movw $0, 0x08*4+2
    xor %bx, %bx
    sti
1:  hlt
    cmp $2, %bx
    jne 1b
    cli
    hlt
handler:
    inc %bx
    iret
"""
    image = assemble(src, 0x7C00, bits=16)
    vcpu, _ = make_vcpu(image, lambda mem, base: cpu_setup.real_mode(0, base, base), base=0x7C00)
    for _ in range(2):
        assert isinstance(vcpu.run(), HaltExit)
        assert vcpu.interrupts_enabled()
        vcpu.inject_interrupt(0x08)
    assert isinstance(vcpu.run(), HaltExit)
    assert not vcpu.interrupts_enabled()
    assert gpr(vcpu, "rbx")[0] == 2


RING3 = """.code64
    mov $0x200000, %rsp
    lea idt(%rip), %rax
    mov %rax, idtr+2(%rip)
    lidt idtr(%rip)
    lgdt gdtr(%rip)
    lea tss(%rip), %rax            # TSS descriptor base
    mov %ax, gdt+0x28+2(%rip)
    shr $16, %rax
    mov %al, gdt+0x28+4(%rip)
    mov %ah, gdt+0x28+7(%rip)
    mov $0x28, %ax
    ltr %ax
    lea irq(%rip), %rax            # vector 0x20: plain interrupt gate (stack from RSP0)
    lea idt+0x20*16(%rip), %rdi
    mov $0x8e00, %dx
    call setgate
    lea nmi_like(%rip), %rax       # vector 0x21: IST1
    lea idt+0x21*16(%rip), %rdi
    mov $0x8e01, %dx
    call setgate
    mov $0xc0000080, %ecx          # EFER.SCE
    rdmsr
    or $1, %eax
    wrmsr
    mov $0xc0000081, %ecx          # STAR: kernel CS 0x10, user base 0x18 (+16 = CS 0x2b, +8 = SS 0x23)
    xor %eax, %eax
    mov $0x00180010, %edx
    wrmsr
    mov $0xc0000082, %ecx
    lea sysentry(%rip), %rax
    mov %rax, %rdx
    shr $32, %rdx
    wrmsr
    mov $0xc0000084, %ecx          # FMASK: IF|DF
    mov $0x600, %eax
    xor %edx, %edx
    wrmsr
    pushq $0x23                    # to ring 3: SS, RSP, RFLAGS (IF), CS, RIP
    pushq $0x180000
    pushq $0x3202                  # IF, IOPL 3 (port I/O allowed in ring 3)
    pushq $0x2b
    lea user(%rip), %rax
    push %rax
    iretq
user:
    mov $7, %rax
    std                            # DF set in user mode: FMASK clears it for the kernel
    syscall                        # kernel doubles rax
    cld
    mov %rax, %r12
1:  in $0x80, %al                # a port access: a safe point for preemption in ring 3
    cmpq $0, seen_irq(%rip)
    je 1b
    mov $99, %rax                  # done: ask the kernel to halt
    syscall
sysentry:
    cmp $99, %rax
    je kernel_done
    mov %rcx, %r13                 # return RIP
    mov %r11, %r14                 # user RFLAGS
    pushf
    pop %r15                       # kernel RFLAGS: IF cleared by FMASK
    add %rax, %rax
    sysretq
irq:
    mov 8(%rsp), %rbx              # pushed CS
    mov 32(%rsp), %rbp             # pushed SS
    mov %rsp, %rsi                 # RSP0-based frame
    movq $1, seen_irq(%rip)
    iretq
nmi_like:
    hlt
kernel_done:
    hlt
seen_irq: .quad 0
.align 16
gdtr: .word gdt_end-gdt-1
      .quad gdt
.align 16
gdt: .quad 0, 0
     .quad 0x00af9b000000ffff      # 0x10 kernel code
     .quad 0x00cf93000000ffff      # 0x18 kernel data
     .quad 0x00cff3000000ffff      # 0x20 user data (0x23)
     .quad 0x00affb000000ffff      # 0x28... replaced below
gdt_end:
"""


def test_ring3_syscall_sysret_and_interrupt_through_tss():
    # GDT layout needs a user code at 0x28 (SYSRET: STAR[63:48]+16) and the TSS elsewhere:
    src = RING3.replace("     .quad 0x00affb000000ffff      # 0x28... replaced below\n",
                        "     .quad 0x00affb000000ffff      # 0x28 user code (0x2b)\n"
                        "     .quad 0x0000890000000067, 0  # 0x30 TSS (16 bytes)\n")
    src = src.replace("gdt+0x28+", "gdt+0x30+").replace("mov $0x28, %ax\n    ltr", "mov $0x30, %ax\n    ltr")
    src += """
.align 16
tss: .long 0
     .quad 0x1f0000                # RSP0
     .quad 0, 0
     .quad 0                       # reserved
     .quad 0x1e0000                # IST1
     .fill 6, 8, 0
     .quad 0
     .word 0, 0x68
""" + LM_LIB
    image = assemble(src, CODE)
    vcpu, mem = make_vcpu(image)
    for table, count in ((0x1000, 1), (0x2000, 4), (0x3000, 2048)):   # make the identity map user-accessible
        for i in range(count):
            mem.write_u64(table + 8 * i, mem.read_u64(table + 8 * i) | 4)
    kicked = False
    stop = threading.Event()

    def kicker():
        while not stop.wait(0.001):
            vcpu.kick()
    t = threading.Thread(target=kicker)
    t.start()
    try:
        for _ in range(10000):
            ex = vcpu.run()
            if isinstance(ex, HaltExit):
                break
            assert isinstance(ex, InterruptedExit)
            if not kicked and vcpu.get_state().seg["cs"].selector == 0x2B and vcpu.interrupts_enabled():
                vcpu.inject_interrupt(0x20)          # a hardware IRQ while the guest is in ring 3
                kicked = True
    finally:
        stop.set()
        t.join()
    assert isinstance(ex, HaltExit)
    r12, r13, r14, r15, rbx, rbp, rsi = gpr(vcpu, "r12", "r13", "r14", "r15", "rbx", "rbp", "rsi")
    assert r12 == 14                                  # the kernel doubled 7 and SYSRET returned
    assert r14 & 0x200 and not r15 & 0x200            # user IF in R11; FMASK cleared IF in the kernel
    assert r14 & 0x400 and not r15 & 0x400            # and DF likewise
    assert CODE < r13 < CODE + len(image)
    assert kicked and rbx == 0x2B and rbp == 0x23     # interrupted ring 3: pushed user CS and SS
    assert 0x1F0000 - 0x40 <= rsi < 0x1F0000          # frame on the TSS's RSP0 stack


def test_triple_fault_is_a_shutdown_exit():
    image = assemble(""".code64
    xor %rsp, %rsp
    lidt zero(%rip)
    int3
zero: .word 0
      .quad 0
""", CODE)
    vcpu, _ = make_vcpu(image)
    assert isinstance(vcpu.run(), ShutdownExit)


STRESS = """.code64
    mov $0x200000, %rsp
    lea idt(%rip), %rax
    mov %rax, idtr+2(%rip)
    lidt idtr(%rip)
    lea h3(%rip), %rax
    lea idt+3*16(%rip), %rdi
    mov $0x8e00, %dx
    call setgate
    xor %r12, %r12
    xor %r13, %r13
loop:
    mov %rsp, %r14
    call func
    cmp %rsp, %r14
    jne bad
    int3
    lea 1(%r12), %rax
    cmp %rax, %r13
    jne bad
    mov %r12d, %eax
    not %eax
    mov %eax, imm+1(%rip)          # patch the next instruction (self-modifying code)
imm:
    mov $0x11111111, %ebx
    cmp %eax, %ebx
    jne bad
    lea src(%rip), %rsi
    lea dst(%rip), %rdi
    mov $64, %rcx
    rep movsb
    inc %r12
    cmp $ITER, %r12
    jne loop
    mov $0x600d, %r15
    hlt
bad: mov $0xbad, %r15
    hlt
func: push %rbx
    pop %rbx
    ret
h3: inc %r13
    iretq
src: .fill 64, 1, 0x5a
dst: .fill 64, 1, 0
""" + LM_LIB


def test_preemption_by_kick_keeps_guest_state_consistent():
    image = assemble(STRESS.replace("ITER", "30000"), CODE)
    vcpu, _ = make_vcpu(image)
    stop = threading.Event()

    def kicker():
        while not stop.is_set():
            time.sleep(0.0003)
            vcpu.kick()
    t = threading.Thread(target=kicker)
    t.start()
    runs = 0
    try:
        while True:
            ex = vcpu.run()
            runs += 1
            if not isinstance(ex, InterruptedExit):
                break
    finally:
        stop.set()
        t.join()
    assert isinstance(ex, HaltExit)
    r12, r13, r15 = gpr(vcpu, "r12", "r13", "r15")
    assert (r15, r12, r13) == (0x600D, 30000, 30000)
    assert runs > 5                                   # kicks really ended runs


def test_cpu_state_round_trip():
    image = assemble(".code64\n hlt\n", CODE)
    vcpu, mem = make_vcpu(image)
    st = vcpu.get_state()
    st.gpr["rax"] = 0x1122334455667788
    st.gpr["r15"] = 42
    st.msrs[0xC0000082] = 0xFFFFFFFF81000000
    vcpu.set_state(st)
    back = vcpu.get_state()
    assert back.gpr["rax"] == 0x1122334455667788 and back.gpr["r15"] == 42
    assert back.msrs[0xC0000082] == 0xFFFFFFFF81000000
    assert back.seg["cs"].flags == cpu_setup.CODE64 and back.efer & (1 << 10)
    assert back.fpu == st.fpu
