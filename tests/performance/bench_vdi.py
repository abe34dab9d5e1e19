"""Benchmark: our VDI layer against `qemu-img bench` on the same machine, in one run.

Workloads (all through the page cache, as qemu-img bench's default writeback cache does):
  - 64 KiB sequential reads of a fully allocated VDI
  - 64 KiB sequential writes into a fresh dynamic VDI (block allocation included)
  - 64 KiB sequential overwrites of allocated blocks
  - 4 KiB "random" reads: qemu-img bench has no random mode, so both sides use the same large
    prime stride (offset = (offset + step) % (size - 4096)), which hops between blocks
qemu-img runs with its defaults (64 requests in flight); ours is one synchronous caller, the way
the vCPU thread uses it.
Usage: python tests/performance/bench_vdi.py [--size-mb 256] [--passes 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from vmm.storage import create_vdi, open_image  # noqa: E402

RANDOM_STEP = 4096 * 7919 * 13


def qemu_bench(path: str, count: int, bufsize: int, step: int, write: bool) -> float:
    cmd = ["qemu-img", "bench", "-f", "vdi", "-c", str(count), "-s", str(bufsize), "-S", str(step)]
    if write:
        cmd.append("-w")
    out = subprocess.run(cmd + [path], check=True, capture_output=True, text=True).stdout
    m = re.search(r"Run completed in ([0-9.]+) seconds", out)
    if not m:
        raise RuntimeError(f"unexpected qemu-img bench output: {out!r}")
    return float(m.group(1))


def ours_bench(path: str, count: int, bufsize: int, step: int, write: bool) -> float:
    img = open_image(path, read_only=not write)
    buf = bytearray(os.urandom(bufsize)) if write else bytearray(bufsize)
    view = memoryview(buf)
    span = img.size - bufsize
    op = img.write_at if write else img.readinto_at
    off = 0
    t0 = time.perf_counter()
    for _ in range(count):
        op(off, view)
        off = (off + step) % span if span > 0 else 0
    elapsed = time.perf_counter() - t0      # like qemu-img's "Run completed": the final flush and
    img.close()                             # close are outside the timed run on both sides
    return elapsed


def make_full_image(path: str, size: int) -> None:
    img = create_vdi(path, size)
    chunk = os.urandom(1 << 20)
    for off in range(0, size, 1 << 20):
        img.write_at(off, chunk[: min(1 << 20, size - off)])
    img.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3, help="runs per side; the best one counts")
    args = ap.parse_args()
    if not shutil.which("qemu-img"):
        print("qemu-img not found (install qemu-utils); nothing to compare with", file=sys.stderr)
        return 2
    size = args.size_mb << 20
    tmp = tempfile.mkdtemp(prefix="bench_vdi_")
    try:
        full = os.path.join(tmp, "full.vdi")
        make_full_image(full, size)
        seq_count = size // 65536 * args.passes
        rnd_count = 50000
        rows = []

        def run(name, bufsize, count, step, write, fresh):
            results = {"qemu-img": [], "vboxpy": []}
            for _ in range(args.repeat):        # interleaved runs, best of each: less noise
                for who, fn in (("qemu-img", qemu_bench), ("vboxpy", ours_bench)):
                    target = os.path.join(tmp, f"{who}.vdi")
                    if fresh:
                        create_vdi(target, size).close()
                    else:
                        shutil.copyfile(full, target)
                    fn(target, min(count, 256), bufsize, step, write)   # warm-up (page cache, code)
                    if fresh:
                        os.unlink(target)
                        create_vdi(target, size).close()
                    results[who].append(fn(target, count, bufsize, step, write))
                    os.unlink(target)
            results = {who: min(times) for who, times in results.items()}
            mib = count * bufsize / (1 << 20)
            rows.append((name, count, mib / results["qemu-img"], mib / results["vboxpy"],
                         results["qemu-img"] / results["vboxpy"]))

        run("64K seq read", 65536, seq_count, 65536, False, False)
        run("64K seq write (fresh)", 65536, size // 65536, 65536, True, True)
        run("64K seq overwrite", 65536, seq_count, 65536, True, False)
        run("4K stride read", 4096, rnd_count, RANDOM_STEP, False, False)
        print(f"image {args.size_mb} MiB, qemu-img depth 64 (default), vboxpy synchronous, "
              f"best of {args.repeat}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        print(f"{'workload':<24}{'ops':>8}{'qemu MiB/s':>12}{'ours MiB/s':>12}{'ours/qemu':>11}")
        for name, count, q, o, ratio in rows:
            print(f"{name:<24}{count:>8}{q:>12.0f}{o:>12.0f}{ratio:>10.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
