"""REM: a kick during `rep insb` from a port with side effects loses no byte (the run does not stop
inside an INS, where unicorn would read the port again when the instruction restarts)."""

import threading

from vmm.boot import cpu_setup
from vmm.bus import Bus
from vmm.engine import HaltExit, InterruptedExit
from vmm.memory import GuestMemory
from vmm.rem.engine import RemVm

CODE = 0x100000
COUNT = 20000


class Counter:
    """Each read returns the next byte of a sequence: a FIFO such as fw_cfg's data port or ATA PIO."""

    def __init__(self):
        self.n = 0

    def read(self, offset, size):
        self.n += 1
        return self.n & 0xFF

    def write(self, offset, size, value):
        pass


def test_kicks_during_rep_insb_lose_no_byte():
    # mov edi, 0x200000; mov ecx, COUNT; mov dx, 0x511; rep insb; hlt   (32-bit flat)
    code = (b"\xbf\x00\x00\x20\x00" + b"\xb9" + COUNT.to_bytes(4, "little") + b"\x66\xba\x11\x05"
            + b"\xf3\x6c" + b"\xf4")
    mem = GuestMemory(16 << 20)
    mem.write(CODE, code)
    io = Bus("io")
    dev = Counter()
    io.register(0x511, 1, dev)
    vcpu = RemVm(mem, io, Bus("mmio")).create_vcpu(0)
    vcpu.set_state(cpu_setup.protected_mode_32(mem, CODE))
    stop = threading.Event()

    def kicker():
        while not stop.is_set():
            vcpu.kick()
    t = threading.Thread(target=kicker, daemon=True)
    t.start()
    try:
        for _ in range(100000):
            ex = vcpu.run()
            if isinstance(ex, HaltExit):
                break
            assert isinstance(ex, InterruptedExit)
    finally:
        stop.set()
        t.join()
    assert dev.n == COUNT
    assert mem.read(0x200000, COUNT) == bytes((i + 1) & 0xFF for i in range(COUNT))
