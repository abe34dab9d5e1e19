"""REM's CPUID through GIM: patched leaf 1, provider leaves, QEMU's own answer elsewhere."""

import pytest

from tests.unit.vmm.rem.asm import assemble, needs_binutils
from vmm.boot import cpu_setup
from vmm.bus import Bus
from vmm.engine import HaltExit
from vmm.gim import EngineSupport, Gim
from vmm.memory import GuestMemory
from vmm.rem.engine import RemVm

pytestmark = needs_binutils
CODE = 0x100000
# CPUID with all-ones upper halves first: a 64-bit CPUID must zero-extend its results
PROBE = """
    mov $-1, %rbx
    mov $-1, %rdx
    mov $-1, %rcx
    mov $0xFFFFFFFF00000001, %rax
    cpuid
    mov %rax, %r8
    mov %rbx, %r9
    mov %rcx, %r10
    mov %rdx, %r11
    mov $0x40000000, %eax
    cpuid
    mov %rax, %r12
    mov %rbx, %r13
    mov $0, %eax
    cpuid
    mov %rbx, %r14
    hlt
"""


def run_probe(gim):
    mem = GuestMemory(16 << 20)
    mem.write(CODE, assemble(PROBE, CODE))
    vcpu = RemVm(mem, Bus("io"), Bus("mmio"), gim=gim).create_vcpu(0)
    vcpu.set_state(cpu_setup.long_mode_64(mem, CODE))
    assert isinstance(vcpu.run(), HaltExit)
    g = vcpu.get_state().gpr
    return {n: g[n] for n in ("r8", "r9", "r10", "r11", "r12", "r13", "r14")}


def test_kvm_provider_sets_the_hypervisor_bit_and_its_leaves():
    none = run_probe(None)                                         # default: provider none
    kvm = run_probe(Gim("kvm", support=RemVm.SUPPORT))
    assert kvm["r10"] == none["r10"] | (1 << 31)                   # only bit 31 differs in ECX
    assert (kvm["r8"], kvm["r9"], kvm["r11"]) == (none["r8"], none["r9"], none["r11"])
    assert all(v < (1 << 32) for v in kvm.values())                # zero-extended
    assert (kvm["r12"], kvm["r13"]) == (0x4000_0001, 0x4B4D564B)   # max leaf, "KVMK"
    assert kvm["r14"] == none["r14"] != 0                          # leaf 0 is QEMU's own


def test_none_provider_clears_qemus_hypervisor_bit_and_block():
    none = run_probe(Gim("none"))
    assert not none["r10"] & (1 << 31)     # QEMU's CPU model sets it; VirtualBox's none does not
    assert (none["r12"], none["r13"]) == (0, 0)


def test_rem_refuses_a_provider_promising_msrs_it_lacks():
    with pytest.raises(ValueError, match="REM implements no paravirt MSRs"):
        RemVm(GuestMemory(16 << 20), Bus("io"), Bus("mmio"),
              gim=Gim("kvm", support=EngineSupport(kvm_clock_msrs=True)))


def test_create_engine_resolves_default_by_os_type_without_msr_promises():
    from vmm.engine_select import create_engine
    vm = create_engine("rem", GuestMemory(16 << 20), Bus("io"), Bus("mmio"), paravirt="default",
                       os_type_id="Debian_64")
    assert vm.gim.configured == "default" and vm.gim.name == "kvm"
    assert vm.gim.leaves()[0x4000_0001][0] == 0        # no kvmclock / PV unhalt on REM
