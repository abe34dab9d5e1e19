"""GIM: paravirtualisation providers, the hypervisor CPUID leaves a guest sees on either engine.

VirtualBox strips every host leaf in 0x40000000-0x4FFFFFFF and lets the chosen provider
insert its own (GIMKvm.cpp, GIMHv.cpp, GIMMinimal.cpp): Minimal (max leaf, no signature, a timing leaf), KVM
(`KVMKVMKVM` and a feature leaf), Hyper-V (`VBoxVBoxVBox`, `Hv#1`, feature leaves).  All
but None set CPUID.1:ECX bit 31 (hypervisor present).  Features backed by MSRs or
hypercalls are offered only where the engine implements them (`EngineSupport`), so a
guest never trusts a clock MSR that would fault.

HM builds its KVM_SET_CPUID2 table from `Gim.leaves()`; REM answers the CPUID instruction
through `Gim.cpuid(leaf, subleaf, native)`.
"""

from __future__ import annotations

from dataclasses import dataclass

HYPERVISOR_BASE = 0x4000_0000
HYPERVISOR_END = 0x5000_0000      # exclusive: CPUM strips the whole block
HVP_BIT = 1 << 31                 # CPUID.1:ECX hypervisor present

PROVIDERS = ("none", "default", "legacy", "minimal", "hyperv", "kvm")
# IParavirtProvider enum values (VirtualBox.xidl) -> names
PROVIDER_BY_VALUE = {0: "none", 1: "default", 2: "legacy", 3: "minimal", 4: "hyperv", 5: "kvm"}
_ALIASES = {"disabled": "none", "hyper-v": "hyperv"}

# OS type ids (IGuestOSType ids) for the Default rule of Machine::getEffectiveParavirtProvider
_HYPERV_OS_TYPES = {
    "windowsvista", "windowsvista_64", "windows7", "windows7_64", "windows8", "windows8_64", "windows81",
    "windows81_64", "windows10", "windows10_64", "windows11_64", "windows2008", "windows2008_64",
    "windows2012_64", "windows2016_64", "windows2019_64", "windows2022_64", "windows2025_64",
}
_OLD_LINUX = {"linux22", "linux24", "linux24_64"}

# KVM feature leaf (0x40000001 EAX) bits
KVM_FEATURE_CLOCKSOURCE = 1 << 0
KVM_FEATURE_CLOCKSOURCE2 = 1 << 3
KVM_FEATURE_PV_UNHALT = 1 << 7
KVM_FEATURE_CLOCKSOURCE_STABLE = 1 << 24
KVM_MSRS = (0x11, 0x12, 0x4B564D00, 0x4B564D01)

# Hyper-V leaf 0x40000003/4 bits
HV_PART_TIME_REF_COUNT_MSR = 1 << 1
HV_APIC_ACCESS_MSRS = 1 << 4
HV_HYPERCALL_MSRS = 1 << 5
HV_VP_ID_MSR = 1 << 6
HV_VIRT_SYS_RESET_MSR = 1 << 7
HV_PART_REF_TSC_MSR = 1 << 9
HV_TIMER_FREQ_MSRS = 1 << 11
HV_PARTITION_EXTENDED_HYPERCALLS = 1 << 20
HV_MISC_TIMER_FREQ = 1 << 8
HV_MISC_GUEST_CRASH_MSRS = 1 << 10
HV_HINT_MSR_FOR_SYS_RESET = 1 << 4
HV_HINT_RELAX_TIME_CHECKS = 1 << 5
HV_HINT_X2APIC_MSRS = 1 << 8
HV_HOST_MSR_BITMAP = 1 << 1
HV_HOST_NESTED_PAGING = 1 << 3


class GimError(ValueError):
    """An unknown provider name or value."""


def _regs_from_text(text: bytes) -> tuple[int, int, int]:
    return tuple(int.from_bytes(text[i:i + 4], "little") for i in (0, 4, 8))   # type: ignore[return-value]


def normalize_provider(provider: str | int) -> str:
    if isinstance(provider, int):
        if provider not in PROVIDER_BY_VALUE:
            raise GimError(f"unknown paravirtualization provider value {provider}")
        return PROVIDER_BY_VALUE[provider]
    name = _ALIASES.get(provider.strip().lower(), provider.strip().lower())
    if name not in PROVIDERS:
        raise GimError(f"unknown paravirtualization provider {provider!r} (one of {', '.join(PROVIDERS)})")
    return name


def effective_provider(provider: str | int, os_type_id: str) -> str:
    """VirtualBox's Machine::getEffectiveParavirtProvider: resolve Default and Legacy by OS type."""
    name = normalize_provider(provider)
    os_id = (os_type_id or "").lower()
    mac = os_id.startswith("macos")
    if name == "legacy":
        return "minimal" if mac else "none"
    if name != "default":
        return name
    if mac:
        return "minimal"
    if os_id in _HYPERV_OS_TYPES:
        return "hyperv"
    if _is_linux_family(os_id):
        return "none" if os_id in _OLD_LINUX else "kvm"
    return "none"


_LINUX_FAMILY = ("linux", "archlinux", "debian", "fedora", "gentoo", "mandriva", "redhat", "opensuse",
                 "suse", "turbolinux", "ubuntu", "xandros", "oracle", "oraclelinux", "rhel", "centos")


def _is_linux_family(os_id: str) -> bool:
    base = os_id.split("_")[0]
    return base.rstrip("0123456789") in _LINUX_FAMILY


@dataclass(frozen=True, slots=True)
class EngineSupport:
    """What the executing engine implements behind the provider's CPUID promises."""
    kvm_clock_msrs: bool = False     # MSR 0x11/0x12/0x4B564D00/01 (KVM implements them in-kernel)
    kvm_hypercalls: bool = False     # VMCALL KICK_CPU for PV_UNHALT
    hyperv_msrs: bool = False        # Hyper-V synthetic MSRs (KVM_CAP_HYPERV)
    nested_paging: bool = False
    tsc_stable: bool = True          # fixed-rate, monotonic TSC


class Gim:
    """One VM's provider: the hypervisor leaves and the leaf-1 hypervisor bit."""

    def __init__(self, provider: str | int, os_type_id: str = "", *, tsc_khz: int = 0,
                 apic_khz: int = 0, support: EngineSupport = EngineSupport()):
        """tsc_khz/apic_khz feed Minimal's timing leaf (apic_khz 0: the engine models no local APIC)."""
        self.configured = normalize_provider(provider)
        self.name = effective_provider(self.configured, os_type_id)
        self.support = support
        self.tsc_khz = tsc_khz
        self.apic_khz = apic_khz
        self._leaves = self._build()

    @property
    def hypervisor_bit(self) -> bool:
        return self.name != "none"

    def _build(self) -> dict[int, tuple[int, int, int, int]]:
        if self.name == "minimal":
            leaves = {HYPERVISOR_BASE: (0x4000_0010, 0, 0, 0)}
            leaves.update({HYPERVISOR_BASE + i: (0, 0, 0, 0) for i in range(1, 0x10)})
            leaves[0x4000_0010] = (self.tsc_khz & 0xFFFF_FFFF, self.apic_khz & 0xFFFF_FFFF, 0, 0)
            return leaves
        if self.name == "kvm":
            features = 0
            if self.support.kvm_clock_msrs:
                features |= KVM_FEATURE_CLOCKSOURCE | KVM_FEATURE_CLOCKSOURCE2
                if self.support.tsc_stable:
                    features |= KVM_FEATURE_CLOCKSOURCE_STABLE
            if self.support.kvm_hypercalls:
                features |= KVM_FEATURE_PV_UNHALT
            return {HYPERVISOR_BASE: (0x4000_0001, *_regs_from_text(b"KVMKVMKVM\0\0\0")),
                    0x4000_0001: (features, 0, 0, 0)}
        if self.name == "hyperv":
            return self._hyperv()
        return {}

    def _hyperv(self) -> dict[int, tuple[int, int, int, int]]:
        msrs = self.support.hyperv_msrs
        base = (HV_PART_TIME_REF_COUNT_MSR | HV_APIC_ACCESS_MSRS | HV_HYPERCALL_MSRS | HV_VP_ID_MSR
                | HV_VIRT_SYS_RESET_MSR | HV_PART_REF_TSC_MSR | HV_TIMER_FREQ_MSRS) if msrs else 0
        partition = HV_PARTITION_EXTENDED_HYPERCALLS if msrs else 0
        misc = (HV_MISC_TIMER_FREQ | HV_MISC_GUEST_CRASH_MSRS) if msrs else 0
        hints = HV_HINT_RELAX_TIME_CHECKS
        if msrs:
            hints |= HV_HINT_MSR_FOR_SYS_RESET | HV_HINT_X2APIC_MSRS
        host = (HV_HOST_NESTED_PAGING | HV_HOST_MSR_BITMAP) if self.support.nested_paging else 0
        return {
            HYPERVISOR_BASE: (0x4000_0006, *_regs_from_text(b"VBoxVBoxVBox")),
            0x4000_0001: (0x3123_7648, 0, 0, 0),          # "Hv#1"
            0x4000_0002: (0, 0, 0, 0),
            0x4000_0003: (base, partition, 0, misc),
            0x4000_0004: (hints, 0xFFFF_FFFF, 0, 0),
            0x4000_0005: (0, 0, 0, 0),
            0x4000_0006: (host, 0, 0, 0),
        }

    def leaves(self) -> dict[int, tuple[int, int, int, int]]:
        """The provider's leaves: {leaf: (eax, ebx, ecx, edx)}."""
        return dict(self._leaves)

    def patch_leaf1_ecx(self, ecx: int) -> int:
        return (ecx | HVP_BIT) if self.hypervisor_bit else (ecx & ~HVP_BIT)

    def cpuid(self, leaf: int, subleaf: int, native: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """The engine's CPUID hook: the VirtualBox answer given the engine's own (native) one."""
        del subleaf   # no provider leaf has sub-leaves
        if HYPERVISOR_BASE <= leaf < HYPERVISOR_END:
            return self._leaves.get(leaf, (0, 0, 0, 0))
        if leaf == 1:
            eax, ebx, ecx, edx = native
            return eax, ebx, self.patch_leaf1_ecx(ecx), edx
        return native

    def describe(self) -> str:
        """For VBox.log: the configured and the effective provider."""
        return f"GIM: provider {self.configured!r} -> {self.name!r}"
