"""Both engines boot the same self-built guest in a real VM process and print the same thing.

The guest (a flat binary, entered at 0000:7C00 by the boot contract) walks real mode ->
PIT interrupts through the 8259A with HLT wake-ups -> 32-bit protected mode -> 64-bit long
mode, prints a line on COM1 at each step and powers the machine off through ACPI.  It is
run by the dev runner (`python -m vmm.run --engine hm|rem`), i.e. the VM builder, EM, the
devices and the chosen engine in a separate process, and the serial output is compared.
"""

import os
import pathlib
import subprocess
import sys

import pytest

from tests.integration.vboxsvc import conftest as service_fixtures
from tests.unit.vmm.hm import guests
from tests.unit.vmm.hm.harness import require_engine

pytestmark = pytest.mark.timeout(300)
ROOT = pathlib.Path(__file__).resolve().parents[3]

_PUTS = """
puts{n}:
    lods{w} (%{si}), %al
    test %al, %al
    jz 2f
    mov %al, %bl
    mov $0x3FD, %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    mov %bl, %al
    mov $0x3F8, %dx
    out %al, %dx
    jmp puts{n}
2:  ret
"""

GUEST = f"""
.code16
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7000, %sp
    cld
    mov $m_real, %si
    call puts16
    movw $tick, 0x20
    movw $0, 0x22
    mov $0x11, %al
    out %al, $0x20
    mov $0x08, %al
    out %al, $0x21
    mov $0x04, %al
    out %al, $0x21
    mov $0x01, %al
    out %al, $0x21
    mov $0xFE, %al
    out %al, $0x21
    mov $0x34, %al
    out %al, $0x43
    mov $(1193 & 0xFF), %al
    out %al, $0x40
    mov $(1193 >> 8), %al
    out %al, $0x40
1:  sti
    hlt
    cli
    cmpw $3, ticks
    jb 1b
    mov $0xFF, %al
    out %al, $0x21
    mov $m_pit, %si
    call puts16
    lgdtl gdtr
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $pm32
tick:
    push %ax
    incw ticks
    mov $0x20, %al
    out %al, $0x20
    pop %ax
    iret
ticks: .word 0
{_PUTS.format(n=16, w='b', si='si')}
.code32
pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7000, %esp
    mov $m_pm, %esi
    call puts32
    mov $0x10000, %edi
    xor %eax, %eax
    mov $0x3000/4, %ecx
    rep stosl
    movl $0x11003, 0x10000
    movl $0x12003, 0x11000
    movl $0x000083, 0x12000
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
{_PUTS.format(n=32, w='b', si='esi')}
.code64
lm64:
    mov $m_lm, %rsi
    call puts64
    mov $0x4004, %dx               # ACPI PM1a control: SLP_TYP=S5 | SLP_EN
    mov $0x3400, %ax
    out %ax, %dx
3:  hlt
    jmp 3b
{_PUTS.format(n=64, w='b', si='rsi')}
m_real: .asciz "real mode\\n"
m_pit: .asciz "pit ticks woke hlt\\n"
m_pm: .asciz "protected mode\\n"
m_lm: .asciz "long mode, powering off\\n"
.p2align 3
gdt: .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00af9a000000ffff
gdtr: .word 31
    .long gdt
"""

EXPECTED = b"real mode\npit ticks woke hlt\nprotected mode\nlong mode, powering off\n"


@pytest.mark.parametrize("engine", [pytest.param("hm", marks=pytest.mark.kvm), "rem"])
def test_vm_process_runs_guest_on_engine(engine, tmp_path):
    require_engine(engine)
    image = tmp_path / "guest.bin"
    image.write_bytes(guests.assemble(GUEST))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "vmm.run", "--kernel", str(image), "--memory", "32",
                           "--engine", engine], stdin=subprocess.DEVNULL, capture_output=True, timeout=240,
                          env=env, cwd=ROOT)
    out = proc.stdout.replace(b"\r\n", b"\n")
    assert out == EXPECTED, proc.stderr.decode(errors="replace")[-2000:]
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]


# ---- through the service and the real VM process (vboxheadless) ---------------------------------

# the service fixtures of tests/integration/vboxsvc, for the tests below that start the VM process
client, svc_env, vbox = service_fixtures.client, service_fixtures.svc_env, service_fixtures.vbox
wait_for = service_fixtures.wait_for


def _boot_through_service(client, vbox, tmp_path, name: str, force_hm: bool) -> tuple[bytes, str]:
    """Create and start a machine whose boot file is the guest; returns (COM1 output, VBox.log)."""
    from vboxsvc.api import LockType, MachineState, PortMode, SessionState
    image = tmp_path / f"{name}.bin"
    image.write_bytes(guests.assemble(GUEST))
    serial = tmp_path / f"{name}.com1"
    m = vbox.create_machine("", name, os_type_id="Other_64")
    m.save_settings()
    vbox.register_machine(m)
    s = client.session()
    m.lock_machine(s, LockType.Write)
    sm = s.machine
    sm.memory_size = 32
    uart = sm.get_serial_port(0)
    uart.enabled = True
    uart.host_mode = PortMode.RawFile
    uart.path = str(serial)
    sm.set_extra_data("vboxpy/BootKernel", str(image))
    if force_hm:
        sm.set_extra_data("vboxpy/ForceHM", "1")
    sm.save_settings()
    s.unlock_machine()
    p = m.launch_vm_process(client.session(), "headless", [])
    p.wait_for_completion(-1)
    assert p.result_code == 0, p.error_info and p.error_info.text
    # the guest powers the machine off through ACPI once it reached long mode
    assert wait_for(lambda: m.state == MachineState.PoweredOff
                    and m.session_state == SessionState.Unlocked, 120)
    log = pathlib.Path(m.log_folder, "VBox.log").read_text(errors="replace")
    return serial.read_bytes(), log


@pytest.mark.kvm
def test_vm_process_engine_choice_and_same_output(client, vbox, tmp_path):
    """Default settings on this host -> EM's rule picks an engine; ForceHM=1 -> HM. Same guest output."""
    require_engine("hm")
    require_engine("rem")
    from vmm.engine_select import detect_host
    forced_out, forced_log = _boot_through_service(client, vbox, tmp_path, "engines-forcehm", force_hm=True)
    assert "EM: HM: vboxpy/ForceHM=1 forces the hardware engine" in forced_log
    assert forced_out.replace(b"\r\n", b"\n") == EXPECTED
    default_out, default_log = _boot_through_service(client, vbox, tmp_path, "engines-default",
                                                     force_hm=False)
    host = detect_host()
    if host.hm_for_stock_guests:
        assert "EM: HM:" in default_log
    else:
        assert "EM: REM:" in default_log
        if host.pvm:
            assert "PVM (kvm_pvm)" in default_log
    assert default_out.replace(b"\r\n", b"\n") == EXPECTED
