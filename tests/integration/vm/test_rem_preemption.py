"""REM preempts a Linux guest for real: timer ticks reach a guest that spins without I/O.

A user process running `while :; do :; done` reaches no port access, exception or system call,
so an engine that only stops at such points never delivers the timer interrupt to it: the
kernel's jiffies stand still and a `sleep 1` in another process never returns.  One boot of
the Debian guest on REM (dev runner), then the workload; the checks are on guest behaviour
(jiffies advance, sleep returns, the spinner got the CPU), not on timing.
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

JIFFIES = "awk '/^timestamp/ {print $2}' /proc/schedstat"


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    log = tmp_path_factory.mktemp("rem-preemption") / "console.log"
    argv = [sys.executable, "-m", "vmm.run", "--kernel", str(GUEST / "vmlinux"), "--initrd",
            str(GUEST / "initrd.img"), "--append", "console=ttyS0 quiet", "--memory", "256",
            "--engine", "rem"]
    c = GuestConsole(argv, env=dict(os.environ, PYTHONPATH=str(ROOT)), log_path=str(log))
    try:
        c.wait_for(READY_MARKER, BOOT_TIMEOUT)
        yield c
        c.proc.stdin.write(b"poweroff -f\n")
        c.proc.stdin.flush()
    finally:
        c.close()


def test_jiffies_advance_and_sleep_returns_while_a_process_spins(console):
    script = ("rm -f /tmp/spins; (while :; do echo . >> /tmp/spins; done) & s=$!; "
              f"j0=$({JIFFIES}); sleep 1; j1=$({JIFFIES}); "
              "(while :; do :; done) & t=$!; sleep 1; j2=$(" + JIFFIES + "); "
              "kill $s $t; echo RESULT $j0 $j1 $j2 $(wc -l < /tmp/spins)")
    status, out = console.run(script, timeout=180)        # stock REM: sleep never returns
    assert status == 0, out
    j0, j1, j2, spins = (int(v) for v in out.split("RESULT", 1)[1].split()[:4])
    assert j1 > j0 and j2 > j1                            # the timer ticked while processes spun
    assert spins > 0                                      # the writing spinner got the CPU too
    status, out = console.run("echo alive")
    assert status == 0 and "alive" in out
