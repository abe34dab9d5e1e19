"""Boot benchmark: our REM vs QEMU TCG on the same Debian kernel and initramfs, in one run.

    python tests/performance/bench_boot.py [--runs N] [--skip-qemu] [--skip-dd] [--forms bzImage,vmlinux,bios,disk,iso,debian]

The `bios` form boots through SeaBIOS (the same bios.bin for both, QEMU with `-M pc`) from a SATA
disk whose boot sector prints a marker on COM1: seconds from process start to the marker,
and for vboxpy also the firmware's own share (its first debug-port line to the marker).

Reports, for the bzImage and the vmlinux (PVH) forms: seconds from process start to the
guest's ready marker; for the guest builder's BIOS media (disk: the MBR/SYSLINUX disk image,
iso: the ISOLINUX CD, debian: the full Debian 12 disk, to its serial login prompt): seconds
from process start through SeaBIOS and the boot loader to the marker or prompt; the in-guest `time dd if=/dev/zero of=/dev/null bs=1M count=2000` speed (guest clock);
and the VM process's resident memory beyond guest RAM.  Installs qemu-system-x86 with
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
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from vmm.guest.builder import build, guest_files  # noqa: E402
from vmm.guest.init_script import READY_MARKER  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_media import DEBIAN_MEMORY_MB, LOGIN_PROMPT, ensure_media, qemu_command  # noqa: E402

from vmm.guest.builder import cache_dir  # noqa: E402
from vmm.guest.debian_disk import debian_files  # noqa: E402
from vmm.guest.media import media_files  # noqa: E402

MEMORY_MB = 256
CMDLINE = "console=ttyS0 quiet"
DD_MB = 2000
DD = f"time dd if=/dev/zero of=/dev/null bs=1M count={DD_MB}"
BIOS_FORMS = ("disk", "iso", "debian")


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


def run_guest(cmd: list[str], dd: bool, timeout: float = 300.0, marker: bytes = READY_MARKER.encode()) -> dict:
    """Start the VM, time the marker, optionally run dd, then power off via the shell (a login
    prompt as the marker: no shell, the VM is killed after the timing)."""
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
            if marker == LOGIN_PROMPT:
                return res
            wait_for(rb"# ", 30)
            if dd:
                time.sleep(0.5)
                p.stdin.write(DD.encode() + b"\n")
                p.stdin.flush()
                m = wait_for(rb"real\s+(\d+)m\s*([\d.]+)s", timeout)
                if m:
                    secs = int(m.group(1)) * 60 + float(m.group(2))
                    res["dd"] = f"{DD_MB * 1.048576 / secs:.0f} MB/s" if secs > 0 else "-"
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


BIOS_MARKER = "VBOXPY-MBR-BOOTED"


def bios_form(qemu: str | None, runs: int, timeout: float) -> None:
    import tempfile

    from tests.integration.vm.test_bios_boot import boot_sector
    from vmm import firmware
    bios = firmware.find()
    with tempfile.TemporaryDirectory() as tmp:
        disk = os.path.join(tmp, "mbr.img")
        with open(disk, "wb") as f:
            f.write(boot_sector(BIOS_MARKER).ljust(4 << 20, b"\0"))
        ours = [sys.executable, "-m", "vmm.run", "--memory", "64", "--disk", f"ahci:{disk}", "--verbose"]
        peers = [("vboxpy REM", ours)]
        if qemu:
            peers.append(("QEMU TCG", [qemu, "-accel", "tcg", "-M", "pc", "-m", "64", "-bios", str(bios),
                                       "-display", "none", "-serial", "stdio", "-monitor", "none",
                                       "-drive", f"file={disk},format=raw,if=none,id=d0", "-device", "ahci,id=sata",
                                       "-device", "ide-hd,drive=d0,bus=sata.0"]))
        for name, cmd in peers:
            for _ in range(runs):
                t0 = time.monotonic()
                p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                out, err, ready = b"", b"", None
                end = t0 + timeout
                while time.monotonic() < end and ready is None:
                    r, _, _ = select.select([p.stdout, p.stderr], [], [], 0.2)
                    for fd in r:
                        chunk = os.read(fd.fileno(), 65536)
                        if fd is p.stdout:
                            out += chunk
                        else:
                            err += chunk
                    if BIOS_MARKER.encode() in out:
                        ready = time.monotonic() - t0
                p.kill()
                p.wait()
                # vboxpy's --verbose log stamps ms since the process started: first BIOS line -> now
                share = ""
                m = re.search(rb"^\s*(\d+) vboxpy\.vm: BIOS: ", err, re.M)
                if m and ready is not None:
                    share = f"   firmware from its first debug line {ready - int(m.group(1)) / 1000:5.2f} s"
                print(f"bios     {name:11} marker {ready if ready is not None else float('nan'):6.2f} s{share}",
                      flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--skip-qemu", action="store_true")
    ap.add_argument("--skip-dd", action="store_true")
    ap.add_argument("--forms", default="bzImage,vmlinux,bios",
                    help="comma list of bzImage, vmlinux, bios, disk, iso, debian (debian: builds the full "
                         "Debian disk the first time, minutes)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the marker")
    args = ap.parse_args()
    files = guest_files() if guest_files().exist() else build(log=lambda *_: None)
    qemu = None if args.skip_qemu else ensure_qemu()
    rows = []
    forms = {"bzImage": files.vmlinuz, "vmlinux": files.vmlinux}
    bios_forms = {f for f in args.forms.split(",") if f in BIOS_FORMS}
    if bios_forms:
        ensure_media(bios_forms)
    for form in args.forms.split(","):
        if form == "bios":
            bios_form(qemu, args.runs, args.timeout)
            continue
        if form in BIOS_FORMS:
            scratch = tempfile.mkdtemp(prefix="vboxpy-bench-")
            ours = ours_bios(form, scratch)
            peers = [("vboxpy REM", ours)] if ours else []
            if qemu:
                peers.append(("QEMU TCG", qemu_command(form, qemu, bus="ahci")))
            marker = LOGIN_PROMPT if form == "debian" else READY_MARKER.encode()
            for name, cmd in peers:
                for _ in range(args.runs):
                    r = run_guest(cmd, dd=False, timeout=args.timeout, marker=marker)
                    rows.append((form, name, r))
                    what = "login prompt" if form == "debian" else "ready"
                    print(f"{form:8} {name:11} {what} {r.get('ready_s', float('nan')):6.2f} s", flush=True)
            shutil.rmtree(scratch, ignore_errors=True)
            continue
        kernel = forms[form]
        ours = [sys.executable, "-m", "vmm.run", "--kernel", str(kernel), "--initrd", str(files.initrd),
                "--append", CMDLINE, "--memory", str(MEMORY_MB)]
        peers = [("vboxpy REM", ours)]
        if qemu:
            peers.append(("QEMU TCG", [qemu, "-accel", "tcg", "-m", str(MEMORY_MB), "-nographic", "-no-reboot",
                                       "-kernel", str(kernel), "-initrd", str(files.initrd), "-append", CMDLINE]))
        for name, cmd in peers:
            for i in range(args.runs):
                r = run_guest(cmd, dd=not args.skip_dd and i == 0, timeout=args.timeout)
                rows.append((form, name, r))
                extra = max(0, r.get("rss_kb", 0) - MEMORY_MB * 1024) // 1024
                print(f"{form:8} {name:11} ready {r.get('ready_s', float('nan')):6.2f} s   "
                      f"dd {r.get('dd', '-'):>12}   peak RSS beyond guest RAM {extra:4d} MiB "
                      f"(RSS {r.get('rss_kb', 0) // 1024} MiB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
