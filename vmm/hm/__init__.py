"""HM: the hardware-assisted engine, KVM through /dev/kvm ioctls (VirtualBox's HM over VT-x/AMD-V).

`vmm.hm.vm.HmVm` (the Vm) and `vmm.hm.vcpu.HmVcpu` (the Vcpu) implement vmm/engine.py's
contract; `vmm.hm.kvm` opens and probes /dev/kvm, `vmm.hm.abi` holds the kernel ABI,
`vmm.hm.cpuid` builds the guest CPUID table and `vmm.hm.state` converts register state.
EM picks HM or REM with `vmm.engine_select`.
"""
