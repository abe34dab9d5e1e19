"""GIM on REM seen from a Linux guest: the Debian kernel reports the provider it detects.

One boot per provider through the dev runner (`python -m vmm.run --paravirt-provider P`):
- kvm: "Hypervisor detected: KVM" (REM offers no kvmclock MSRs, so the guest keeps the TSC);
- hyperv: the hypervisor flag, but no detection: VirtualBox's Hyper-V vendor is
  `VBoxVBoxVBox`, and Linux only recognises Hyper-V by "Microsoft Hv";
- none: neither the flag nor a detected hypervisor (QEMU's own CPU model sets the flag).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.integration.vm.guest_console import READY_MARKER, GuestConsole

ROOT = Path(__file__).resolve().parents[3]
GUEST = ROOT / ".cache" / "guest"
BOOT_TIMEOUT = 600

pytestmark = [
    pytest.mark.guest,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not (GUEST / "vmlinux").exists(),
                       reason="no guest kernel: run python -m vmm.guest.builder"),
]


@pytest.mark.parametrize("provider,detected,flag", [
    ("kvm", "Hypervisor detected: KVM", True),
    ("hyperv", None, True),
    ("none", None, False),
])
def test_linux_guest_sees_the_provider(provider, detected, flag, tmp_path):
    argv = [sys.executable, "-m", "vmm.run", "--kernel", str(GUEST / "vmlinux"), "--initrd",
            str(GUEST / "initrd.img"), "--append", "console=ttyS0 quiet", "--memory", "256",
            "--engine", "rem", "--paravirt-provider", provider]
    console = GuestConsole(argv, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                           log_path=str(tmp_path / "console.log"))
    try:
        console.wait_for(READY_MARKER, BOOT_TIMEOUT)
        status, dmesg = console.run("dmesg | grep -i -e 'hypervisor detected' -e kvm-clock -e kvmclock; true")
        assert status == 0
        status, flags = console.run("grep -c -w hypervisor /proc/cpuinfo; true")
        assert status == 0
        console.proc.stdin.write(b"poweroff -f\n")
        console.proc.stdin.flush()
    finally:
        code = console.close()
    lines = [ln for ln in dmesg.splitlines() if "hypervisor detected" in ln.lower()]
    if detected:
        assert any(detected in ln for ln in lines), dmesg
        assert "kvm-clock" not in dmesg.lower(), dmesg       # no clocksource MSRs offered on REM
    else:
        assert lines == [], dmesg
    assert (flags.strip().splitlines()[-1] != "0") == flag, flags
    assert code == 0
