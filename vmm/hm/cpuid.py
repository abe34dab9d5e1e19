"""HM's guest CPUID table: KVM's supported set, filtered the way VirtualBox's CPUM does, plus GIM.

- every host/KVM leaf in 0x40000000-0x4FFFFFFF is dropped; the GIM provider inserts its own;
- CPUID.1:ECX bit 31 (hypervisor present) follows the provider;
- MONITOR/MWAIT is hidden (VirtualBox does not expose it by default);
- with a userspace interrupt model and no local APIC, APIC, x2APIC and the TSC-deadline
  timer are hidden (the guest then uses the 8259A); with the VMM's own xAPIC
  (vmm.devices.apic) only the APIC bit stays: x2APIC and TSC-deadline need KVM's;
- APIC ids follow the vCPU index.
"""

from __future__ import annotations

from vmm.gim import HYPERVISOR_BASE, HYPERVISOR_END, Gim

Entry = tuple[int, int, int, int, int, int, int]   # function, index, flags, eax, ebx, ecx, edx

LEAF1_ECX_MONITOR = 1 << 3
LEAF1_ECX_X2APIC = 1 << 21
LEAF1_ECX_TSC_DEADLINE = 1 << 24
LEAF1_EDX_APIC = 1 << 9
EXT1_ECX_EXTAPIC = 1 << 3       # 0x80000001 ECX: AMD extended APIC space


def guest_cpuid(supported: list[Entry], gim: Gim, vcpu_index: int, local_apic: bool,
                apic_extensions: bool | None = None) -> list[Entry]:
    if apic_extensions is None:
        apic_extensions = local_apic
    out: list[Entry] = []
    for function, index, flags, eax, ebx, ecx, edx in supported:
        if HYPERVISOR_BASE <= function < HYPERVISOR_END:
            continue
        if function == 1:
            ecx &= ~LEAF1_ECX_MONITOR
            if not apic_extensions:
                ecx &= ~(LEAF1_ECX_X2APIC | LEAF1_ECX_TSC_DEADLINE)
            if not local_apic:
                edx &= ~LEAF1_EDX_APIC
            ecx = gim.patch_leaf1_ecx(ecx)
            ebx = (ebx & 0x00FF_FFFF) | ((vcpu_index & 0xFF) << 24)
        elif function == 5:
            eax = ebx = ecx = edx = 0       # MONITOR/MWAIT leaf, hidden with the feature
        elif function in (0xB, 0x1F):
            edx = vcpu_index
        elif function == 0x8000_0001 and not local_apic:
            ecx &= ~EXT1_ECX_EXTAPIC
        elif function == 0x8000_001E:
            eax = vcpu_index
        out.append((function, index, flags, eax, ebx, ecx, edx))
    for leaf, (eax, ebx, ecx, edx) in sorted(gim.leaves().items()):
        out.append((leaf, 0, 0, eax, ebx, ecx, edx))
    return out
