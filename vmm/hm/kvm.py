"""The /dev/kvm system handle: open, API version, capabilities, supported CPUID and MSRs.

ioctls go through libc via ctypes (not fcntl.ioctl) for two reasons: the call releases
the GIL while KVM_RUN blocks, and an EINTR from a kick comes back to us instead of being
retried by Python (which would re-enter KVM_RUN with immediate_exit set, forever).
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass, field

from vmm.hm import abi

_libc = ctypes.CDLL(None, use_errno=True)
_ioctl = _libc.ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_ioctl.restype = ctypes.c_int

KVM_DEVICE = "/dev/kvm"


class KvmError(OSError):
    """A failed KVM ioctl, naming the operation."""


def ioctl(fd: int, request: int, arg=None, what: str = "") -> int:
    """ioctl(2) that raises KvmError on failure (EINTR included: callers handle it)."""
    ret = _ioctl(fd, request, arg)
    if ret < 0:
        err = ctypes.get_errno()
        raise KvmError(err, f"{what or hex(request)}: {os.strerror(err)}")
    return ret


def raw_ioctl():
    """The bare libc ioctl function, for the hot path and the benchmark's peer loop."""
    return _ioctl


@dataclass(slots=True)
class KvmInfo:
    """What this host's KVM offers (see `KvmSystem.probe`)."""
    api_version: int
    vcpu_mmap_size: int
    caps: dict[str, int] = field(default_factory=dict)
    pvm: bool = False

    def has(self, cap: str) -> bool:
        return self.caps.get(cap, 0) > 0


def pvm_loaded() -> bool:
    """PVM (pagetable-based virtual machine, `kvm_pvm`) serves /dev/kvm without VT-x/AMD-V."""
    return os.path.isdir("/sys/module/kvm_pvm")


class KvmSystem:
    """An open /dev/kvm."""

    def __init__(self, path: str = KVM_DEVICE):
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise KvmError(exc.errno or errno.ENODEV, f"cannot open {path}: {exc.strerror}") from exc
        try:
            self.api_version = ioctl(self.fd, abi.KVM_GET_API_VERSION, None, "KVM_GET_API_VERSION")
            if self.api_version != abi.KVM_API_VERSION:
                raise KvmError(errno.EINVAL, f"KVM API version {self.api_version}, expected "
                                             f"{abi.KVM_API_VERSION}")
            self.vcpu_mmap_size = ioctl(self.fd, abi.KVM_GET_VCPU_MMAP_SIZE, None, "KVM_GET_VCPU_MMAP_SIZE")
        except BaseException:
            os.close(self.fd)
            raise

    def check_extension(self, cap: int) -> int:
        return ioctl(self.fd, abi.KVM_CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION")

    def probe(self) -> KvmInfo:
        caps = {name: self.check_extension(num) for num, name in abi.CAP_NAMES.items()}
        return KvmInfo(self.api_version, self.vcpu_mmap_size, caps, pvm_loaded())

    def supported_cpuid(self) -> list[tuple[int, int, int, int, int, int, int]]:
        """(function, index, flags, eax, ebx, ecx, edx) for every leaf KVM can virtualise."""
        count = 64
        while True:
            buf = abi.cpuid2_type(count)()
            buf.nent = count
            try:
                ioctl(self.fd, abi.KVM_GET_SUPPORTED_CPUID, ctypes.addressof(buf), "KVM_GET_SUPPORTED_CPUID")
            except KvmError as exc:
                if exc.errno == errno.E2BIG and count < 4096:
                    count *= 2
                    continue
                raise
            return [(e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx)
                    for e in buf.entries[:buf.nent]]

    def msr_index_list(self) -> list[int]:
        count = 256
        while True:
            buf = abi.msr_list_type(count)()
            buf.nmsrs = count
            try:
                ioctl(self.fd, abi.KVM_GET_MSR_INDEX_LIST, ctypes.addressof(buf), "KVM_GET_MSR_INDEX_LIST")
            except KvmError as exc:
                if exc.errno == errno.E2BIG and count < 65536:
                    count = max(count * 2, buf.nmsrs)
                    continue
                raise
            return list(buf.indices[:buf.nmsrs])

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> KvmSystem:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
