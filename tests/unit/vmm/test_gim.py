"""GIM: VirtualBox's Default rule, each provider's CPUID leaves, and the engine CPUID hook."""

import pytest

from vmm.gim import (
    HVP_BIT,
    EngineSupport,
    Gim,
    GimError,
    effective_provider,
    normalize_provider,
)


def _text(*regs):
    return b"".join(r.to_bytes(4, "little") for r in regs)


@pytest.mark.parametrize("os_type,expected", [
    ("Linux26_64", "kvm"), ("Ubuntu_64", "kvm"), ("Debian12_64", "kvm"), ("ArchLinux_64", "kvm"),
    ("Fedora", "kvm"), ("Linux24", "none"), ("Linux22", "none"), ("Linux24_64", "none"),
    ("Windows10_64", "hyperv"), ("Windows7", "hyperv"), ("Windows2019_64", "hyperv"),
    ("WindowsXP", "none"), ("Windows2003_64", "none"), ("MacOS_64", "minimal"), ("FreeBSD_64", "none"),
    ("Other", "none"), ("", "none"), ("DOS", "none"),
])
def test_default_provider_by_os_type(os_type, expected):
    assert effective_provider("default", os_type) == expected


def test_legacy_and_explicit_providers():
    assert effective_provider("legacy", "MacOS_64") == "minimal"
    assert effective_provider("legacy", "Ubuntu_64") == "none"
    assert effective_provider("hyperv", "Ubuntu_64") == "hyperv"
    assert effective_provider(5, "Windows10_64") == "kvm"          # IParavirtProvider.KVM
    assert normalize_provider("Disabled") == "none"
    with pytest.raises(GimError):
        normalize_provider("xen")
    with pytest.raises(GimError):
        normalize_provider(9)


def test_minimal_leaves():
    g = Gim("minimal", tsc_khz=2_500_000, apic_khz=1_000_000)
    leaves = g.leaves()
    assert leaves[0x40000000] == (0x40000010, 0, 0, 0)              # max leaf, no signature
    assert all(leaves[0x40000000 + i] == (0, 0, 0, 0) for i in range(1, 0x10))
    assert leaves[0x40000010] == (2_500_000, 1_000_000, 0, 0)
    assert g.hypervisor_bit


def test_kvm_leaves_follow_engine_support():
    full = Gim("kvm", support=EngineSupport(kvm_clock_msrs=True, kvm_hypercalls=True, tsc_stable=True))
    eax, ebx, ecx, edx = full.leaves()[0x40000000]
    assert eax == 0x40000001 and _text(ebx, ecx, edx) == b"KVMKVMKVM\0\0\0"
    assert full.leaves()[0x40000001] == ((1 << 0) | (1 << 3) | (1 << 7) | (1 << 24), 0, 0, 0)
    bare = Gim("kvm", support=EngineSupport())
    assert bare.leaves()[0x40000001] == (0, 0, 0, 0)                  # no clock MSRs, no hypercalls


def test_hyperv_leaves():
    g = Gim("hyperv", support=EngineSupport(hyperv_msrs=True, nested_paging=True))
    leaves = g.leaves()
    eax, ebx, ecx, edx = leaves[0x40000000]
    assert eax == 0x40000006 and _text(ebx, ecx, edx) == b"VBoxVBoxVBox"
    assert leaves[0x40000001][0] == 0x31237648                          # "Hv#1"
    assert leaves[0x40000003] == (0x2 | 0x10 | 0x20 | 0x40 | 0x80 | 0x200 | 0x800, 1 << 20, 0,
                                  (1 << 8) | (1 << 10))
    assert leaves[0x40000004] == ((1 << 4) | (1 << 5) | (1 << 8), 0xFFFFFFFF, 0, 0)
    assert leaves[0x40000006][0] == (1 << 3) | (1 << 1)
    no_msrs = Gim("hyperv").leaves()
    assert no_msrs[0x40000003] == (0, 0, 0, 0) and no_msrs[0x40000004][0] == 1 << 5


def test_none_has_no_leaves_and_clears_the_bit():
    g = Gim("none")
    assert g.leaves() == {} and not g.hypervisor_bit
    assert g.cpuid(1, 0, (0x806F8, 0, HVP_BIT | 5, 7)) == (0x806F8, 0, 5, 7)
    assert g.cpuid(0x40000000, 0, (0x40000001, 1, 2, 3)) == (0, 0, 0, 0)   # host leaves stripped


def test_cpuid_hook_for_engines():
    g = Gim("kvm", "Ubuntu_64")
    assert g.cpuid(1, 0, (1, 2, 0, 4)) == (1, 2, HVP_BIT, 4)
    assert g.cpuid(0x40000000, 0, (9, 9, 9, 9))[0] == 0x40000001
    assert g.cpuid(0x40000005, 0, (9, 9, 9, 9)) == (0, 0, 0, 0)
    assert g.cpuid(0x4FFFFFFF, 0, (9, 9, 9, 9)) == (0, 0, 0, 0)
    assert g.cpuid(0x50000000, 0, (9, 9, 9, 9)) == (9, 9, 9, 9)
    assert g.cpuid(7, 0, (1, 2, 3, 4)) == (1, 2, 3, 4)
    assert "'kvm'" in g.describe()
