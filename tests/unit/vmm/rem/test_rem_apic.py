"""REM with the VMM's local APIC: CPUID offers it and the guest's accesses to 0xFEE00000 reach it."""

from tests.unit.vmm.rem.asm import assemble, needs_binutils
from vmm.boot import cpu_setup
from vmm.bus import Bus
from vmm.devices.apic import APIC_BASE_DEFAULT, APIC_PAGE, REG_SVR, LocalApic
from vmm.engine import HaltExit
from vmm.memory import GuestMemory
from vmm.rem.engine import RemVm
from vmm.tm import FakeClock

pytestmark = needs_binutils
CODE = 0x100000
PROBE = """
    mov $1, %eax
    cpuid
    mov %rdx, %r8
    mov $0xFEE00000, %rsi
    movl $0x1FF, 0xF0(%rsi)
    movl 0x30(%rsi), %r9d
    movl $0x40041, 0x300(%rsi)
    movl 0x200(%rsi), %r10d
    movl 0x220(%rsi), %r11d
    hlt
"""


def run_probe(local_apic: bool):
    mem = GuestMemory(16 << 20)
    mem.write(CODE, assemble(PROBE, CODE))
    mmio = Bus("mmio")
    apic = LocalApic(FakeClock())
    mmio.register(APIC_BASE_DEFAULT, APIC_PAGE, apic)
    vcpu = RemVm(mem, Bus("io"), mmio, local_apic=local_apic).create_vcpu(0)
    vcpu.set_state(cpu_setup.long_mode_64(mem, CODE))
    assert isinstance(vcpu.run(), HaltExit)
    g = vcpu.get_state().gpr
    return apic, {n: g[n] for n in ("r8", "r9", "r10", "r11")}


def test_cpuid_offers_the_apic_only_when_the_vmm_models_it():
    assert not run_probe(False)[1]["r8"] & (1 << 9)
    assert run_probe(True)[1]["r8"] & (1 << 9)


def test_guest_programs_the_apic_through_mmio():
    apic, r = run_probe(True)
    assert apic.read(REG_SVR, 4) == 0x1FF and r["r9"] == 0x0005_0014
    # the self-IPI of vector 0x41 sits in IRR word 2 (vectors 64-95), bit 1
    assert r["r11"] == 1 << 1 and r["r10"] == 0
    assert apic.acknowledge() == 0x41
