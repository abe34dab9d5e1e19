"""Tiny test guests, built with GNU as + ld + objcopy into flat binaries entered at 0000:7C00.

Every guest starts in real mode (the flat-binary boot contract) and switches modes itself.
They report through the test device at RESULT_PORT (32-bit OUT = one recorded value),
read from INPUT_PORT (the device counts reads) and end with an OUT to DONE_PORT.
MMIO_BASE is a scratch MMIO page above RAM.
"""

from __future__ import annotations

import hashlib
import pathlib
import shutil
import subprocess
import tempfile

RESULT_PORT = 0x10
INPUT_PORT = 0x11
DONE_PORT = 0x12
MMIO_BASE = 0xD000_0000
LOAD = 0x7C00

_CACHE = pathlib.Path(tempfile.gettempdir()) / "vboxpy-hm-guests"


def toolchain_missing() -> str:
    """'' when as/ld/objcopy are on PATH, else what is missing."""
    missing = [t for t in ("as", "ld", "objcopy") if shutil.which(t) is None]
    return ", ".join(missing)


def assemble(source: str) -> bytes:
    """Assemble AT&T source (starting in .code16) linked at 0x7C00; cached by content."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    _CACHE.mkdir(parents=True, exist_ok=True)
    out = _CACHE / f"{digest}.bin"
    if out.exists():
        return out.read_bytes()
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        (tmp / "g.s").write_text(".globl _start\n_start:\n" + source)
        for cmd in (["as", "--64", "-o", "g.o", "g.s"],
                    ["ld", "-m", "elf_x86_64", "-Ttext", hex(LOAD), "-o", "g.elf", "g.o"],
                    ["objcopy", "-O", "binary", "g.elf", "g.bin"]):
            r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError(f"{cmd[0]} failed: {r.stderr}")
        data = (tmp / "g.bin").read_bytes()
    out.write_bytes(data)
    return data


_DONE = f"""
done:
    mov $0x{DONE_PORT:x}, %dx
    out %al, %dx
    cli
9:  hlt
    jmp 9b
"""

# Shared protected-mode entry: flat 4 GiB code/data, then `pm32`.
_TO_PM32 = """
.code16
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7000, %sp
    lgdtl gdtr
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $pm32
.code32
pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7000, %esp
"""

_GDT = """
.p2align 3
gdt: .quad 0
    .quad 0x00cf9a000000ffff      # 0x08 code32
    .quad 0x00cf92000000ffff      # 0x10 data
    .quad 0x00af9a000000ffff      # 0x18 code64
gdtr: .word 31
    .long gdt
"""

REAL_MODE_IO = f"""
.code16
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7000, %sp
    mov $0x1234, %ax
    add $0x0101, %ax               # arithmetic in real mode
    mov $0x{RESULT_PORT:x}, %dx
    outl %eax, %dx                 # 0x1335 (upper half of eax is 0)
    mov $0x{INPUT_PORT:x}, %dx
    inl %dx, %eax                  # first read of the input port
    mov $0x{RESULT_PORT:x}, %dx
    outl %eax, %dx
    # REP OUTSB: three bytes, each recorded
    mov $bytes, %si
    mov $3, %cx
    mov $0x{RESULT_PORT:x}, %dx
    cld
    rep outsb
    # REP INSW: two reads into buf, then report them
    mov $buf, %di
    mov $2, %cx
    mov $0x{INPUT_PORT:x}, %dx
    rep insw
    mov $0x{RESULT_PORT:x}, %dx
    movzwl buf, %eax
    outl %eax, %dx
    movzwl buf+2, %eax
    outl %eax, %dx
    jmp done
bytes: .byte 0xA1, 0xB2, 0xC3
buf: .word 0, 0
{_DONE}
"""

PROTECTED_MMIO = f"""
{_TO_PM32}
    mov $0x{MMIO_BASE:x}, %ebx
    movl $0xCAFEF00D, (%ebx)       # MMIO write
    movw $0xBEEF, 8(%ebx)
    mov 4(%ebx), %eax              # MMIO read (the device returns offset-derived data)
    out %eax, ${RESULT_PORT}
    mov $0x20000, %edi             # RAM above 64 KiB, only reachable in protected mode
    movl $0x11223344, (%edi)
    mov (%edi), %eax
    out %eax, ${RESULT_PORT}
    jmp done
{_DONE}
{_GDT}
"""

PROTECTED_PAGING = f"""
{_TO_PM32}
    mov $0x10000, %edi             # page directory, page tables at 0x11000 and 0x12000
    xor %eax, %eax
    mov $0x3000/4, %ecx
    rep stosl
    movl $0x11003, 0x10000
    movl $0x12003, 0x10004         # linear 4 MiB..8 MiB
    mov $0x11000, %edi
    mov $3, %eax
    mov $1024, %ecx
1:  mov %eax, (%edi)               # identity-map the first 4 MiB
    add $0x1000, %eax
    add $4, %edi
    loop 1b
    movl $0x9003, 0x12000          # linear 0x400000 -> physical 0x9000
    movl $0x5EED1234, 0x9000
    mov $0x10000, %eax
    mov %eax, %cr3
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0
    mov 0x400000, %eax
    out %eax, ${RESULT_PORT}
    movl $0x77, 0x400004           # write through the mapping, read back physically
    mov 0x9004, %eax
    out %eax, ${RESULT_PORT}
    jmp done
{_DONE}
{_GDT}
"""

LONG_MODE = f"""
{_TO_PM32}
    mov $0x10000, %edi             # PML4 0x10000 -> PDPT 0x11000 -> PD 0x12000 (2 MiB pages)
    xor %eax, %eax
    mov $0x3000/4, %ecx
    rep stosl
    movl $0x11003, 0x10000
    movl $0x12003, 0x11000
    movl $0x13003, 0x11018         # PDPT[3]: 3 GiB..4 GiB -> PD 0x13000
    movl $0x000083, 0x12000
    movl $0x200083, 0x12008
    movl $0xD0000083, 0x13000+0x80*8   # 0xD0000000 (MMIO) 2 MiB page
    mov %cr4, %eax
    or $0x20, %eax                 # PAE
    mov %eax, %cr4
    mov $0x10000, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax                # EFER.LME
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0
    ljmp $0x18, $lm64
.code64
lm64:
    mov $0x10, %ax
    mov %ax, %ds
    movabs $0x0123456789ABCDEF, %rax
    mov %rax, 0x30000
    mov 0x30000, %rbx
    rol $8, %rbx
    mov %ebx, %eax
    out %eax, ${RESULT_PORT}       # rol 8 -> 0x23456789ABCDEF01: low half 0xABCDEF01
    shr $32, %rbx
    mov %ebx, %eax
    out %eax, ${RESULT_PORT}
    mov $0x{MMIO_BASE:x}, %rdi
    movl $0x5555AAAA, 16(%rdi)
    mov 12(%rdi), %eax
    out %eax, ${RESULT_PORT}
    movabs $0x1122334455667788, %rax
    mov %rax, 32(%rdi)             # 8-byte MMIO write: two 4-byte device writes
    mov 40(%rdi), %rax             # 8-byte MMIO read: two 4-byte device reads
    out %eax, ${RESULT_PORT}
    shr $32, %rax
    out %eax, ${RESULT_PORT}
    mov $0xC0000080, %ecx
    rdmsr
    out %eax, ${RESULT_PORT}       # EFER: LME|LMA = 0x500
    jmp done
{_DONE}
.code32
{_GDT}
"""

def _real_mode_8259(irq: int) -> str:
    """Real mode, `handler` at the IVT entry of IRQ `irq` (vectors 8..15), the 8259A initialised with
    only that IRQ unmasked."""
    slot = 4 * (8 + irq)
    return f""".code16
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7000, %sp
    movw $handler, {slot:#x}
    movw $0, {slot + 2:#x}
    mov $0x11, %al                 # ICW1
    out %al, $0x20
    mov $0x08, %al                 # ICW2: vectors 8..15
    out %al, $0x21
    mov $0x04, %al                 # ICW3
    out %al, $0x21
    mov $0x01, %al                 # ICW4
    out %al, $0x21
    mov ${0xFF & ~(1 << irq):#x}, %al               # only IRQ{irq}
    out %al, $0x21"""


_IRQ0_SETUP = _real_mode_8259(0)
_IRQ1_SETUP = _real_mode_8259(1)
# PIT channel 0, rate generator at ~1 kHz (IRQ0)
_PIT_1KHZ = """    mov $0x34, %al                 # channel 0, lo/hi, mode 2
    out %al, $0x43
    mov $(1193 & 0xFF), %al
    out %al, $0x40
    mov $(1193 >> 8), %al
    out %al, $0x40"""

# PIT channel 0 at ~1 kHz through the 8259A (vector 8): count 3 ticks with STI;HLT, so every
# tick wakes the halted CPU.
PIT_INTERRUPTS = f"""
{_IRQ0_SETUP}
{_PIT_1KHZ}
    movw $0, halts
1:  sti
    hlt
    cli
    incw halts
    cmpw $3, ticks
    jb 1b
    movzwl ticks, %eax
    out %eax, ${RESULT_PORT}
    cmpw $3, halts                 # every wake-up came from HLT
    setae %al
    movzbl %al, %eax
    out %eax, ${RESULT_PORT}
    jmp done
handler:
    push %ax
    incw ticks
    mov $0x20, %al                 # EOI
    out %al, $0x20
    pop %ax
    iret
ticks: .word 0
halts: .word 0
{_DONE}
"""

# A tickless kernel's timer: PIT channel 0 in mode 4 (what Linux's clockevent uses), each
# interrupt handler programs the next one-shot count of 20 ticks (~17 us) after its EOI; the main
# loop waits with STI;HLT.  200 interrupts, then the count of HLT wake-ups.  A single lost one-shot
# edge leaves the guest halted for ever.
PIT_ONESHOT = f"""
{_IRQ0_SETUP}
    mov $0x38, %al                 # channel 0, lo/hi, mode 4 (software-triggered strobe)
    out %al, $0x43
    call program
1:  sti
    hlt
    cli
    incw halts
    cmpw $200, ticks
    jb 1b
    movzwl ticks, %eax
    out %eax, ${RESULT_PORT}
    movzwl halts, %eax
    out %eax, ${RESULT_PORT}
    jmp done
program:
    mov $20, %al                   # the next event in 20 ticks
    out %al, $0x40
    xor %al, %al
    out %al, $0x40
    ret
handler:
    push %ax
    incw ticks
    mov $0x20, %al                 # EOI
    out %al, $0x20
    cmpw $200, ticks
    jae 2f
    call program
2:  pop %ax
    iret
ticks: .word 0
halts: .word 0
{_DONE}
"""

# Interrupts raised by a device working on another thread: IRQ1 (vector 9) while the CPU waits
# with STI;HLT or runs.  The guest says when its 8259A is set up, then the handler acknowledges each
# one on ACK_PORT (the device then raises the next); after 300 the guest reports how many it took.
ACK_PORT = 0x13
FOREIGN_IRQS = f"""
{_IRQ1_SETUP}
    out %al, ${ACK_PORT}           # ready: the device may raise the first one
1:  sti
    hlt
    cli
    mov $200, %cx                  # and a little work with interrupts off between waits
2:  loop 2b
    cmpw $300, irqs
    jb 1b
    movzwl irqs, %eax
    out %eax, ${RESULT_PORT}
    jmp done
handler:
    push %ax
    incw irqs
    mov $0x20, %al                 # EOI
    out %al, $0x20
    out %al, ${ACK_PORT}
    pop %ax
    iret
irqs: .word 0
{_DONE}
"""

# A lower-priority interrupt that becomes deliverable on the vCPU's own doing: the IRQ0 handler of
# tick 3 has a device raise IRQ1 (vector 9) while IRQ0 is in service (as a UART raises its THRE
# interrupt when the driver writes a byte), so IRQ1 waits in the IRR until that handler's EOI and
# is taken after its IRET. The main loop then spins with interrupts on and no I/O while the PIT
# (~1 kHz) keeps ticking; it reports the tick at which IRQ1 was raised and the tick it was taken
# at (the spin gives up at tick 300: an interrupt starved behind the timer's).
STARVED_IRQ = f"""
{_IRQ0_SETUP}
    movw $irq1, 0x24
    movw $0, 0x26
    mov $0xFC, %al                 # IRQ0 and IRQ1
    out %al, $0x21
{_PIT_1KHZ}
    sti
1:  cmpw $0, taken
    jne 2f
    cmpw $300, ticks
    jb 1b
2:  cli
    movzwl raised, %eax
    out %eax, ${RESULT_PORT}
    movzwl taken, %eax
    out %eax, ${RESULT_PORT}
    jmp done
handler:
    push %ax
    incw ticks
    cmpw $3, ticks
    jne 3f
    mov ticks, %ax
    mov %ax, raised
    out %al, ${ACK_PORT}          # the device raises IRQ1 now, behind IRQ0 in service
3:  mov $0x20, %al                 # EOI
    out %al, $0x20
    pop %ax
    iret
irq1:
    push %ax
    mov ticks, %ax
    mov %ax, taken
    mov $0x20, %al
    out %al, $0x20
    pop %ax
    iret
ticks: .word 0
raised: .word 0
taken: .word 0
{_DONE}
"""

# An interrupt raised while IF=0 is taken right after STI's shadow: the guest has a device raise
# IRQ1 with interrupts off, then enables them and counts loop rounds until the handler has run
# (0 or 1 on a CPU: STI's shadow covers one instruction).
IRQ_AFTER_STI = f"""
{_IRQ1_SETUP}
    out %al, ${ACK_PORT}           # the device raises IRQ1 now, with interrupts off
    mov $20000, %cx                # a while with IF=0 (the interrupt waits)
2:  loop 2b
    xor %ebx, %ebx
    sti
1:  cmpw $0, taken
    jne 3f
    inc %ebx
    cmp $10000000, %ebx
    jb 1b
3:  cli
    mov %ebx, %eax
    out %eax, ${RESULT_PORT}
    jmp done
handler:
    push %ax
    movw $1, taken
    mov $0x20, %al
    out %al, $0x20
    pop %ax
    iret
taken: .word 0
{_DONE}
"""

# CPUID: leaf 1 ECX bit 31 and the hypervisor leaves (signature registers, max leaf, leaf+1 EAX).
CPUID = f"""
.code16
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov $1, %eax
    cpuid
    shr $31, %ecx
    mov %ecx, %eax
    out %eax, ${RESULT_PORT}
    mov $0x40000000, %eax
    cpuid
    out %eax, ${RESULT_PORT}
    mov %ebx, %eax
    out %eax, ${RESULT_PORT}
    mov %ecx, %eax
    out %eax, ${RESULT_PORT}
    mov %edx, %eax
    out %eax, ${RESULT_PORT}
    mov $0x40000001, %eax
    cpuid
    out %eax, ${RESULT_PORT}
    jmp done
{_DONE}
"""

# A deliberate triple fault: protected mode with an empty IDT, then #UD.
TRIPLE_FAULT = f"""
{_TO_PM32}
    lidt idtr
    mov $0x11, %eax
    out %eax, ${RESULT_PORT}
    ud2
idtr: .word 0
    .long 0
{_GDT}
"""
