"""Benchmark: our VMDK layer against qemu-img on the same machine, in one run.

Workloads on a monolithicSparse VMDK (all through the page cache, as qemu-img bench's default
writeback cache does):
  - 64 KiB sequential reads of a fully allocated image
  - 64 KiB sequential writes into a fresh image (grain allocation included)
  - 64 KiB sequential overwrites of allocated grains
  - 4 KiB "random" reads with the same large prime stride on both sides (qemu-img bench has no
    random mode)
and the conversions appliances need, against `qemu-img convert`:
  - raw -> streamOptimized (compressing every grain: what export does)
  - streamOptimized -> monolithicSparse (what import does)
qemu-img bench runs with its defaults (64 requests in flight); ours is one synchronous caller, the
way the vCPU thread uses it. Conversions: both sides single-threaded (qemu-img convert -m 1).
Usage: python tests/performance/bench_vmdk.py [--size-mb 256] [--passes 4] [--repeat 3]
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

from vmm.storage import clone_image, create_vmdk, open_image  # noqa: E402

RANDOM_STEP = 4096 * 7919 * 13


def qemu_bench(path: str, count: int, bufsize: int, step: int, write: bool) -> float:
    cmd = ["qemu-img", "bench", "-f", "vmdk", "-c", str(count), "-s", str(bufsize), "-S", str(step)]
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
    elapsed = time.perf_counter() - t0      # the final flush and close are outside the timed run on
    img.close()                             # both sides, like qemu-img's "Run completed"
    return elapsed


def make_full_image(path: str, size: int) -> None:
    img = create_vmdk(path, size)
    chunk = os.urandom(1 << 20)
    for off in range(0, size, 1 << 20):
        img.write_at(off, chunk[: min(1 << 20, size - off)])
    img.close()


def make_raw(path: str, size: int) -> None:
    """Half random (incompressible), a quarter text-like, a quarter zeros: a disk-like mix."""
    with open(path, "wb") as f:
        f.write(os.urandom(size // 2))
        line = b"the quick brown fox jumps over the lazy dog 0123456789\n"
        f.write((line * (size // 4 // len(line) + 1))[: size // 4])
        f.truncate(size)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


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
    tmp = tempfile.mkdtemp(prefix="bench_vmdk_")
    try:
        full = os.path.join(tmp, "full.vmdk")
        make_full_image(full, size)
        seq_count = size // 65536 * args.passes
        rnd_count = 50000
        rows = []

        def run(name, bufsize, count, step, write, fresh):
            results = {"qemu-img": [], "vboxpy": []}
            for _ in range(args.repeat):        # interleaved runs, best of each: less noise
                for who, fn in (("qemu-img", qemu_bench), ("vboxpy", ours_bench)):
                    target = os.path.join(tmp, f"{who}.vmdk")
                    if fresh:
                        create_vmdk(target, size).close()
                    else:
                        shutil.copyfile(full, target)
                    fn(target, min(count, 256), bufsize, step, write)   # warm-up (page cache, code)
                    if fresh:
                        os.unlink(target)
                        create_vmdk(target, size).close()
                    results[who].append(fn(target, count, bufsize, step, write))
                    os.unlink(target)
            best = {who: min(times) for who, times in results.items()}
            mib = count * bufsize / (1 << 20)
            rows.append((name, count, mib / best["qemu-img"], mib / best["vboxpy"],
                         best["qemu-img"] / best["vboxpy"]))

        def convert(name, src, ours, qemu):
            results = {"qemu-img": [], "vboxpy": []}
            for _ in range(args.repeat):
                for who, fn in (("qemu-img", qemu), ("vboxpy", ours)):
                    out = os.path.join(tmp, f"conv-{who}.vmdk")
                    results[who].append(timed(lambda fn=fn, out=out: fn(src, out)))
                    os.unlink(out)
            best = {who: min(times) for who, times in results.items()}
            mib = size / (1 << 20)
            rows.append((name, 1, mib / best["qemu-img"], mib / best["vboxpy"],
                         best["qemu-img"] / best["vboxpy"]))

        run("64K seq read", 65536, seq_count, 65536, False, False)
        run("64K seq write (fresh)", 65536, size // 65536, 65536, True, True)
        run("64K seq overwrite", 65536, seq_count, 65536, True, False)
        run("4K stride read", 4096, rnd_count, RANDOM_STEP, False, False)

        raw = os.path.join(tmp, "mix.raw")
        make_raw(raw, size)
        stream = os.path.join(tmp, "mix-stream.vmdk")
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o",
                        "subformat=streamOptimized", raw,
                        stream], check=True)

        def q_conv(subformat):
            def fn(src, out):
                subprocess.run(["qemu-img", "convert", "-m", "1", "-O", "vmdk", "-o",
                                f"subformat={subformat}",
                                src, out], check=True)
            return fn

        convert("raw -> stream", raw, lambda s, o: clone_image(s, o, fmt="VMDK", variant="stream"),
                q_conv("streamOptimized"))
        convert("stream -> sparse", stream, lambda s, o: clone_image(s, o, fmt="VMDK", variant="standard"),
                q_conv("monolithicSparse"))
        print(f"image {args.size_mb} MiB, qemu-img bench depth 64 (default), vboxpy synchronous, "
              f"best of {args.repeat}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        print(f"{'workload':<24}{'ops':>8}{'qemu MiB/s':>12}{'ours MiB/s':>12}{'ours/qemu':>11}")
        for name, count, q, o, ratio in rows:
            print(f"{name:<24}{count:>8}{q:>12.0f}{o:>12.0f}{ratio:>10.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
