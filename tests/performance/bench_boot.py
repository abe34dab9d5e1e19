"""Boot benchmark: our REM vs QEMU TCG on the same Debian kernel and initramfs, in one run.

    python tests/performance/bench_boot.py [--runs N] [--skip-qemu] [--skip-dd]

Reports, for the bzImage and the vmlinux (PVH) forms: seconds from process start to the
guest's ready marker; the in-guest `time dd if=/dev/zero of=/dev/null bs=1M count=2000` speed (guest clock);
the time of a busybox ash loop (LOOP_N iterations of arithmetic and a test, guest clock); the
VM process's resident memory beyond guest RAM; the host CPU seconds the VM process spent on
each (steadier than wall time when the machine is loaded); and REM/QEMU ratios of the best runs (time ratios:
below 1 means REM is faster; speed ratios: above 1 means REM is faster).  REM runs the unicorn
library the binding finds (LIBUNICORN_PATH selects another build).  Installs qemu-system-x86 with
apt-get when it is missing (skip with --skip-qemu).  Builds the guest if needed.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from vmm.guest.builder import build, guest_files  # noqa: E402
from vmm.guest.init_script import READY_MARKER  # noqa: E402

MEMORY_MB = 256
CMDLINE = "console=ttyS0 quiet"
DD_MB = 2000
DD = f"time dd if=/dev/zero of=/dev/null bs=1M count={DD_MB}"
LOOP_N = 200_000
LOOP = f"time sh -c 'i=0; while [ $i -lt {LOOP_N} ]; do i=$((i+1)); done'"
TIME_RE = rb"real\s+(\d+)m\s*([\d.]+)s"


def ensure_qemu() -> str | None:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "qemu-system-x86"], check=False,
                       stdout=subprocess.DEVNULL, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        qemu = shutil.which("qemu-system-x86_64")
    return qemu


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (all threads): steadier than wall time on
    a loaded machine."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def run_guest(cmd: list[str], dd: bool, timeout: float = 300.0) -> dict:
    """Start the VM, time the marker, optionally run dd, then power off via the shell."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    buf = b""
    res: dict = {}

    def wait_for(pattern: bytes, limit: float) -> re.Match | None:
        nonlocal buf
        end = time.monotonic() + limit
        while time.monotonic() < end:
            m = re.search(pattern, buf)
            if m:
                return m
            r, _, _ = select.select([p.stdout], [], [], 0.2)
            if r:
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    return None
                buf += chunk
        return None

    try:
        if wait_for(READY_MARKER.encode(), timeout):
            res["ready_s"] = time.monotonic() - t0
            res["ready_cpu"] = cpu_s(p.pid)
            wait_for(rb"# ", 30)
            if dd:
                time.sleep(0.5)
                c0 = cpu_s(p.pid)
                p.stdin.write(DD.encode() + b"\n")
                p.stdin.flush()
                m = wait_for(TIME_RE, timeout)
                if m:
                    secs = int(m.group(1)) * 60 + float(m.group(2))
                    if secs > 0:
                        res["dd_mbs"] = DD_MB * 1.048576 / secs
                    res["dd_cpu"] = cpu_s(p.pid) - c0
                buf = buf[m.end():] if m else buf
                c0 = cpu_s(p.pid)
                p.stdin.write(LOOP.encode() + b"\n")
                p.stdin.flush()
                m = wait_for(TIME_RE, timeout)
                if m:
                    res["loop_s"] = int(m.group(1)) * 60 + float(m.group(2))
                    res["loop_cpu"] = cpu_s(p.pid) - c0
            res["rss_kb"] = rss_kb(p.pid)
            p.stdin.write(b"poweroff\n")
            p.stdin.flush()
            p.wait(60)
    except (OSError, subprocess.TimeoutExpired):
        pass
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    res["total_s"] = time.monotonic() - t0
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--skip-qemu", action="store_true")
    ap.add_argument("--skip-dd", action="store_true")
    ap.add_argument("--forms", default="bzImage,vmlinux", help="comma list of bzImage, vmlinux")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the marker")
    args = ap.parse_args()
    files = guest_files() if guest_files().exist() else build(log=lambda *_: None)
    qemu = None if args.skip_qemu else ensure_qemu()
    rows = []
    forms = {"bzImage": files.vmlinuz, "vmlinux": files.vmlinux}
    for form in args.forms.split(","):
        kernel = forms[form]
        ours = [sys.executable, "-m", "vmm.run", "--kernel", str(kernel), "--initrd", str(files.initrd),
                "--append", CMDLINE, "--memory", str(MEMORY_MB)]
        peers = [("vboxpy REM", ours)]
        if qemu:
            peers.append(("QEMU TCG", [qemu, "-accel", "tcg", "-m", str(MEMORY_MB), "-nographic", "-no-reboot",
                                       "-kernel", str(kernel), "-initrd", str(files.initrd), "-append", CMDLINE]))
        # the peers take turns, so both see the same load over the run
        for _ in range(args.runs):
            for name, cmd in peers:
                r = run_guest(cmd, dd=not args.skip_dd, timeout=args.timeout)
                rows.append((form, name, r))
                extra = max(0, r.get("rss_kb", 0) - MEMORY_MB * 1024) // 1024
                dd = f"{r['dd_mbs']:.0f} MB/s" if "dd_mbs" in r else "-"
                loop = f"{r['loop_s']:.2f} s" if "loop_s" in r else "-"
                nan = float("nan")
                print(f"{form:8} {name:11} ready {r.get('ready_s', nan):6.2f} s (CPU {r.get('ready_cpu', nan):5.2f} s)"
                      f"   dd {dd:>10} (CPU {r.get('dd_cpu', nan):5.2f} s)   ash loop {loop:>8} "
                      f"(CPU {r.get('loop_cpu', nan):5.2f} s)   peak RSS beyond guest RAM {extra:4d} MiB "
                      f"(RSS {r.get('rss_kb', 0) // 1024} MiB)", flush=True)
    print_ratios(rows)
    return 0


def _best(rows, form, name, key):
    """Best of the runs (least time, most speed): on a loaded machine, the least disturbed run."""
    vals = [r[key] for f, n, r in rows if f == form and n == name and key in r]
    if not vals:
        return None
    return max(vals) if key == "dd_mbs" else min(vals)


def print_ratios(rows) -> None:
    for form in dict.fromkeys(f for f, _, _ in rows):
        parts = []
        for key, label in (("ready_s", "boot time"), ("ready_cpu", "boot CPU"), ("dd_mbs", "dd speed"),
                           ("dd_cpu", "dd CPU"), ("loop_s", "ash loop time"), ("loop_cpu", "ash loop CPU")):
            ours, peer = _best(rows, form, "vboxpy REM", key), _best(rows, form, "QEMU TCG", key)
            if ours and peer:
                parts.append(f"{label} {ours / peer:.2f}")
        if parts:
            print(f"{form:8} REM/QEMU (best runs): " + ", ".join(parts))


if __name__ == "__main__":
    sys.exit(main())
