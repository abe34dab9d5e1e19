"""Soak REM: many boots, or a long busy guest, checking the guest for corruption.

    python tests/performance/soak_rem.py --boots 100           boot, check, power off, N times
    python tests/performance/soak_rem.py --minutes 30          one boot, busy for M minutes

Busy means: a CPU-bound process spinning in user mode (timer preemption), console output
(serial), and rounds of disk traffic through an AHCI disk (DMA into guest RAM), each round
checked: a pipeline's checksum against the host's, a pattern written to the disk and read
back uncached, and the kernel log free of oopses, BUGs and segfaults.  Boots alternate
between the vmlinux and bzImage forms.  Exits 1 at the first corruption (the console log is
kept and its path printed).  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.integration.vm.guest_console import READY_MARKER, GuestConsole  # noqa: E402
from vmm.guest.builder import build, guest_files  # noqa: E402
from vmm.storage.create import create_vdi  # noqa: E402

SEQ_N = 20000
PATTERN_MB = 4
BAD = ("Oops", "BUG:", "segfault", "general protection", "Kernel panic", "invalid opcode")


def seq_md5(n: int) -> str:
    return hashlib.md5("".join(f"{i}\n" for i in range(1, n + 1)).encode()).hexdigest()


def boot(kernel: Path, initrd: Path, disk: Path | None, log: Path) -> GuestConsole:
    argv = [sys.executable, "-m", "vmm.run", "--kernel", str(kernel), "--initrd", str(initrd),
            "--append", "console=ttyS0 quiet", "--memory", "256", "--engine", "rem"]
    if disk is not None:
        argv += ["--disk", f"ahci:{disk}"]
    console = GuestConsole(argv, env=dict(os.environ, PYTHONPATH=str(ROOT)), log_path=str(log))
    console.wait_for(READY_MARKER, 600)
    return console


def check(
    console: GuestConsole, what: str, command: str, expect: str | None = None, timeout: float = 300
) -> None:
    status, out = console.run(command, timeout)
    if status != 0 or (expect is not None and expect not in out):
        raise AssertionError(f"{what}: status {status}, expected {expect!r}, got:\n{out[-2000:]}")


def kernel_log_clean(console: GuestConsole) -> None:
    status, out = console.run("dmesg")
    bad = [ln for ln in out.splitlines() if any(b in ln for b in BAD)]
    if bad:
        raise AssertionError("kernel log: " + "\n".join(bad[:10]))


def busy_round(console: GuestConsole, n: int, expect_seq: str, disk: bool) -> None:
    check(console, "pipeline checksum", f"seq 1 {SEQ_N} | md5sum", expect_seq)
    check(console, "arithmetic", "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; echo N=$i", "N=3000")
    if disk:
        # a pattern that changes each round, written to the disk, then read back uncached
        make = f"yes round{n} | head -c {PATTERN_MB << 20}"
        check(console, "disk write", f"{make} | dd of=/dev/sda bs=64k conv=fsync 2>/dev/null; sync")
        check(console, "drop caches", "echo 3 > /proc/sys/vm/drop_caches")
        status, want = console.run(f"{make} | md5sum")
        check(console, "disk read back",
              f"dd if=/dev/sda bs=64k count={PATTERN_MB * 16} 2>/dev/null | md5sum",
              want.split()[0] if status == 0 and want.split() else None)
    kernel_log_clean(console)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boots", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=0)
    args = ap.parse_args()
    if not args.boots and not args.minutes:
        ap.error("give --boots N or --minutes M")
    files = guest_files() if guest_files().exist() else build(log=lambda *_: None)
    work = Path(tempfile.mkdtemp(prefix="soak-rem-"))
    expect_seq = seq_md5(SEQ_N)
    t0 = time.monotonic()
    try:
        if args.boots:
            for i in range(args.boots):
                kernel = files.vmlinux if i % 2 == 0 else files.vmlinuz
                log = work / f"boot{i}.log"
                console = boot(kernel, files.initrd, None, log)
                try:
                    busy_round(console, i, expect_seq, disk=False)
                    console.proc.stdin.write(b"poweroff -f\n")
                    console.proc.stdin.flush()
                finally:
                    code = console.close()
                if code != 0:
                    raise AssertionError(f"boot {i}: VM process exit {code}")
                log.unlink()
                print(f"boot {i + 1}/{args.boots} ok ({time.monotonic() - t0:.0f} s)", flush=True)
        else:
            disk = work / "soak.vdi"
            create_vdi(str(disk), 64 << 20).close()
            log = work / "busy.log"
            console = boot(files.vmlinux, files.initrd, disk, log)
            try:
                check(console, "spinner", "(while :; do :; done) > /dev/null 2>&1 & true")
                end, n = t0 + args.minutes * 60, 0
                while time.monotonic() < end:
                    busy_round(console, n, expect_seq, disk=True)
                    n += 1
                    print(f"round {n} ok ({time.monotonic() - t0:.0f} s)", flush=True)
                console.proc.stdin.write(b"poweroff -f\n")
                console.proc.stdin.flush()
            finally:
                console.close()
    except (AssertionError, TimeoutError, RuntimeError) as e:
        print(f"CORRUPTION or failure after {time.monotonic() - t0:.0f} s: {e}\nlogs in {work}",
              file=sys.stderr)
        return 1
    print(f"soak passed in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
