"""HM specifics beyond the shared guests: kick, state transfer, I/O completion, in-kernel irqchip, CPUID."""

import threading
import time

import pytest

from tests.unit.vmm.hm import guests
from tests.unit.vmm.hm.harness import CODE64, DATA32, real_mode, require_engine
from vmm.engine import CpuState, HaltExit, InterruptedExit, IoExit, Segment
from vmm.memory import GuestMemory

pytestmark = [pytest.mark.timeout(120), pytest.mark.kvm]

SPIN = """
.code16
1:  jmp 1b
"""

IN_THEN_HALT = f"""
.code16
    mov $0x{guests.INPUT_PORT:x}, %dx
    inl %dx, %eax
    hlt
"""


@pytest.fixture
def hm():
    require_engine("hm")
    from vmm.hm.vm import HmVm
    made = []

    def make(image: bytes = b"", irqchip: str = "user", paravirt: str = "none"):
        memory = GuestMemory(4 << 20)
        memory.write(guests.LOAD, image)
        vm = HmVm(memory, irqchip=irqchip, paravirt=paravirt)
        vcpu = vm.create_vcpu(0)
        vcpu.set_state(real_mode(0, guests.LOAD, 0x7000))
        made.append((vm, memory))
        return vm, vcpu
    yield make
    for vm, _memory in made:
        vm.close()


def test_kick_interrupts_a_spinning_guest(hm):
    _, vcpu = hm(guests.assemble(SPIN))
    timer = threading.Timer(0.2, vcpu.kick)
    timer.start()
    t0 = time.monotonic()
    assert isinstance(vcpu.run(), InterruptedExit)
    assert time.monotonic() - t0 < 30     # returned because of the kick, not never
    # a kick while no run is in progress makes the next run return at once
    vcpu.kick()
    assert isinstance(vcpu.run(), InterruptedExit)


def test_in_completion_is_visible_in_state_before_the_next_run(hm):
    _, vcpu = hm(guests.assemble(IN_THEN_HALT))
    ex = vcpu.run()
    assert ex == IoExit(guests.INPUT_PORT, 4, False)
    vcpu.complete_io(0xDEADBEEF)
    assert vcpu.get_state().gpr["rax"] & 0xFFFF_FFFF == 0xDEADBEEF
    assert isinstance(vcpu.run(), HaltExit)


def test_complete_io_without_pending_access_is_an_error(hm):
    from vmm.hm.vcpu import HmError
    _, vcpu = hm(guests.assemble(SPIN))
    with pytest.raises(HmError):
        vcpu.complete_io(1)


def test_state_round_trip_long_mode_segments_msrs_fpu(hm):
    _, vcpu = hm(guests.assemble(SPIN))
    s = vcpu.get_state()
    assert s.seg["cs"].selector == 0 and s.gpr["rip"] == guests.LOAD
    new = CpuState()
    new.gpr = dict(s.gpr, rax=0x1122334455667788, r15=0xFEED, rflags=0x202)
    new.seg = dict(s.seg, cs=Segment(0x18, 0, 0xFFFFFFFF, CODE64), ds=Segment(0x10, 0, 0xFFFFFFFF, DATA32))
    new.gdt, new.idt = (0x1000, 0x1F), (0x2000, 0xFFF)
    new.cr0, new.cr3, new.cr4, new.efer = 0x80000011, 0x10000, 0x20, 0x500
    new.msrs = {0xC0000082: 0xFFFF800000001000, 0x174: 0x10}
    fpu = bytearray(s.fpu)
    fpu[24:28] = (0x1F80 | 0x40).to_bytes(4, "little")     # MXCSR with DAZ
    fpu[160:176] = bytes(range(16))                            # XMM0
    new.fpu = bytes(fpu)
    vcpu.set_state(new)
    got = vcpu.get_state()
    assert got.gpr["rax"] == 0x1122334455667788 and got.gpr["r15"] == 0xFEED
    assert got.seg["cs"] == Segment(0x18, 0, 0xFFFFFFFF, CODE64)
    assert got.gdt == (0x1000, 0x1F) and got.idt == (0x2000, 0xFFF)
    assert got.cr3 == 0x10000 and got.efer & 0x500 == 0x500 and got.cr0 & 0x80000001 == 0x80000001
    assert got.msrs[0xC0000082] == 0xFFFF800000001000 and got.msrs[0x174] == 0x10
    assert got.fpu[160:176] == bytes(range(16))
    assert int.from_bytes(got.fpu[24:28], "little") == 0x1FC0


def test_set_state_rejects_unknown_registers(hm):
    _, vcpu = hm(guests.assemble(SPIN))
    with pytest.raises(ValueError):
        vcpu.set_state(CpuState(gpr={"eax": 1}))


def test_reset_returns_to_the_power_on_state(hm):
    vm, vcpu = hm(guests.assemble(SPIN))
    vm.reset()
    s = vcpu.get_state()
    assert s.gpr["rip"] == 0xFFF0 and s.seg["cs"].selector == 0xF000 and s.seg["cs"].base == 0xFFFF0000
    assert s.cr0 & 1 == 0


def test_interrupt_model_errors(hm):
    from vmm.hm.vcpu import HmError
    vm, vcpu = hm(guests.assemble(SPIN))
    with pytest.raises(HmError):
        vm.set_irq(0, True)
    kvm_vm, kvm_vcpu = hm(guests.assemble(SPIN), irqchip="kernel")
    with pytest.raises(HmError):
        kvm_vcpu.inject_interrupt(0x20)
    with pytest.raises(ValueError):
        vcpu.inject_interrupt(300)


def test_bad_irqchip_argument():
    from vmm.hm.vm import HmVm
    with pytest.raises(ValueError):
        HmVm(GuestMemory(1 << 20), irqchip="apic")


def test_inject_interrupt_runs_the_guest_handler(hm):
    src = f"""
.code16
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7000, %sp
    movw $handler, 0x80
    movw $0, 0x82
    sti
1:  hlt
    jmp 1b
handler:
    mov $0x42, %eax
    out %eax, ${guests.RESULT_PORT}
    iret
"""
    _, vcpu = hm(guests.assemble(src))
    assert isinstance(vcpu.run(), HaltExit)
    assert vcpu.interrupts_enabled()
    vcpu.inject_interrupt(0x20)
    assert vcpu.run() == IoExit(guests.RESULT_PORT, 4, True, 0x42)


def test_in_kernel_pit_and_pic_wake_hlt(hm):
    """irqchip='kernel': PIC/PIT ports never exit; ticks arrive while the guest sleeps in HLT."""
    vm, vcpu = hm(guests.assemble(guests.PIT_INTERRUPTS), irqchip="kernel")
    assert vm.kernel_irqchip
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ex = vcpu.run()
        assert isinstance(ex, IoExit), ex
        assert ex.port not in (0x20, 0x21, 0x40, 0x43)   # handled in the kernel
        if ex.port == guests.DONE_PORT:
            break
        seen.append(ex.value)
    assert seen[0] >= 3 and seen[1] == 1
    blobs = vm.get_irqchip_state()
    assert set(blobs) == {"pic_master", "pic_slave", "ioapic", "pit"}
    vm.set_irqchip_state(blobs)


def test_guest_cpuid_table(hm):
    vm, vcpu = hm(guests.assemble(SPIN), paravirt="kvm")
    leaves = {(f, i): (a, b, c, d) for f, i, _, a, b, c, d in vcpu.cpuid}
    assert leaves[(1, 0)][2] >> 31 == 1                       # hypervisor present
    assert leaves[(1, 0)][3] & (1 << 9) == 0                   # no local APIC with userspace PIC
    hyper = sorted(f for f, _ in leaves if 0x40000000 <= f < 0x50000000)
    assert hyper == [0x40000000, 0x40000001]
    assert leaves[(0x40000000, 0)][1:] == (0x4B4D564B, 0x564B4D56, 0x4D)
    assert "GIM" in "\n".join(vm.describe())


def test_pause_resume_keeps_kvmclock(hm):
    vm, _ = hm(guests.assemble(SPIN))
    clock = vm.pause()
    time.sleep(0.05)
    vm.resume(clock)
    again = vm.pause()
    if clock is not None:
        assert 0 <= again - clock < 40_000_000   # the 50 ms pause did not advance the guest clock


def test_abi_matches_kernel_headers(tmp_path):
    """ioctl numbers and structure sizes against <linux/kvm.h>, when a C compiler is present."""
    import shutil
    import subprocess

    from vmm.hm import abi
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    names = ["KVM_GET_API_VERSION", "KVM_CREATE_VM", "KVM_CHECK_EXTENSION", "KVM_GET_SUPPORTED_CPUID",
             "KVM_GET_MSR_INDEX_LIST", "KVM_SET_USER_MEMORY_REGION", "KVM_CREATE_IRQCHIP", "KVM_IRQ_LINE",
             "KVM_CREATE_PIT2", "KVM_RUN", "KVM_GET_REGS", "KVM_SET_SREGS", "KVM_INTERRUPT", "KVM_GET_MSRS",
             "KVM_SET_CPUID2", "KVM_GET_FPU", "KVM_GET_VCPU_EVENTS", "KVM_SET_VCPU_EVENTS", "KVM_GET_PIT2",
             "KVM_GET_IRQCHIP", "KVM_SET_IRQCHIP", "KVM_GET_CLOCK", "KVM_SET_MP_STATE", "KVM_GET_TSC_KHZ",
             "KVM_GET_XSAVE", "KVM_SET_XSAVE"]
    src = "#include <linux/kvm.h>\n#include <stdio.h>\nint main(void){\n" + "".join(
        f'printf("{n} %lu\\n", (unsigned long){n});\n' for n in names) + "return 0;}\n"
    (tmp_path / "a.c").write_text(src)
    r = subprocess.run(["gcc", "-o", str(tmp_path / "a"), str(tmp_path / "a.c")],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"kernel headers unavailable: {r.stderr[:200]}")
    out = subprocess.run([str(tmp_path / "a")], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        name, value = line.split()
        assert getattr(abi, name) == int(value), name


def test_kvmclock_msr_is_served_by_kvm(hm):
    """The KVM provider offers CLOCKSOURCE2 on HM because KVM fills the pvclock page itself."""
    src = f"""
.code16
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov $0x4B564D01, %ecx          # MSR_KVM_SYSTEM_TIME_NEW: page at 0x9000, enabled
    mov $0x9001, %eax
    xor %edx, %edx
    wrmsr
    out %al, ${guests.INPUT_PORT}  # one exit so KVM publishes the clock
    mov 0x9000, %eax               # version
    out %eax, ${guests.RESULT_PORT}
    mov 0x9018, %eax               # tsc_to_system_mul
    out %eax, ${guests.RESULT_PORT}
    hlt
"""
    _, vcpu = hm(guests.assemble(src), paravirt="kvm")
    leaves = {f: (a, b, c, d) for f, _, _, a, b, c, d in vcpu.cpuid}
    assert leaves[0x40000001][0] & (1 << 3)
    values = []
    while True:
        ex = vcpu.run()
        if isinstance(ex, HaltExit):
            break
        assert isinstance(ex, IoExit), ex
        if ex.port == guests.RESULT_PORT:
            values.append(ex.value)
    version, mul = values
    assert version != 0 and version % 2 == 0 and mul != 0


def test_paging_options_are_reported_truthfully():
    require_engine("hm")
    from vmm.engine_select import detect_host
    from vmm.hm.vm import HmVm
    vm = HmVm(GuestMemory(4 << 20), large_pages=True, nested_paging=True, paravirt="default",
              os_type_id="Ubuntu_64")
    try:
        vm.create_vcpu(0)
        text = "\n".join(vm.describe())
        assert "large pages on" in text and "GIM: provider 'default' -> 'kvm'" in text
        if detect_host().pvm:
            assert "nested paging off (shadow paging)" in text and "(PVM: kvm_pvm)" in text
    finally:
        vm.close()


def test_reset_after_triple_fault_runs_again(hm):
    from vmm.engine import ShutdownExit
    vm, vcpu = hm(guests.assemble(guests.TRIPLE_FAULT))
    exits = [vcpu.run() for _ in range(2)]
    assert isinstance(exits[-1], ShutdownExit), exits
    vm.reset()
    vm.memory.write(guests.LOAD, guests.assemble(IN_THEN_HALT))
    vcpu.set_state(real_mode(0, guests.LOAD, 0x7000))
    assert vcpu.run() == IoExit(guests.INPUT_PORT, 4, False)


def test_device_line_through_kernel_pic_wakes_hlt(hm):
    """A device's IrqLine on the in-kernel PIC wakes a guest halted inside KVM_RUN (no exit for HLT)."""
    from vmm.hm.vcpu import HmError
    from vmm.hm.vm import KernelPic
    src = f"""
.code16
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7000, %sp
    movw $handler, 0x30            # vector 0x0C = IRQ 4 with the PIC at base 8
    movw $0, 0x32
    mov $0x11, %al
    out %al, $0x20
    mov $0x08, %al
    out %al, $0x21
    mov $0x04, %al
    out %al, $0x21
    mov $0x01, %al
    out %al, $0x21
    mov $0xEF, %al                 # unmask IRQ 4 only
    out %al, $0x21
    out %al, ${guests.INPUT_PORT}  # tell the test we are about to sleep
    sti
1:  hlt
    jmp 1b
handler:
    mov $0xC0, %eax
    out %eax, ${guests.RESULT_PORT}
    cli
    hlt
"""
    vm, vcpu = hm(guests.assemble(src), irqchip="kernel")
    pic = KernelPic(vm)
    assert not pic.has_interrupt()
    with pytest.raises(HmError):
        pic.acknowledge()
    ex = vcpu.run()
    assert ex.port == guests.INPUT_PORT and ex.is_write
    line = vm.irq_line(4)
    timer = threading.Timer(0.1, line.raise_)
    timer.start()
    assert vcpu.run() == IoExit(guests.RESULT_PORT, 4, True, 0xC0)
    timer.join()
    line.lower()


def test_interrupt_window_exit_when_guest_sets_if(hm):
    src = f"""
.code16
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7000, %sp
    movw $handler, 0x80
    movw $0, 0x82
    out %al, ${guests.INPUT_PORT}  # stop here with IF clear
    mov $1000, %cx
1:  loop 1b                        # still IF clear: no window yet
    sti
2:  jmp 2b
handler:
    mov $0x99, %eax
    out %eax, ${guests.RESULT_PORT}
    iret
"""
    _, vcpu = hm(guests.assemble(src))
    ex = vcpu.run()
    assert ex.port == guests.INPUT_PORT
    assert not vcpu.interrupts_enabled()
    vcpu.request_interrupt_window(True)
    assert isinstance(vcpu.run(), InterruptedExit)
    assert vcpu.interrupts_enabled()
    vcpu.request_interrupt_window(False)
    vcpu.inject_interrupt(0x20)
    assert not vcpu.interrupts_enabled()          # one injection at a time
    assert vcpu.run() == IoExit(guests.RESULT_PORT, 4, True, 0x99)


def test_kick_handler_needs_the_main_thread():
    import signal

    from vmm.hm.vcpu import KICK_SIGNAL, HmError, install_kick_handler
    previous = signal.signal(KICK_SIGNAL, signal.SIG_DFL)
    errors = []
    try:
        t = threading.Thread(target=lambda: errors.append(_catch(install_kick_handler, HmError)))
        t.start()
        t.join()
        assert errors == [True]
        install_kick_handler()                       # the main thread may install it
        assert signal.getsignal(KICK_SIGNAL) not in (signal.SIG_DFL, signal.SIG_IGN)
    finally:
        signal.signal(KICK_SIGNAL, previous)


def _catch(fn, exc_type) -> bool:
    try:
        fn()
    except exc_type:
        return True
    return False
