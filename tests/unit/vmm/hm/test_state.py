"""HM's pure conversions (no /dev/kvm needed): segments, FXSAVE image, CPUID filtering."""

import pytest

from vmm.engine import Segment
from vmm.gim import Gim
from vmm.hm import abi, state
from vmm.hm.cpuid import guest_cpuid


@pytest.mark.parametrize("flags", [0x9B, 0x93, 0xC09B, 0xA09B, 0x8B, 0x82, 0xC0F3, 0x109B])
def test_segment_round_trip(flags):
    k = abi.KvmSegment()
    state.segment_to_kvm(Segment(0x2B, 0x12345000, 0xFFFFF, flags), k)
    assert k.present == (flags >> 7) & 1 and k.unusable == (0 if k.present else 1)
    assert state.segment_from_kvm(k) == Segment(0x2B, 0x12345000, 0xFFFFF, flags)


def test_unusable_segment_reads_not_present():
    k = abi.KvmSegment(present=1, unusable=1, type=3, s=1)
    assert state.segment_from_kvm(k).flags & 0x80 == 0


def test_fxsave_round_trip():
    f = abi.KvmFpu(fcw=0x27F, fsw=0x3800, ftwx=0x81, last_opcode=0x1DD, last_ip=0x401000, last_dp=0x602000,
                   mxcsr=0x1FA0)
    f.fpr[0:10] = list(range(1, 11))
    f.xmm[255] = 0x77
    blob = state.fpu_to_fxsave(f)
    assert len(blob) == 512
    assert int.from_bytes(blob[24:28], "little") == 0x1FA0 and blob[32] == 1 and blob[160 + 255] == 0x77
    g = abi.KvmFpu()
    state.fxsave_to_fpu(blob, g)
    assert bytes(g) == bytes(f)
    with pytest.raises(ValueError):
        state.fxsave_to_fpu(b"\0" * 100, g)


def test_power_on_sregs():
    s = abi.KvmSregs()
    state.power_on_sregs(s)
    assert s.cs.selector == 0xF000 and s.cs.base == 0xFFFF0000 and s.cr0 == 0x60000010
    assert s.tr.type == 0xB and s.ldt.type == 2 and s.idt.limit == 0xFFFF


SUPPORTED = [
    (0, 0, 0, 0xD, 0x68747541, 0x444D4163, 0x69746E65),
    (1, 0, 0, 0x00A00F11, 0x00000800, 0xFEDA3203 | (1 << 31), 0x178BFBFF),
    (5, 0, 0, 0x40, 0x40, 3, 0x11),
    (0xB, 0, 1, 1, 1, 0x100, 0),
    (0x40000000, 0, 0, 0x40000001, 0x4B4D564B, 0x564B4D56, 0x4D),
    (0x40000001, 0, 0, 0x01007AFB, 0, 0, 0),
    (0x80000001, 0, 0, 0, 0, 0x75C237FF, 0x2FD3FBFF),
]


def test_guest_cpuid_filters_like_cpum():
    out = guest_cpuid(SUPPORTED, Gim("none"), vcpu_index=1, local_apic=False)
    leaves = {f: (a, b, c, d) for f, _, _, a, b, c, d in out}
    assert not any(0x40000000 <= f < 0x50000000 for f in leaves)            # host KVM leaves stripped
    eax, ebx, ecx, edx = leaves[1]
    assert ecx >> 31 == 0 and ecx & (1 << 3) == 0 and ecx & (1 << 21) == 0 and ecx & (1 << 24) == 0
    assert edx & (1 << 9) == 0 and ebx >> 24 == 1
    assert leaves[5] == (0, 0, 0, 0) and leaves[0xB][3] == 1
    assert leaves[0x80000001][2] & (1 << 3) == 0


def test_guest_cpuid_with_provider_and_apic():
    out = guest_cpuid(SUPPORTED, Gim("hyperv"), vcpu_index=0, local_apic=True)
    leaves = {f: (a, b, c, d) for f, _, _, a, b, c, d in out}
    assert leaves[1][2] >> 31 == 1 and leaves[1][3] & (1 << 9)
    assert leaves[0x40000000][0] == 0x40000006 and leaves[0x40000001][0] == 0x31237648


def test_guest_cpuid_with_the_vmm_xapic():
    """A userspace local APIC (vmm.devices.apic): the APIC bit stays, x2APIC and TSC-deadline go."""
    supported = [e if e[0] != 1 else (*e[:5], e[5] | (1 << 21) | (1 << 24), e[6]) for e in SUPPORTED]
    out = guest_cpuid(supported, Gim("none"), vcpu_index=0, local_apic=True, apic_extensions=False)
    ecx, edx = {f: (c, d) for f, _, _, _, _, c, d in out}[1]
    assert edx & (1 << 9) and not ecx & (1 << 21) and not ecx & (1 << 24)
    out = guest_cpuid(supported, Gim("none"), vcpu_index=0, local_apic=True)
    ecx = {f: c for f, _, _, _, _, c, _ in out}[1]
    assert ecx & (1 << 21) and ecx & (1 << 24)                              # KVM's own APIC has both
