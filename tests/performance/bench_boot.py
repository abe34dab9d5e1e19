"""Boot benchmark: our REM vs QEMU TCG on the same guests and firmware, in one run.

    python tests/performance/bench_boot.py [--runs N] [--skip-qemu] [--skip-dd] [--timeout S]
                                           [--forms bzImage,vmlinux,bios,disk,iso,debian]

Reports, for the bzImage and the vmlinux (PVH) forms (the Debian kernel and initramfs loaded
directly): seconds from process start to the guest's ready marker; the in-guest
`time dd if=/dev/zero of=/dev/null bs=1M count=2000` speed (guest clock); the time of a busybox
ash loop (LOOP_N iterations of arithmetic and a test, guest clock); and the VM process's resident
memory beyond guest RAM.

The firmware forms boot through SeaBIOS (the same bios.bin for both, QEMU with `-M pc`), each
medium on the AHCI controller: `bios` a disk whose boot sector prints a marker on COM1 (for
vboxpy also the firmware's own share: its first debug-port line to the marker); the guest
builder's media `disk` (the MBR/SYSLINUX disk image) and `iso` (the ISOLINUX CD) to the ready
marker; `debian` (the full Debian 12 disk) to its serial login prompt.  They report seconds from
process start through the firmware and the boot loader to the marker or prompt.

Every form also reports the host CPU seconds the VM process spent on each phase (steadier than
wall time when the machine is loaded).  The peers take turns run by run, so both see the same
load; at the end come REM/QEMU ratios of the best runs (time ratios: below 1 means REM is faster;
speed ratios: above 1 means REM is faster).  REM runs the unicorn library the binding finds
(LIBUNICORN_PATH selects another build).  Installs qemu-system-x86 with apt-get when it is
missing (skip with --skip-qemu).  Builds the guest and the media if needed.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from qemu_media import DEBIAN_MEMORY_MB, LOGIN_PROMPT, ensure_media, qemu_command  # noqa: E402

from vmm.guest.builder import build, cache_dir, guest_files  # noqa: E402
from vmm.guest.debian_disk import debian_files  # noqa: E402
from vmm.guest.init_script import READY_MARKER  # noqa: E402
from vmm.guest.media import media_files  # noqa: E402

MEMORY_MB = 256
CMDLINE = "console=ttyS0 quiet"
DD_MB = 2000
DD = f"time dd if=/dev/zero of=/dev/null bs=1M count={DD_MB}"
LOOP_N = 200_000
LOOP = f"time sh -c 'i=0; while [ $i -lt {LOOP_N} ]; do i=$((i+1)); done'"
TIME_RE = rb"real\s+(\d+)m\s*([\d.]+)s"
BIOS_FORMS = ("disk", "iso", "debian")
BIOS_MARKER = "VBOXPY-MBR-BOOTED"
OURS, PEER = "vboxpy REM", "QEMU TCG"
NAN = float("nan")


def _run_help() -> str:
    res = subprocess.run([sys.executable, "-m", "vmm.run", "--help"], capture_output=True, text=True)
    return res.stdout


def ours_bios(form: str, scratch: str) -> list[str] | None:
    """Our command booting a BIOS form through the firmware from a scratch copy of the medium on
    the AHCI controller (the ISO on a DVD drive); None when vmm.run cannot boot that form."""
    helptext = _run_help()
    if "[--kernel" not in helptext:
        return None                                 # --kernel is required: no firmware boot here
    d = cache_dir()
    cmd = [sys.executable, "-m", "vmm.run", "--memory", str(MEMORY_MB)]
    if form == "iso":
        return cmd + ["--dvd", str(media_files(d).iso)] if "--dvd" in helptext else None
    src = media_files(d).disk_raw if form == "disk" else debian_files(d).raw
    copy = os.path.join(scratch, f"{form}.img")
    subprocess.run(["cp", "--sparse=always", str(src), copy], check=True)
    if form == "debian":
        cmd[-1] = str(DEBIAN_MEMORY_MB)
    return cmd + ["--disk", f"ahci:{copy}"]


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
        return NAN


def run_guest(
    cmd: list[str], dd: bool, timeout: float = 300.0, marker: bytes = READY_MARKER.encode()
) -> dict:
    """Start the VM, time the marker, optionally run dd and the ash loop, then power off via the
    shell (a login prompt as the marker: no shell, the VM is killed after the timing)."""
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
        if wait_for(marker, timeout):
            res["ready_s"] = time.monotonic() - t0
            res["ready_cpu"] = cpu_s(p.pid)
            if marker == LOGIN_PROMPT:
                return res
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


def run_marker(cmd: list[str], timeout: float) -> dict:
    """Start the VM, time the boot sector's marker on the serial port and the CPU seconds so far,
    then kill it; for vboxpy also the firmware's share, from its --verbose log (which stamps ms
    since the process started): its first BIOS debug-port line to the marker."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err, res = b"", b"", {}
    end = t0 + timeout
    try:
        while time.monotonic() < end and "ready_s" not in res:
            r, _, _ = select.select([p.stdout, p.stderr], [], [], 0.2)
            for fd in r:
                chunk = os.read(fd.fileno(), 65536)
                if fd is p.stdout:
                    out += chunk
                else:
                    err += chunk
            if BIOS_MARKER.encode() in out:
                res["ready_s"] = time.monotonic() - t0
                res["ready_cpu"] = cpu_s(p.pid)
            if p.poll() is not None and not r:
                break
    finally:
        p.kill()
        p.wait()
    m = re.search(rb"^\s*(\d+) vboxpy\.vm: BIOS: ", err, re.M)
    if m and "ready_s" in res:
        res["fw_s"] = res["ready_s"] - int(m.group(1)) / 1000
    return res


def bios_form(qemu: str | None, runs: int, timeout: float) -> list[tuple[str, str, dict]]:
    from tests.integration.vm.test_bios_boot import boot_sector
    from vmm import firmware
    bios = firmware.find()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        disk = os.path.join(tmp, "mbr.img")
        with open(disk, "wb") as f:
            f.write(boot_sector(BIOS_MARKER).ljust(4 << 20, b"\0"))
        ours = [sys.executable, "-m", "vmm.run", "--memory", "64", "--disk", f"ahci:{disk}", "--verbose"]
        peers = [(OURS, ours)]
        if qemu:
            peers.append((PEER, [qemu, "-accel", "tcg", "-M", "pc", "-m", "64", "-bios", str(bios),
                                 "-display", "none", "-serial", "stdio", "-monitor", "none",
                                 "-drive", f"file={disk},format=raw,if=none,id=d0", "-device", "ahci,id=sata",
                                 "-device", "ide-hd,drive=d0,bus=sata.0"]))
        # the peers take turns, so both see the same load over the run
        for _ in range(runs):
            for name, cmd in peers:
                r = run_marker(cmd, timeout)
                rows.append(("bios", name, r))
                share = f"   firmware from its first debug line {r['fw_s']:5.2f} s" if "fw_s" in r else ""
                print(f"bios     {name:11} marker {r.get('ready_s', NAN):6.2f} s "
                      f"(CPU {r.get('ready_cpu', NAN):5.2f} s){share}", flush=True)
    return rows


def media_form(form: str, qemu: str | None, runs: int, timeout: float) -> list[tuple[str, str, dict]]:
    """A BIOS medium of the guest builder, booted through the firmware and its boot loader."""
    rows = []
    scratch = tempfile.mkdtemp(prefix="vboxpy-bench-")
    try:
        ours = ours_bios(form, scratch)
        peers = [(OURS, ours)] if ours else []
        if qemu:
            peers.append((PEER, qemu_command(form, qemu, bus="ahci")))
        marker = LOGIN_PROMPT if form == "debian" else READY_MARKER.encode()
        what = "login prompt" if form == "debian" else "ready"
        for _ in range(runs):
            for name, cmd in peers:
                r = run_guest(cmd, dd=False, timeout=timeout, marker=marker)
                rows.append((form, name, r))
                print(f"{form:8} {name:11} {what} {r.get('ready_s', NAN):6.2f} s "
                      f"(CPU {r.get('ready_cpu', NAN):5.2f} s)", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def kernel_form(form: str, kernel: str, initrd: str, qemu: str | None, runs: int, dd: bool,
                timeout: float) -> list[tuple[str, str, dict]]:
    """The Debian kernel and initramfs loaded directly (no firmware boot)."""
    rows = []
    ours = [sys.executable, "-m", "vmm.run", "--kernel", kernel, "--initrd", initrd,
            "--append", CMDLINE, "--memory", str(MEMORY_MB)]
    peers = [(OURS, ours)]
    if qemu:
        peers.append((PEER, [qemu, "-accel", "tcg", "-m", str(MEMORY_MB), "-nographic", "-no-reboot",
                             "-kernel", kernel, "-initrd", initrd, "-append", CMDLINE]))
    # the peers take turns, so both see the same load over the run
    for _ in range(runs):
        for name, cmd in peers:
            r = run_guest(cmd, dd=dd, timeout=timeout)
            rows.append((form, name, r))
            extra = max(0, r.get("rss_kb", 0) - MEMORY_MB * 1024) // 1024
            dd_txt = f"{r['dd_mbs']:.0f} MB/s" if "dd_mbs" in r else "-"
            loop = f"{r['loop_s']:.2f} s" if "loop_s" in r else "-"
            print(f"{form:8} {name:11} ready {r.get('ready_s', NAN):6.2f} s (CPU "
                  f"{r.get('ready_cpu', NAN):5.2f} s)"
                  f"   dd {dd_txt:>10} (CPU {r.get('dd_cpu', NAN):5.2f} s)   ash loop {loop:>8} "
                  f"(CPU {r.get('loop_cpu', NAN):5.2f} s)   peak RSS beyond guest RAM {extra:4d} MiB "
                  f"(RSS {r.get('rss_kb', 0) // 1024} MiB)", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--skip-qemu", action="store_true")
    ap.add_argument("--skip-dd", action="store_true", help="skip the dd and ash loop timings")
    ap.add_argument("--forms", default="bzImage,vmlinux,bios",
                    help="comma list of bzImage, vmlinux, bios, disk, iso, debian (debian: builds the full "
                         "Debian disk the first time, minutes)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the marker")
    args = ap.parse_args()
    forms = args.forms.split(",")
    unknown = [f for f in forms if f not in ("bzImage", "vmlinux", "bios", *BIOS_FORMS)]
    if unknown:
        ap.error(f"unknown form(s): {', '.join(unknown)}")
    qemu = None if args.skip_qemu else ensure_qemu()
    bios_forms = {f for f in forms if f in BIOS_FORMS}
    if bios_forms:
        ensure_media(bios_forms)
    files = None
    rows = []
    for form in forms:
        if form == "bios":
            rows += bios_form(qemu, args.runs, args.timeout)
        elif form in BIOS_FORMS:
            rows += media_form(form, qemu, args.runs, args.timeout)
        else:
            if files is None:
                files = guest_files() if guest_files().exist() else build(log=lambda *_: None)
            kernel = files.vmlinuz if form == "bzImage" else files.vmlinux
            rows += kernel_form(form, str(kernel), str(files.initrd), qemu, args.runs, not args.skip_dd,
                                args.timeout)
    print_ratios(rows)
    return 0


def _best(rows, form, name, key):
    """Best of the runs (least time, most speed): on a loaded machine, the least disturbed run."""
    vals = [r[key] for f, n, r in rows if f == form and n == name and key in r and r[key] == r[key]]
    if not vals:
        return None
    return max(vals) if key == "dd_mbs" else min(vals)


def print_ratios(rows) -> None:
    for form in dict.fromkeys(f for f, _, _ in rows):
        parts = []
        for key, label in (("ready_s", "boot time"), ("ready_cpu", "boot CPU"), ("dd_mbs", "dd speed"),
                           ("dd_cpu", "dd CPU"), ("loop_s", "ash loop time"), ("loop_cpu", "ash loop CPU")):
            ours, peer = _best(rows, form, OURS, key), _best(rows, form, PEER, key)
            if ours and peer:
                parts.append(f"{label} {ours / peer:.2f}")
        if parts:
            print(f"{form:8} REM/QEMU (best runs): " + ", ".join(parts))


if __name__ == "__main__":
    sys.exit(main())
