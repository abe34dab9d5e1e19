"""Disk throughput inside the guest: our VMM (REM) vs QEMU TCG, same controller, same VDI.

For each controller (ahci = IntelAhci vs QEMU `-device ahci` + `ide-hd`; virtio = VirtioSCSI vs
QEMU `-device virtio-scsi-pci` + `scsi-hd`) both VMs boot the project's Debian guest with a
copy of the same pre-filled VDI and run busybox `dd` with O_DIRECT: a sequential read of the
disk, then a sequential write (with fsync).  QEMU uses cache=none; ours runs twice, with
VirtualBox's default --hostiocache off (write-through) and with --hostiocache on.  Times are taken on the host
around each command (marker to marker on the serial console), so both sides are measured alike.

    python tests/performance/bench_disk.py [--mb 200] [--controllers ahci,virtio] [--only qemu|ours]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.integration.vm.guest_console import READY_MARKER, GuestConsole  # noqa: E402

GUEST = ROOT / ".cache" / "guest"
APPEND = "console=ttyS0 quiet"

QEMU_CONTROLLER = {
    "ahci": ["-device", "ahci,id=ahci", "-device", "ide-hd,drive=d0,bus=ahci.0"],
    "virtio": ["-device", "virtio-scsi-pci,id=vs", "-device", "scsi-hd,drive=d0,bus=vs.0"],
}


def qemu_argv(ctl: str, vdi: str, memory: int) -> list[str]:
    return ["qemu-system-x86_64", "-accel", "tcg", "-m", str(memory), "-nographic", "-no-reboot",
            "-kernel", str(GUEST / "vmlinux"), "-initrd", str(GUEST / "initrd.img"), "-append", APPEND,
            "-drive", f"if=none,id=d0,file={vdi},format=vdi,cache=none"] + QEMU_CONTROLLER[ctl]


# vmm.run has no --hostiocache; this runs it with the controllers' UseHostIOCache switched on.
_HOSTIOCACHE_ON = (
    "import sys, vmm.run as r\n"
    "orig = r.build_config\n"
    "def build(args):\n"
    "    cfg = orig(args)\n"
    "    for ctl in cfg.child('Devices/storage') or []:\n"
    "        ctl.set('UseHostIOCache', True)\n"
    "    return cfg\n"
    "r.build_config = build\n"
    "sys.exit(r.main(sys.argv[1:]))\n")


def ours_argv(ctl: str, vdi: str, memory: int, host_cache: bool = False) -> list[str]:
    runner = ["-c", _HOSTIOCACHE_ON] if host_cache else ["-m", "vmm.run"]
    return [sys.executable, *runner, "--kernel", str(GUEST / "vmlinux"), "--initrd",
            str(GUEST / "initrd.img"), "--append", APPEND, "--memory", str(memory), "--engine", "rem",
            "--disk", f"{ctl}:{vdi}"]


def ours_cached_argv(ctl: str, vdi: str, memory: int) -> list[str]:
    return ours_argv(ctl, vdi, memory, host_cache=True)


def make_vdi(path: str, size_mb: int) -> None:
    """A VDI whose every block is allocated and holds a non-zero pattern."""
    raw = path + ".raw"
    with open(raw, "wb") as f:
        pattern = bytes(range(256)) * 4096
        for i in range(size_mb):
            f.write(pattern[i % 256:] + pattern[:i % 256])
    subprocess.run(["qemu-img", "convert", "-O", "vdi", raw, path], check=True)
    os.unlink(raw)


def timed(console: GuestConsole, command: str, timeout: float) -> float:
    t0 = time.monotonic()
    status, out = console.run(command, timeout)
    elapsed = time.monotonic() - t0
    if status != 0:
        raise RuntimeError(f"guest command failed ({status}): {command}\n{out}")
    return elapsed


def measure(argv: list[str], mb: int, log: str) -> dict[str, float]:
    console = GuestConsole(argv, log_path=log)
    try:
        t0 = time.monotonic()
        console.wait_for(READY_MARKER, 900)
        boot = time.monotonic() - t0
        console.run("true", 60)                      # the shell is up
        status, out = console.run("ls /sys/block", 60)
        if "sda" not in out:
            raise RuntimeError(f"guest sees no disk: {out!r}")
        base = timed(console, "true", 60)            # console round trip, subtracted below
        rd = timed(console, f"dd if=/dev/sda of=/dev/null bs=1M count={mb} iflag=direct", 1800)
        wr = timed(console, f"dd if=/dev/zero of=/dev/sda bs=1M count={mb} oflag=direct conv=fsync", 1800)
        # The write's guest-CPU share: producing the zeros alone, no disk.
        zero = timed(console, f"dd if=/dev/zero of=/dev/null bs=1M count={mb}", 1800)
        console.proc.stdin.write(b"poweroff -f\n")
        console.proc.stdin.flush()
        return {"boot_s": boot, "read_MBps": mb / max(rd - base, 1e-6),
                "write_MBps": mb / max(wr - base, 1e-6), "zero_MBps": mb / max(zero - base, 1e-6)}
    finally:
        console.close(60)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200, help="MiB to read and to write")
    ap.add_argument("--memory", type=int, default=256)
    ap.add_argument("--controllers", default="ahci,virtio")
    ap.add_argument("--only", choices=("qemu", "ours", "ours+cache"))
    args = ap.parse_args()
    if not (GUEST / "vmlinux").exists():
        print("no guest: run `python -m vmm.guest.builder` first", file=sys.stderr)
        return 2
    have_qemu = shutil.which("qemu-system-x86_64") and shutil.which("qemu-img")
    if not have_qemu:
        print("qemu-system-x86_64/qemu-img not installed: QEMU peer and VDI preparation need them",
              file=sys.stderr)
        return 2
    # "ours" = VirtualBox's default --hostiocache off (every write flushed to the image before it
    # completes, write cache reported off); "ours+cache" = --hostiocache on (guest flushes only).
    runners = {"qemu": qemu_argv, "ours": ours_argv, "ours+cache": ours_cached_argv}
    if args.only:
        runners = {args.only: runners[args.only]}
    with tempfile.TemporaryDirectory(prefix="bench-disk-") as tmp:
        master = os.path.join(tmp, "master.vdi")
        make_vdi(master, args.mb + 16)
        results = {}
        for ctl in args.controllers.split(","):
            for name, argv_of in runners.items():
                vdi = os.path.join(tmp, f"{name}-{ctl}.vdi")
                shutil.copyfile(master, vdi)
                log = os.path.join(tmp, f"{name}-{ctl}.log")
                try:
                    results[(ctl, name)] = measure(argv_of(ctl, vdi, args.memory), args.mb, log)
                except (RuntimeError, TimeoutError) as e:
                    print(f"{name}/{ctl}: failed: {e}", file=sys.stderr)
                    continue
                check = subprocess.run(["qemu-img", "check", vdi], capture_output=True, text=True)
                results[(ctl, name)]["qemu_img_check"] = check.returncode == 0
                os.unlink(vdi)
        print(f"\nin-guest dd, {args.mb} MiB, bs=1M, O_DIRECT (host-timed)")
        print(f"{'controller':<10} {'runner':<10} {'boot s':>7} {'read MB/s':>10} {'write MB/s':>11} "
              f"{'zero->null':>11} {'check':>6}")
        for (ctl, name), r in results.items():
            print(f"{ctl:<10} {name:<10} {r['boot_s']:7.2f} {r['read_MBps']:10.1f} {r['write_MBps']:11.1f} "
                  f"{r['zero_MBps']:11.1f} "
                  f"{'ok' if r['qemu_img_check'] else 'FAIL':>6}")
        for ctl in args.controllers.split(","):
            for name in ("ours", "ours+cache"):
                if (ctl, "qemu") in results and (ctl, name) in results:
                    q, o = results[(ctl, "qemu")], results[(ctl, name)]
                    print(f"{ctl}: {name}/qemu read {o['read_MBps'] / q['read_MBps']:.2f}x, "
                          f"write {o['write_MBps'] / q['write_MBps']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
