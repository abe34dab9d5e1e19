"""Cost of one port-I/O exit through HM, against a bare KVM_RUN ioctl loop in the same run.

    python tests/performance/bench_kvm_exit.py [--exits N] [--rounds R]

The guest is a real-mode loop of N `out %al, $0x80`.  Measured per exit:
- bare:   ctypes ioctl(KVM_RUN) + read kvm_run.exit_reason (the floor for Python),
- engine: HmVcpu.run() returning an IoExit,
- engine+bus: the same plus dispatch on the port Bus to a device (what EM does per exit),
- EM:     the whole vCPU loop of vmm/em.py (timers, PIC checks, dispatch), against bare chunks.
Aim: engine+bus <= 1.5x bare.
"""

from __future__ import annotations

import argparse
import mmap
import pathlib
import statistics
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.unit.vmm.hm.guests import LOAD, assemble  # noqa: E402
from tests.unit.vmm.hm.harness import real_mode  # noqa: E402
from vmm.bus import Bus  # noqa: E402
from vmm.engine import IoExit  # noqa: E402
from vmm.hm import abi  # noqa: E402
from vmm.hm.kvm import raw_ioctl  # noqa: E402
from vmm.hm.vm import HmVm  # noqa: E402
from vmm.memory import GuestMemory  # noqa: E402

GUEST = """
.code16
    mov $0x{n:x}, %ecx
1:  out %al, $0x80
    dec %ecx
    jnz 1b
    out %al, $0x81
    hlt
"""


class Sink:
    def __init__(self):
        self.count = 0

    def read(self, offset, size):
        return 0

    def write(self, offset, size, value):
        self.count += 1


def _fresh(n: int):
    memory = GuestMemory(1 << 20)
    memory.write(LOAD, assemble(GUEST.format(n=n)))
    vm = HmVm(memory)
    vcpu = vm.create_vcpu(0)
    vcpu.set_state(real_mode(0, LOAD, 0x7000))
    return memory, vm, vcpu


class Interleaved:
    """One guest looping forever; chunks of exits timed alternately with each method (cancels load drift)."""

    def __init__(self):
        self.memory, self.vm, self.vcpu = _fresh(0x7FFF_FFFF)
        self.run_map = mmap.mmap(self.vcpu.fd, self.vm.kvm.vcpu_mmap_size, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        self.hdr = abi.KvmRunHeader.from_buffer(self.run_map)
        self.bus = Bus("io")
        self.sink = Sink()
        self.bus.register(0x80, 1, self.sink)

    def bare(self, n: int) -> float:
        call, fd, req, hdr = raw_ioctl(), self.vcpu.fd, abi.KVM_RUN, self.hdr
        t0 = time.perf_counter()
        for _ in range(n):
            call(fd, req, None)
            if hdr.exit_reason != abi.EXIT_IO:
                raise RuntimeError(f"unexpected exit {hdr.exit_reason}")
        return (time.perf_counter() - t0) / n

    def engine(self, n: int) -> float:
        run = self.vcpu.run
        t0 = time.perf_counter()
        for _ in range(n):
            run()
        return (time.perf_counter() - t0) / n

    def engine_bus(self, n: int) -> float:
        run, write = self.vcpu.run, self.bus.write
        before = self.sink.count
        t0 = time.perf_counter()
        for _ in range(n):
            ex = run()
            if ex.__class__ is IoExit and ex.is_write:
                write(ex.port, ex.size, ex.value)
        dt = (time.perf_counter() - t0) / n
        if self.sink.count - before != n:
            raise RuntimeError("the bus missed exits")
        return dt

    def close(self) -> None:
        del self.hdr
        self.run_map.close()
        self.vm.close()
        self.memory.close()


def bench_em(n: int) -> float:
    from vmm.devices.pic import PicPair
    from vmm.em import Em, StopReason
    from vmm.tm import VirtualClock
    memory, vm, vcpu = _fresh(n)
    io, mmio = Bus("io"), Bus("mmio")
    sink = Sink()
    io.register(0x80, 1, sink)
    done = threading.Event()
    box = []

    class Done:
        def read(self, offset, size):
            return 0

        def write(self, offset, size, value):
            box[0].request_stop(StopReason.POWER_OFF, "done")
    io.register(0x81, 1, Done())
    pic = PicPair()
    em = Em(vcpu, pic, VirtualClock(), io, mmio, on_reset=lambda: None, on_stop=lambda r, d: done.set())
    box.append(em)
    t0 = time.perf_counter()
    em.start()
    done.wait(300)
    dt = time.perf_counter() - t0
    em.join(10)
    vm.close()
    memory.close()
    if sink.count != n:
        raise RuntimeError(f"EM saw {sink.count} of {n} exits")
    return dt / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exits", type=int, default=1000, help="exits per timed chunk")
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    print(f"HM port-I/O exit cost: {args.rounds} rounds x {args.exits}-exit chunks per method, interleaved; "
          f"PVM host: {pathlib.Path('/sys/module/kvm_pvm').is_dir()}")
    bench = Interleaved()
    results: dict[str, list[float]] = {"bare": [], "engine": [], "engine+bus": []}
    try:
        for _ in range(args.rounds):
            results["bare"].append(bench.bare(args.exits))
            results["engine"].append(bench.engine(args.exits))
            results["engine+bus"].append(bench.engine_bus(args.exits))
    finally:
        bench.close()
    em_bare = []
    em = []
    try:
        import vmm.em  # noqa: F401
    except ImportError as exc:
        print(f"  (EM loop not measured: {exc})")
    for _ in range(max(1, args.rounds // 10) if "vmm.em" in sys.modules else 0):
        b = Interleaved()
        try:
            em_bare.append(b.bare(args.exits * 5))
        finally:
            b.close()
        em.append(bench_em(args.exits * 5))
    if em:
        results["EM loop"] = em
    bare_med = statistics.median(results["bare"])
    for name, values in results.items():
        med = statistics.median(values)
        ref = bare_med if name != "EM loop" else statistics.median(em_bare)
        print(f"  {name:<11} median {med * 1e6:7.2f} us/exit  min {min(values) * 1e6:7.2f}  "
              f"{med / ref:5.2f}x bare")
    ratio = statistics.median(results["engine+bus"]) / bare_med
    print(
        f"engine+bus vs bare (medians): {ratio:.2f}x (aim <= 1.5x): {'OK' if ratio <= 1.5 else 'ABOVE AIM'}"
    )


if __name__ == "__main__":
    main()
