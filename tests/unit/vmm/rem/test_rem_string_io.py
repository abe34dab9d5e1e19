"""REM string input: a kick during `rep insb` from a port with side effects loses no byte (the run does
not stop inside an INS, where unicorn would read the port again when the instruction restarts), and a
REP INS from a device's PIO block moves the block in bulk with the result of the unit-by-unit loop."""

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


def _run_to_halt(vcpu, kicks: bool = False):
    stop = threading.Event()
    t = None
    if kicks:
        def kicker():
            while not stop.is_set():
                vcpu.kick()
        t = threading.Thread(target=kicker, daemon=True)
        t.start()
    try:
        for _ in range(1_000_000):
            ex = vcpu.run()
            if isinstance(ex, HaltExit):
                return vcpu.get_state()
            assert isinstance(ex, InterruptedExit), ex
    finally:
        stop.set()
        if t is not None:
            t.join()
    raise AssertionError("the guest never halted")


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
    _run_to_halt(vcpu, kicks=True)
    assert dev.n == COUNT
    assert mem.read(0x200000, COUNT) == bytes((i + 1) & 0xFF for i in range(COUNT))


BLOCK = 512         # bytes per PIO block of the FIFO below (an ATA sector)


class BlockFifo:
    """A data port that hands out blocks of BLOCK bytes, as an IDE channel does during a PIO read:
    reads go unit by unit, or (string_room/read_string) all but a block's last unit at once; the
    last unit of a block is always read alone and counts a block end (next sector, interrupt)."""

    def __init__(self, total: int, block: int = BLOCK):
        self.block = block
        self.data = bytes((i * 7 + i // 251) & 0xFF for i in range(total))
        self.pos = 0
        self.block_ends = 0
        self.unit_reads = 0
        self.bulk_reads = 0

    def _left_in_block(self) -> int:
        return self.block - self.pos % self.block if self.pos < len(self.data) else 0

    def read(self, offset, size):
        self.unit_reads += 1
        chunk = self.data[self.pos:self.pos + size].ljust(size, b"\xff")
        self.pos += size
        if self.pos % self.block == 0:
            self.block_ends += 1
        return int.from_bytes(chunk, "little")

    def write(self, offset, size, value):
        pass

    def string_room(self, offset, size):
        return max(0, self._left_in_block() // size - 1)

    def read_string(self, offset, size, count):
        n = min(count, self.string_room(offset, size))
        out = self.data[self.pos:self.pos + n * size]
        self.pos += n * size
        self.bulk_reads += 1
        return out


def _fifo_vcpu(total: int, code: bytes, state_for, at: int = CODE, block: int = BLOCK):
    mem = GuestMemory(16 << 20)
    mem.write(at, code)
    io = Bus("io")
    dev = BlockFifo(total, block)
    io.register(0x1F0, 8, dev)
    vcpu = RemVm(mem, io, Bus("mmio")).create_vcpu(0)
    vcpu.set_state(state_for(mem, at))
    return vcpu, mem, dev


def _rep_insw_32(dest: int, words: int, std: bool = False) -> bytes:
    # [std;] mov edi, dest; mov ecx, words; mov dx, 0x1f0; rep insw; [cld;] hlt    (32-bit flat)
    return ((b"\xfd" if std else b"") + b"\xbf" + dest.to_bytes(4, "little") + b"\xb9"
            + words.to_bytes(4, "little") + b"\x66\xba\xf0\x01" + b"\x66\xf3\x6d" + (b"\xfc" if std else b"")
            + b"\xf4")


def test_rep_insw_takes_each_block_in_bulk_with_the_same_result():
    words = 64 * BLOCK // 2 + 3          # 64 blocks and the start of another
    vcpu, mem, dev = _fifo_vcpu(words * 2 + BLOCK, _rep_insw_32(0x200000, words),
                                lambda m, at: cpu_setup.protected_mode_32(m, at))
    st = _run_to_halt(vcpu)
    assert mem.read(0x200000, words * 2) == dev.data[:words * 2]
    assert st.gpr["rcx"] & 0xFFFF_FFFF == 0 and st.gpr["rdi"] == 0x200000 + words * 2
    assert dev.pos == words * 2 and dev.block_ends == 64
    assert dev.bulk_reads >= 64 and dev.unit_reads <= 4 * 65     # a few units per block, not 256


def test_rep_insw_in_bulk_under_kicks_loses_no_word():
    words = 200 * BLOCK // 2
    vcpu, mem, dev = _fifo_vcpu(words * 2, _rep_insw_32(0x300000, words),
                                lambda m, at: cpu_setup.protected_mode_32(m, at))
    st = _run_to_halt(vcpu, kicks=True)
    assert mem.read(0x300000, words * 2) == dev.data
    assert st.gpr["rcx"] & 0xFFFF_FFFF == 0 and dev.pos == words * 2 and dev.block_ends == 200


def test_real_mode_rep_insw_stops_the_bulk_where_di_would_wrap():
    # at 0000:7C00: mov ax, 0x1000; mov es, ax; mov di, 0xFF00; mov cx, 0x100; mov dx, 0x1f0;
    # rep insw; hlt   -> DI wraps after 0x80 words: the next ones land at 0x10000 again, as on a CPU
    code = (b"\xb8\x00\x10\x8e\xc0" + b"\xbf\x00\xff" + b"\xb9\x00\x01" + b"\xba\xf0\x01" + b"\xf3\x6d"
            + b"\xf4")
    vcpu, mem, dev = _fifo_vcpu(0x200 + BLOCK, code, lambda m, at: cpu_setup.real_mode(0, at, at),
                                at=0x7C00)
    st = _run_to_halt(vcpu)
    assert mem.read(0x1FF00, 0x100) == dev.data[:0x100]
    assert mem.read(0x10000, 0x100) == dev.data[0x100:0x200]
    assert st.gpr["rcx"] & 0xFFFF == 0 and st.gpr["rdi"] & 0xFFFF == 0x100
    assert dev.bulk_reads >= 1


def test_rep_insw_backwards_or_into_the_legacy_window_goes_unit_by_unit():
    words = 4 * BLOCK // 2
    down = 0x400000 + words * 2 - 2      # DF=1: the last word first
    vcpu, mem, dev = _fifo_vcpu(words * 2, _rep_insw_32(down, words, std=True),
                                lambda m, at: cpu_setup.protected_mode_32(m, at))
    _run_to_halt(vcpu)
    got = mem.read(0x400000, words * 2)
    assert [got[k:k + 2] for k in range(0, len(got), 2)] == \
        [dev.data[k:k + 2] for k in range(0, len(got), 2)][::-1]
    assert dev.bulk_reads == 0 and dev.unit_reads == words

    vcpu, mem, dev = _fifo_vcpu(words * 2, _rep_insw_32(0xB8000, words),
                                lambda m, at: cpu_setup.protected_mode_32(m, at))
    st = _run_to_halt(vcpu)            # (the VGA window is not RAM here: the stores go to the MMIO bus)
    assert st.gpr["rcx"] & 0xFFFF_FFFF == 0 and st.gpr["rdi"] == 0xB8000 + words * 2
    assert dev.bulk_reads == 0 and dev.unit_reads == words


def test_code_overwritten_by_a_bulk_rep_insw_runs_new():
    # The code at 0x500000 runs once (eax = 1), then one block of 8 KiB is read to 0x4FFFFE: its
    # first word (the hooked unit) lands in the page before, its last one in the page after, so
    # only the bulk stores write the code page, with new code (eax = 2) that the guest then calls.
    first = b"\xb8\x01\x00\x00\x00\xc3"                      # mov eax, 1; ret
    second = b"\xb8\x02\x00\x00\x00\xc3"                     # mov eax, 2; ret
    target, block = 0x500000, 8192
    dest = target - 2
    payload = (b"\x90\x90" + second).ljust(block, b"\x90")
    code = (b"\xbc\x00\x00\x60\x00"                           # mov esp, 0x600000
            + b"\xb8" + target.to_bytes(4, "little") + b"\xff\xd0"       # mov eax, target; call eax
            + b"\x89\xc3"                                     # mov ebx, eax
            + b"\xbf" + dest.to_bytes(4, "little") + b"\xb9" + (block // 2).to_bytes(4, "little")
            + b"\x66\xba\xf0\x01\x66\xf3\x6d"                 # mov dx, 0x1f0; rep insw
            + b"\xb8" + target.to_bytes(4, "little") + b"\xff\xd0"       # mov eax, target; call eax
            + b"\xf4")
    vcpu, mem, dev = _fifo_vcpu(block, code, lambda m, at: cpu_setup.protected_mode_32(m, at), block=block)
    dev.data = payload
    mem.write(target, first)
    st = _run_to_halt(vcpu)
    assert st.gpr["rbx"] & 0xFF == 1 and st.gpr["rax"] & 0xFF == 2
    assert dev.bulk_reads == 1 and dev.unit_reads == 2
