"""EM with the local APIC as the interrupt controller, on both engines: a self-built long-mode
guest takes the 8259's PIT ticks through LINT0 (ExtINT), the APIC timer's periodic ticks and a
self-IPI, each acknowledged with an EOI to 0xFEE000B0."""

import threading

import pytest

from tests.unit.vmm.hm import guests
from tests.unit.vmm.hm.guests import _DONE, _GDT, _TO_PM32, RESULT_PORT
from tests.unit.vmm.hm.harness import ENGINES, real_mode, require_engine
from tests.unit.vmm.hm.harness import TestPorts as ResultPorts
from vmm.bus import Bus
from vmm.memory import GuestMemory

pytestmark = pytest.mark.timeout(120)

# Long mode (HM on PVM runs 64-bit guests only): 0-4 MiB and the APIC's 2 MiB page identity-mapped.
APIC_GUEST = f"""
{_TO_PM32}
    mov $0x10000, %edi             # PML4 0x10000 -> PDPT 0x11000 -> PD 0x12000 / 0x13000 (2 MiB pages)
    xor %eax, %eax
    mov $0x4000/4, %ecx
    rep stosl
    movl $0x11003, 0x10000
    movl $0x12003, 0x11000
    movl $0x13003, 0x11018         # PDPT[3]: 3 GiB..4 GiB
    movl $0x000083, 0x12000
    movl $0x200083, 0x12008
    movl $0xFEE00093, 0x13000+0x1F7*8   # the APIC page, uncached
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $0x10000, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0
    ljmp $0x18, $lm64
.code64
lm64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7000, %esp
    mov $idt, %edi
    xor %ecx, %ecx
1:  mov $ignore, %eax
    call setgate
    inc %ecx
    cmp $256, %ecx
    jb 1b
    mov $0x20, %ecx
    mov $pit_handler, %eax
    call setgate
    mov $0x40, %ecx
    mov $timer_handler, %eax
    call setgate
    mov $0x50, %ecx
    mov $ipi_handler, %eax
    call setgate
    lidt idtr
    mov $0x11, %al                 # 8259: ICW1..4, vectors 0x20.., only IRQ0
    out %al, $0x20
    mov $0x20, %al
    out %al, $0x21
    mov $0x04, %al
    out %al, $0x21
    mov $0x01, %al
    out %al, $0x21
    mov $0xFE, %al
    out %al, $0x21
    mov $0x34, %al                 # PIT channel 0, mode 2, 1 ms
    out %al, $0x43
    mov $(1193 & 0xFF), %al
    out %al, $0x40
    mov $(1193 >> 8), %al
    out %al, $0x40
    mov $0xFEE00000, %ebx
    movl $0x1FF, 0xF0(%rbx)        # software enable, spurious vector 0xFF
    movl $0xB, 0x3E0(%rbx)         # divide by 1
    movl $0x20040, 0x320(%rbx)     # LVT timer: periodic, vector 0x40
    movl $2000000, 0x380(%rbx)     # 2 ms at 1 GHz
    movl $0x44050, 0x300(%rbx)     # ICR: fixed, assert, to self, vector 0x50
2:  sti
    hlt
    cli
    cmpl $3, pit_ticks
    jb 2b
    cmpl $3, apic_ticks
    jb 2b
    mov ipi_count, %eax
    out %eax, ${RESULT_PORT}
    mov 0x390(%rbx), %eax          # the current count runs below the initial count
    cmp $2000000, %eax
    setbe %al
    movzbl %al, %eax
    out %eax, ${RESULT_PORT}
    mov 0x120(%rbx), %eax          # nothing in service after the EOIs (ISR words of 0x20-0x5F)
    or 0x140(%rbx), %eax
    or 0x150(%rbx), %eax
    out %eax, ${RESULT_PORT}
    mov $0x1B, %ecx                # IA32_APIC_BASE
    rdmsr
    out %eax, ${RESULT_PORT}
    jmp done
setgate:                           # %ecx = vector, %eax = handler (below 4 GiB)
    mov %ecx, %edx
    shl $4, %edx
    add %edi, %edx
    mov %ax, (%rdx)
    movw $0x18, 2(%rdx)
    movw $0x8E00, 4(%rdx)
    shr $16, %eax
    mov %ax, 6(%rdx)
    movl $0, 8(%rdx)
    ret
ignore:
    iretq
pit_handler:
    push %rax
    incl pit_ticks
    mov $0x20, %al
    out %al, $0x20
    pop %rax
    iretq
timer_handler:
    push %rax
    incl apic_ticks
    mov $0xFEE000B0, %eax
    movl $0, (%rax)
    pop %rax
    iretq
ipi_handler:
    push %rax
    incl ipi_count
    mov $0xFEE000B0, %eax
    movl $0, (%rax)
    pop %rax
    iretq
.p2align 2
pit_ticks: .long 0
apic_ticks: .long 0
ipi_count: .long 0
.p2align 4
idt: .fill 256 * 16, 1, 0
idtr: .word 256 * 16 - 1
    .quad idt
{_DONE}
.code32
{_GDT}
"""


@pytest.fixture(params=ENGINES)
def engine(request):
    require_engine(request.param)
    return request.param


def test_lapic_timer_extint_and_self_ipi_through_em(engine):
    from vmm.devices.apic import APIC_BASE_DEFAULT, APIC_PAGE
    from vmm.devices.irq_routing import InterruptRouting
    from vmm.devices.pic import PicPair
    from vmm.devices.pit import Pit8254
    from vmm.em import Em, StopReason
    from vmm.engine_select import create_engine
    from vmm.tm import VirtualClock

    memory = GuestMemory(4 << 20)
    io, mmio = Bus("io"), Bus("mmio")
    clock = VirtualClock()
    pic = PicPair()
    routing = InterruptRouting(pic, clock, local_apic=True)
    pit = Pit8254(routing.line(0), clock)
    io.register(0x20, 2, pic.master)
    io.register(0xA0, 2, pic.slave)
    io.register(0x40, 4, pit)
    mmio.register(APIC_BASE_DEFAULT, APIC_PAGE, routing.lapics[0])
    finished = threading.Event()
    em_box: list = []
    ports = ResultPorts(on_done=lambda: em_box[0].request_stop(StopReason.POWER_OFF, "guest done"))
    io.register(RESULT_PORT, 3, ports)
    memory.write(guests.LOAD, guests.assemble(APIC_GUEST))
    vm = create_engine(engine, memory, io, mmio, local_apic=True)
    stop: list = []
    try:
        vcpu = vm.create_vcpu(0)
        vcpu.set_state(real_mode(0, guests.LOAD, 0x7000))
        routing.firmware_setup()

        def on_stop(reason, detail):
            stop.append((reason.name, detail))
            finished.set()

        em = Em(vcpu, routing.controller(0), clock, io, mmio, on_reset=lambda: None, on_stop=on_stop)
        em_box.append(em)
        routing.set_notify(em.interrupt_raised)
        em.start()
        if not finished.wait(60):
            em.power_off()
        assert em.join(10)
    finally:
        vm.close()
        memory.close()
    assert stop and stop[0][0] == "POWER_OFF" and ports.done, stop
    assert ports.values[:3] == [1, 1, 0]
    if engine == "hm":                  # KVM keeps the MSR; unicorn's QEMU answers 0 and ignores writes
        assert ports.values[3] == 0xFEE0_0900
