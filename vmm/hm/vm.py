"""HM: the hardware engine, a KVM virtual machine behind vmm.engine's Vm contract.

The VM maps the same GuestMemory pages the devices use (one KVM memory slot per RAM
region), picks the interrupt model and creates vCPUs:

- irqchip="user": PIC, PIT and friends are the userspace devices on the buses (as on
  REM); EM injects vectors with Vcpu.inject_interrupt (KVM_INTERRUPT) and uses the
  interrupt window.  This is what vmm/vm.py's Machine uses.
- irqchip="kernel": KVM's in-kernel PIC/IOAPIC/LAPIC and PIT (ports in KERNEL_PORTS never
  reach userspace); devices raise their lines through `irq_line(gsi)`.
- irqchip="auto": kernel when the host offers IRQCHIP and PIT2, else user.
"""

from __future__ import annotations

import ctypes
import mmap
import os

from vmm.gim import EngineSupport, Gim
from vmm.hm import abi
from vmm.hm.cpuid import guest_cpuid
from vmm.hm.kvm import KvmError, KvmSystem, ioctl
from vmm.hm.physmap import HmPhysMap
from vmm.hm.vcpu import HmError, HmVcpu, install_kick_handler
from vmm.irq import IrqLine
from vmm.memory import GuestMemory
from vmm.physmap import windows_for

# Intel needs a 3-page TSS and an identity-map page for real mode; placed just below the BIOS area.
TSS_ADDR = 0xFFFB_D000
IDENTITY_MAP_ADDR = 0xFFFB_C000
# port ranges the in-kernel devices claim: PIC master/slave, ELCR, PIT, speaker port
KERNEL_PORTS = ((0x20, 2), (0xA0, 2), (0x4D0, 2), (0x40, 4), (0x61, 1))
REQUIRED_CAPS = ("USER_MEMORY", "SET_TSS_ADDR", "IMMEDIATE_EXIT", "EXT_CPUID")
KVM_APIC_KHZ = 1_000_000        # KVM's local APIC timer runs at 1 GHz
INVARIANT_TSC = 1 << 8          # CPUID 0x80000007 EDX


def _param(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _host_nested_paging() -> bool:
    return (_param("/sys/module/kvm_intel/parameters/ept") in ("Y", "1")
            or _param("/sys/module/kvm_amd/parameters/npt") in ("Y", "1"))


def _host_vpid() -> bool:
    return _param("/sys/module/kvm_intel/parameters/vpid") in ("Y", "1")


class HmVm:
    name = "HM"

    def __init__(self, memory: GuestMemory, io_bus=None, mmio_bus=None, *, irqchip: str = "user",
                 paravirt: str | int = "none", os_type_id: str = "", kvm: KvmSystem | None = None,
                 nested_paging: bool = True, large_pages: bool = False, vpid: bool = True,
                 user_apic: bool = False):
        if irqchip not in ("user", "kernel", "auto"):
            raise ValueError(f"irqchip must be 'user', 'kernel' or 'auto', not {irqchip!r}")
        install_kick_handler()
        self.memory = memory
        self.io_bus = io_bus
        self.mmio_bus = mmio_bus
        self._own_kvm = kvm is None
        self.kvm = kvm if kvm is not None else KvmSystem()
        self.fd = -1
        self.vcpus: list[HmVcpu] = []
        try:
            self.info = self.kvm.probe()
            missing = [c for c in REQUIRED_CAPS if not self.info.has(c)]
            if missing:
                raise HmError(f"/dev/kvm lacks {', '.join('KVM_CAP_' + c for c in missing)}")
            offers_kernel = self.info.has("IRQCHIP") and self.info.has("PIT2")
            if irqchip == "kernel" and not offers_kernel:
                raise HmError("/dev/kvm offers no in-kernel irqchip and PIT")
            self.kernel_irqchip = irqchip == "kernel" or (irqchip == "auto" and offers_kernel)
            # irqchip="user" with the VMM's own local APIC (vmm.devices.apic) on the MMIO bus
            self.user_apic = user_apic and not self.kernel_irqchip
            self.fd = ioctl(self.kvm.fd, abi.KVM_CREATE_VM, 0, "KVM_CREATE_VM")
            ioctl(self.fd, abi.KVM_SET_TSS_ADDR, TSS_ADDR, "KVM_SET_TSS_ADDR")
            if self.info.has("SET_IDENTITY_MAP_ADDR"):
                addr = ctypes.c_uint64(IDENTITY_MAP_ADDR)
                ioctl(self.fd, abi.KVM_SET_IDENTITY_MAP_ADDR, ctypes.addressof(addr),
                      "KVM_SET_IDENTITY_MAP_ADDR")
            self.large_pages = large_pages and self._advise_huge_pages()
            self.firmware = None              # vmm.firmware.FirmwareImage, set before the first vCPU
            self.legacy_windows = None        # vmm.physmap windows of the PAM segments
            self.physmap: HmPhysMap | None = None
            self._flat_mapped = False
            if self.kernel_irqchip:
                ioctl(self.fd, abi.KVM_CREATE_IRQCHIP, None, "KVM_CREATE_IRQCHIP")
                pit = abi.KvmPitConfig(flags=abi.KVM_PIT_SPEAKER_DUMMY)
                ioctl(self.fd, abi.KVM_CREATE_PIT2, ctypes.addressof(pit), "KVM_CREATE_PIT2")
                self._initial_irqchip = self.get_irqchip_state()
            self._supported_cpuid = self.kvm.supported_cpuid()
            self.saveable_msrs = set(self.kvm.msr_index_list())
            self.gim_support = EngineSupport(
                kvm_clock_msrs=self.info.has("CLOCKSOURCE"),
                kvm_hypercalls=self.kernel_irqchip,
                hyperv_msrs=self.info.has("HYPERV") and self.kernel_irqchip,
                nested_paging=not self.info.pvm and _host_nested_paging(),
                tsc_stable=self._host_invariant_tsc())
            # KVM chooses EPT/NPT and VPID per host (module parameters), not per VM: report, don't pretend
            self.nested_paging = nested_paging and not self.info.pvm and _host_nested_paging()
            self.vpid = vpid and _host_vpid()
            self.paravirt = paravirt
            self.os_type_id = os_type_id
            self.gim: Gim | None = None
        except BaseException:
            self.close()
            raise

    def _host_invariant_tsc(self) -> bool:
        return any(f == 0x8000_0007 and edx & INVARIANT_TSC
                   for f, _, _, _, _, _, edx in self._supported_cpuid)

    def _advise_huge_pages(self) -> bool:
        """--large-pages: back guest RAM with transparent huge pages where the host allows."""
        try:
            self.memory.mmap.madvise(mmap.MADV_HUGEPAGE)
        except (AttributeError, OSError):
            return False
        return True

    def _map_memory(self) -> None:
        """The memory slots (vmm/hm/physmap.py), made when the first vCPU is: the firmware and the
        PAM windows are known by then."""
        if self.physmap is not None or self._flat_mapped:
            return
        if self.firmware is None and self.legacy_windows is None:
            # no chipset (a bare VM of the engine tests): all RAM, one slot per region
            for slot, (gpa, length, offset) in enumerate(self.memory.regions):
                region = abi.KvmUserspaceMemoryRegion(slot, 0, gpa, length, self.memory.address + offset)
                ioctl(self.fd, abi.KVM_SET_USER_MEMORY_REGION, ctypes.addressof(region),
                      "KVM_SET_USER_MEMORY_REGION")
            self._flat_mapped = True
            return
        windows = self.legacy_windows or windows_for(bytes(7), self.firmware.alias_offset)
        self.physmap = HmPhysMap(self.fd, self.memory, self.firmware, windows, self.info.has("READONLY_MEM"))

    def set_legacy_windows(self, windows) -> None:
        """The chipset switched PAM segments (vCPU thread, between runs): replace their slots."""
        self.legacy_windows = list(windows)
        if self.physmap is not None:
            self.physmap.set_windows(self.legacy_windows)

    def cpuid_for(self, index: int, tsc_khz: int):
        """The CPUID table of vCPU `index` (GIM's leaves need the TSC rate, known once a vCPU exists)."""
        if self.gim is None:
            self.gim = Gim(self.paravirt, self.os_type_id, tsc_khz=tsc_khz,
                           apic_khz=KVM_APIC_KHZ if self.kernel_irqchip or self.user_apic else 0,
                           support=self.gim_support)
        return guest_cpuid(self._supported_cpuid, self.gim, index,
                           local_apic=self.kernel_irqchip or self.user_apic,
                           apic_extensions=self.kernel_irqchip)

    # -- vCPUs ---------------------------------------------------------------------------------
    def create_vcpu(self, index: int) -> HmVcpu:
        self._map_memory()
        if any(v.index == index for v in self.vcpus):
            raise HmError(f"vCPU {index} already exists")
        limit = self.info.caps.get("MAX_VCPUS") or self.info.caps.get("NR_VCPUS") or 1
        if not 0 <= index < limit:
            raise HmError(f"vCPU index {index} out of range (KVM allows {limit})")
        vcpu = HmVcpu(self, index)
        self.vcpus.append(vcpu)
        return vcpu

    # -- interrupts (in-kernel irqchip) ----------------------------------------------------------
    def set_irq(self, gsi: int, level: bool) -> None:
        if not self.kernel_irqchip:
            raise HmError("set_irq needs the in-kernel irqchip; with irqchip='user' the PIC "
                          "device takes lines")
        line = abi.KvmIrqLevel(gsi, 1 if level else 0)
        ioctl(self.fd, abi.KVM_IRQ_LINE, ctypes.addressof(line), "KVM_IRQ_LINE")

    def irq_line(self, gsi: int) -> IrqLine:
        """An IrqLine for a device whose interrupt goes to the in-kernel PIC/IOAPIC input `gsi`."""
        return IrqLine(lambda level: self.set_irq(gsi, level))

    def get_irqchip_state(self) -> dict[str, bytes]:
        """In-kernel PIC master/slave, IOAPIC and PIT as opaque blobs (saved state)."""
        if not self.kernel_irqchip:
            return {}
        out = {}
        for chip_id, name in ((0, "pic_master"), (1, "pic_slave"), (2, "ioapic")):
            chip = abi.KvmIrqchip(chip_id=chip_id)
            ioctl(self.fd, abi.KVM_GET_IRQCHIP, ctypes.addressof(chip), "KVM_GET_IRQCHIP")
            out[name] = bytes(chip)
        pit = abi.KvmPitState2()
        ioctl(self.fd, abi.KVM_GET_PIT2, ctypes.addressof(pit), "KVM_GET_PIT2")
        out["pit"] = bytes(pit)
        return out

    def set_irqchip_state(self, blobs: dict[str, bytes]) -> None:
        for name in ("pic_master", "pic_slave", "ioapic"):
            if name in blobs:
                chip = abi.KvmIrqchip.from_buffer_copy(blobs[name])
                ioctl(self.fd, abi.KVM_SET_IRQCHIP, ctypes.addressof(chip), "KVM_SET_IRQCHIP")
        if "pit" in blobs:
            pit = abi.KvmPitState2.from_buffer_copy(blobs["pit"])
            ioctl(self.fd, abi.KVM_SET_PIT2, ctypes.addressof(pit), "KVM_SET_PIT2")

    # -- lifecycle --------------------------------------------------------------------------------
    def pause(self) -> int | None:
        """Freeze kvmclock while the VM is paused; returns the clock to hand to resume()."""
        if not self.info.has("ADJUST_CLOCK"):
            return None
        data = abi.KvmClockData()
        ioctl(self.fd, abi.KVM_GET_CLOCK, ctypes.addressof(data), "KVM_GET_CLOCK")
        return data.clock

    def resume(self, clock: int | None) -> None:
        if clock is None or not self.info.has("ADJUST_CLOCK"):
            return
        data = abi.KvmClockData(clock=clock)
        ioctl(self.fd, abi.KVM_SET_CLOCK, ctypes.addressof(data), "KVM_SET_CLOCK")

    def reset(self) -> None:
        """Hard reset: every vCPU to its power-on state, the in-kernel chips to their initial state."""
        for vcpu in self.vcpus:
            vcpu.reset()
        if self.kernel_irqchip:
            self.set_irqchip_state(self._initial_irqchip)

    def close(self) -> None:
        for vcpu in self.vcpus:
            vcpu.close()
        self.vcpus.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self._own_kvm:
            self.kvm.close()

    def describe(self) -> list[str]:
        """Lines for VBox.log."""
        caps = ", ".join(f"{k}={v}" for k, v in sorted(self.info.caps.items()) if v)
        lines = [f"HM: KVM API {self.info.api_version}{' (PVM: kvm_pvm)' if self.info.pvm else ''}",
                 f"HM: interrupt controllers {'in-kernel' if self.kernel_irqchip else 'userspace'}",
                 f"HM: capabilities {caps}",
                 f"HM: nested paging {'on' if self.nested_paging else 'off (shadow paging)'}, "
                 f"VPID {'on' if self.vpid else 'off'}, large pages {'on' if self.large_pages else 'off'}"]
        if self.gim is not None:
            lines.append(self.gim.describe())
        return lines


class KernelPic:
    """Stands in for the userspace PicPair when KVM's in-kernel irqchip is used.

    Devices' ISA lines go to KVM_IRQ_LINE; KVM itself delivers interrupts (and wakes a HLT
    inside KVM_RUN), so EM never sees one pending and never injects.
    """

    def __init__(self, vm: HmVm):
        if not vm.kernel_irqchip:
            raise HmError("KernelPic needs an HmVm with irqchip='kernel'")
        self.vm = vm
        self.on_change = None

    def set_irq(self, n: int, level: bool) -> None:
        self.vm.set_irq(n, level)

    def has_interrupt(self) -> bool:
        return False

    def acknowledge(self) -> int:
        raise HmError("interrupts are acknowledged by the in-kernel PIC")


__all__ = ["HmVm", "HmVcpu", "HmError", "KernelPic", "KvmError", "KERNEL_PORTS"]
