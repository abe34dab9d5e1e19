"""Guest-instruction rates of the unicorn library REM runs, on bare loops (no VMM, no devices).

    python tests/performance/bench_unicorn.py
    LIBUNICORN_PATH=/path/to/stock/lib python tests/performance/bench_unicorn.py   (compare)

Each loop runs in 64-bit mode over 16 MiB of RAM mapped as REM maps it (mem_map_ptr):
- stores: a loop of register stores into a data page (the notdirty slow path in stock 2.1.4);
- rmw: `incq (m)` and `lock xadd` (a load and a store each);
- alu: register arithmetic only (the translated-code baseline);
- call/ret: an indirect branch per iteration (the TB lookup an interpreter's dispatch pays);
- rep stos: `rep stosq` over 1 MiB (what Linux's clear_user does with REP_GOOD).
With the project's build the loops run twice: with stops at block boundaries (as REM sets
them) and without.  Prints millions of guest instructions per second (loop instructions
counted statically).
"""

from __future__ import annotations

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from unicorn import UC_ARCH_X86, UC_MODE_64, UC_PROT_ALL, Uc  # noqa: E402

from tests.unit.vmm.rem.asm import assemble  # noqa: E402
from vmm.boot import cpu_setup  # noqa: E402
from vmm.memory import GuestMemory  # noqa: E402
from vmm.rem import qemu_cpu, regs  # noqa: E402

CODE = 0x100000
N = 20_000_000
LOOPS = {
    # name: (body, instructions per iteration incl. the loop's dec/jnz)
    "stores": ("mov %rax, 0x300000\n mov %rbx, 0x300008\n mov %rcx, 0x300010\n mov %rdx, 0x300018\n", 6),
    "rmw": ("incq 0x300000\n lock xadd %rbx, 0x300008\n", 4),
    "alu": ("add %rbx, %rax\n xor %rax, %rcx\n imul %rcx, %rdx\n sub %rdx, %rbx\n", 6),
    "call/ret": ("call 2f\n jmp 3f\n2: ret\n3:\n", 5),
    "rep stos": ("mov $0x400000, %rdi\n mov $131072, %rcx\n rep stosq\n", 131075),
}
ITERS = {"rep stos": 100}


def run(body: str, iters: int, block_stops: bool) -> float:
    src = f".code64\n mov $0x200000, %rsp\n mov ${iters}, %r15\n1:\n{body} dec %r15\n jnz 1b\n hlt\n"
    mem = GuestMemory(16 << 20)
    mem.write(CODE, assemble(src, CODE))
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.ctl_exits_enabled(True)
    uc.ctl_set_exits([])
    cpu = qemu_cpu.QemuCpu(uc)
    if block_stops:
        cpu.set_block_stops()
    uc.mem_map_ptr(0, mem.size, UC_PROT_ALL, mem.address)
    regs.write_state(uc, cpu, cpu_setup.long_mode_64(mem, CODE))
    t0 = time.perf_counter()
    uc.emu_start(CODE, 0)
    took = time.perf_counter() - t0
    mem.close()
    return took


def main() -> int:
    print(qemu_cpu.library_description())
    modes = [True, False] if qemu_cpu.PATCHED else [False]
    for name, (body, per_iter) in LOOPS.items():
        iters = ITERS.get(name, N // per_iter)
        line = f"{name:9}"
        for bs in modes:
            took = run(body, iters, bs)
            rate = iters * per_iter / took / 1e6
            line += f"  {'block stops' if bs else 'stock stops'}: {rate:8.1f} M instr/s"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
