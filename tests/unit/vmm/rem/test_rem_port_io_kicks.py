"""REM: kicks from another thread at random instants never disturb port I/O.

A guest writes a data port and a control port with OUT, a block with `rep outsb` and reads a
status port with side effects, while a thread kicks the vCPU at seeded random intervals; the
device must see exactly the accesses the program makes, in order, each on its own port (a stop
landing inside an I/O instruction must neither repeat it nor run it with stale registers)."""

import random
import threading
import time

import pytest

from tests.unit.vmm.rem.asm import assemble, needs_binutils
from vmm.boot import cpu_setup
from vmm.bus import Bus
from vmm.engine import HaltExit, InterruptedExit
from vmm.memory import GuestMemory
from vmm.rem import qemu_cpu
from vmm.rem.engine import RemVm

pytestmark = [needs_binutils, pytest.mark.timeout(300)]
CODE = 0x100000
BASE = 0x3F8
N = 3000
BLOCK = bytes(range(0x40, 0x50))

GUEST = f""".code64
    mov $0x200000, %rsp
    xor %r12, %r12                 # iteration
    xor %r13, %r13                 # sum of status reads
loop:
    mov ${BASE}, %dx               # data register: the iteration's low byte
    mov %r12b, %al
    out %al, %dx
    mov ${BASE + 3}, %dx           # control register: always 0x03
    mov $0x03, %al
    out %al, %dx
    lea block(%rip), %rsi          # a block to the data register
    mov ${len(BLOCK)}, %ecx
    mov ${BASE}, %dx
    rep outsb
    mov ${BASE + 5}, %dx           # status register: every read returns the next number
    in %dx, %al
    movzbl %al, %eax
    add %rax, %r13
    inc %r12
    cmp ${N}, %r12
    jne loop
    hlt
block: .byte {", ".join(str(b) for b in BLOCK)}
"""


class Recorder:
    def __init__(self):
        self.log = []
        self.reads = 0

    def read(self, offset, size):
        self.reads += 1
        self.log.append(("in", offset, self.reads & 0xFF))
        return self.reads & 0xFF

    def write(self, offset, size, value):
        self.log.append(("out", offset, value))


def expected():
    log = []
    for i in range(N):
        log += [("out", 0, i & 0xFF), ("out", 3, 0x03)]
        log += [("out", 0, b) for b in BLOCK]
        log.append(("in", 5, (i + 1) & 0xFF))
    return log


@pytest.mark.parametrize("seed", [1, 2])
def test_port_io_is_exact_under_kicks_at_random_instants(seed):
    assert qemu_cpu.PATCHED, "REM runs a stock unicorn: " + qemu_cpu.library_description()
    mem = GuestMemory(16 << 20)
    mem.write(CODE, assemble(GUEST, CODE))
    io = Bus("io")
    dev = Recorder()
    io.register(BASE, 8, dev)
    vcpu = RemVm(mem, io, Bus("mmio")).create_vcpu(0)
    vcpu.set_state(cpu_setup.long_mode_64(mem, CODE))
    rnd = random.Random(seed)
    delays = [rnd.uniform(0, 0.0003) for _ in range(4096)]
    stop = threading.Event()

    def kicker():
        i = 0
        while not stop.is_set():
            d = delays[i % len(delays)]
            i += 1
            if d > 0.0001:
                time.sleep(d)
            vcpu.kick()
    t = threading.Thread(target=kicker)
    t.start()
    runs, ex = 0, None
    try:
        end = time.monotonic() + 240
        while time.monotonic() < end:
            ex = vcpu.run()
            runs += 1
            if not isinstance(ex, InterruptedExit):
                break
        gpr = vcpu.get_state().gpr
    finally:
        stop.set()
        t.join()
        vcpu.vm.close()
    assert isinstance(ex, HaltExit)
    assert dev.log == expected()
    assert gpr["r12"] == N and gpr["r13"] == sum((i + 1) & 0xFF for i in range(N))
    assert runs > 10                       # the kicks landed inside the loop
