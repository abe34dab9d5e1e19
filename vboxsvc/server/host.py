"""IHost: what the service can tell about the machine it runs on, truthfully.

Hardware virtualization counts as usable only when /dev/kvm opens read-write and the KVM
module behind it is a real VT-x/AMD-V one: a PVM kernel (`/sys/module/kvm_pvm`) exposes
/dev/kvm without hardware virtualization, so it is reported as not usable.
"""

from __future__ import annotations

import os
import platform
import time

from ..api import errors as rc
from ..api.enums import ProcessorFeature
from ..api.errors import VBoxError

KVM_DEV = "/dev/kvm"
PVM_MODULE = "/sys/module/kvm_pvm"


def _cpuinfo() -> list[dict[str, str]]:
    cpus, cur = [], {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    if cur:
                        cpus.append(cur)
                    cur = {}
                    continue
                k, _, v = line.partition(":")
                cur[k.strip()] = v.strip()
    except OSError:
        pass
    if cur:
        cpus.append(cur)
    return cpus


def _meminfo() -> dict[str, int]:
    out = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                parts = v.split()
                if parts:
                    out[k] = int(parts[0])  # kB
    except OSError:
        pass
    return out


def hw_virt_status(kvm_dev: str = KVM_DEV, pvm_module: str = PVM_MODULE) -> tuple[bool, str]:
    """(usable, reason): is hardware-assisted virtualization (VT-x/AMD-V through KVM) usable here?"""
    if os.path.exists(pvm_module):
        return False, "/dev/kvm is provided by PVM (kvm_pvm), not by VT-x/AMD-V"
    if not os.path.exists(kvm_dev):
        return False, "/dev/kvm does not exist"
    try:
        fd = os.open(kvm_dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return False, f"/dev/kvm cannot be opened ({e.strerror})"
    os.close(fd)
    return True, "KVM"


class Host:
    __interface__ = "IHost"
    __component__ = "HostWrap"

    def __init__(self):
        self._cpus = _cpuinfo()
        flags = set(self._cpus[0].get("flags", "").split()) if self._cpus else set()
        self._flags = flags

    @property
    def processor_count(self) -> int:
        return os.cpu_count() or 1

    @property
    def processor_online_count(self) -> int:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else self.processor_count

    @property
    def processor_core_count(self) -> int:
        cores = {(c.get("physical id", "0"), c.get("core id", str(i))) for i, c in enumerate(self._cpus)}
        return len(cores) or self.processor_count

    @property
    def processor_online_core_count(self) -> int:
        return min(self.processor_core_count, self.processor_online_count)

    @property
    def memory_size(self) -> int:
        return _meminfo().get("MemTotal", 0) // 1024

    @property
    def memory_available(self) -> int:
        return _meminfo().get("MemAvailable", 0) // 1024

    @property
    def operating_system(self) -> str:
        return platform.system()

    @property
    def os_version(self) -> str:
        return platform.release()

    @property
    def utc_time(self) -> int:
        return int(time.time() * 1000)

    @property
    def acceleration3d_available(self) -> bool:
        return False

    def get_processor_feature(self, feature: ProcessorFeature) -> bool:
        usable, _ = hw_virt_status()
        f = self._flags
        vendor_virt = "vmx" in f or "svm" in f
        if feature == ProcessorFeature.HWVirtEx:
            return usable
        if feature == ProcessorFeature.PAE:
            return "pae" in f
        if feature == ProcessorFeature.LongMode:
            return "lm" in f
        if feature == ProcessorFeature.NestedPaging:
            return usable and vendor_virt and ("ept" in f or "npt" in f)
        if feature == ProcessorFeature.UnrestrictedGuest:
            return usable and vendor_virt and ("unrestricted_guest" in f or "svm" in f)
        if feature == ProcessorFeature.NestedHWVirt:
            return usable and vendor_virt
        if feature == ProcessorFeature.VirtVmsaveVmload:
            return usable and "v_vmsave_vmload" in f
        raise VBoxError(rc.E_INVALIDARG, f"Invalid processor feature {int(feature)}")

    def _cpu(self, cpu_id: int) -> dict[str, str]:
        if cpu_id < 0 or cpu_id >= max(1, len(self._cpus)):
            raise VBoxError(rc.E_INVALIDARG, f"Invalid CPU id {cpu_id}")
        return self._cpus[cpu_id] if self._cpus else {}

    def get_processor_description(self, cpu_id: int) -> str:
        return self._cpu(cpu_id).get("model name", platform.processor() or "unknown")

    def get_processor_speed(self, cpu_id: int) -> int:
        mhz = self._cpu(cpu_id).get("cpu MHz")
        try:
            return int(float(mhz)) if mhz else 0
        except ValueError:
            return 0
