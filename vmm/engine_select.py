"""EM's choice of execution engine: HM (KVM) when the host has usable hardware virtualization, else REM.

VirtualBox uses VT-x/AMD-V when `--hwvirtex on` (the default) and the host offers it, and
says which engine runs in VBox.log and showvminfo.  Here "offers it" means /dev/kvm opens
and speaks API 12 *and* is real VT-x/AMD-V: a PVM /dev/kvm (`kvm_pvm`, pagetable-based,
no VT-x underneath) cannot run stock guests (no 32-bit paging, kernel code ~1000x slow),
so it counts as "no VT-x/AMD-V" unless the VM's extra data `vboxpy/ForceHM=1` says the
guest supports PVM.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

FORCE_HM_KEY = "vboxpy/ForceHM"
KVM_DEVICE = "/dev/kvm"


class EngineSelectError(Exception):
    """HM was demanded but cannot run on this host."""


@dataclass(frozen=True, slots=True)
class HostVirt:
    """The host's hardware-virtualization facts (also what `list hostinfo` should report)."""
    kvm_present: bool
    kvm_usable: bool
    kvm_problem: str           # why /dev/kvm is unusable ("" when usable)
    pvm: bool                  # /dev/kvm is served by kvm_pvm
    vtx: bool                  # CPU flags: vmx
    amdv: bool                 # CPU flags: svm
    nested_paging: bool        # ept / npt
    unrestricted_guest: bool   # VT-x unrestricted guest

    @property
    def hw_virtualization(self) -> bool:
        """'Processor supports HW virtualization': VT-x or AMD-V in the CPU."""
        return self.vtx or self.amdv

    @property
    def hm_for_stock_guests(self) -> bool:
        return self.kvm_usable and not self.pvm and self.hw_virtualization


@dataclass(frozen=True, slots=True)
class EngineChoice:
    kind: str       # "hm" or "rem"
    reason: str     # one line for VBox.log / showvminfo


def _cpu_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _kvm_status(device: str) -> tuple[bool, bool, str]:
    if not os.path.exists(device):
        return False, False, f"{device} does not exist (no KVM module loaded)"
    try:
        from vmm.hm.kvm import KvmError, KvmSystem
        with KvmSystem(device):
            pass
    except KvmError as exc:
        return True, False, str(exc.strerror or exc)
    except OSError as exc:
        return True, False, f"cannot open {device}: {exc.strerror}"
    return True, True, ""


def detect_host(
    device: str = KVM_DEVICE, cpuinfo: str | None = None, sys_module: str = "/sys/module"
) -> HostVirt:
    flags = _cpu_flags(_read("/proc/cpuinfo") if cpuinfo is None else cpuinfo)
    present, usable, problem = _kvm_status(device)
    vtx, amdv = "vmx" in flags, "svm" in flags
    unrestricted = (vtx
                    and _read(f"{sys_module}/kvm_intel/parameters/unrestricted_guest").strip() in ("Y", "1"))
    return HostVirt(kvm_present=present, kvm_usable=usable, kvm_problem=problem,
                    pvm=os.path.isdir(f"{sys_module}/kvm_pvm"), vtx=vtx, amdv=amdv,
                    nested_paging=bool(flags & {"ept", "npt"}), unrestricted_guest=unrestricted)


def force_hm_requested(extra_data_value: str | None) -> bool:
    return (extra_data_value or "").strip().lower() in ("1", "true", "on", "yes")


def choose_engine(hwvirtex: bool, force_hm: bool = False, host: HostVirt | None = None) -> EngineChoice:
    """VirtualBox's rule, with PVM treated as 'no VT-x/AMD-V' unless forced."""
    host = detect_host() if host is None else host
    if force_hm:
        if not host.kvm_usable:
            raise EngineSelectError(f"{FORCE_HM_KEY}=1 but hardware virtualization is not usable: "
                                    f"{host.kvm_problem}")
        kind = "PVM (kvm_pvm)" if host.pvm else "KVM"
        return EngineChoice("hm",
                            f"HM: {FORCE_HM_KEY}=1 forces the hardware engine ({kind} via {KVM_DEVICE})")
    if not hwvirtex:
        return EngineChoice("rem", "REM: hardware virtualization disabled for this VM (--hwvirtex off)")
    if not host.kvm_usable:
        return EngineChoice("rem", f"REM: no usable VT-x/AMD-V ({host.kvm_problem})")
    if host.pvm:
        return EngineChoice("rem",
                            f"REM: {KVM_DEVICE} is PVM (kvm_pvm), not VT-x/AMD-V: stock guests cannot run "
                                   f"on it (set extra data {FORCE_HM_KEY}=1 for PVM-aware guests)")
    if not host.hw_virtualization:
        return EngineChoice("rem", f"REM: {KVM_DEVICE} is usable but the CPU reports neither VT-x nor AMD-V")
    return EngineChoice("hm", f"HM: using {'VT-x' if host.vtx else 'AMD-V'} through KVM ({KVM_DEVICE})")


def create_engine(kind: str, memory, io_bus, mmio_bus, *, paravirt: str | int = "none", os_type_id: str = "",
                  irqchip: str = "user", nested_paging: bool = True, large_pages: bool = False,
                  vpid: bool = True,
                  local_apic: bool = False):
    """Build the chosen engine's Vm.  HM uses userspace interrupt controllers by default (EM's PIC);
    the paging options are VirtualBox's --nested-paging/--large-pages/--vtx-vpid (HM only).
    local_apic: the VMM models a local APIC (vmm.devices.apic), so CPUID offers one."""
    if kind == "hm":
        from vmm.hm.vm import HmVm
        return HmVm(memory, io_bus, mmio_bus, irqchip=irqchip, paravirt=paravirt, os_type_id=os_type_id,
                    nested_paging=nested_paging, large_pages=large_pages, vpid=vpid, user_apic=local_apic)
    if kind == "rem":
        from vmm.gim import Gim
        from vmm.rem.engine import RemVm

        # REM's TSC rate is the host's nominal one (unknown here: 0)
        return RemVm(memory, io_bus, mmio_bus, gim=Gim(paravirt, os_type_id, support=RemVm.SUPPORT),
                     local_apic=local_apic)
    raise ValueError(f"unknown execution engine {kind!r} (hm or rem)")
