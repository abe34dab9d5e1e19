"""Split virtqueue mechanics: chains, indirect tables, rings, and a hostile driver's tricks."""

import struct

import pytest

from vmm.devices.virtio.queue import (
    DESC_F_INDIRECT,
    DESC_F_NEXT,
    DESC_F_WRITE,
    QueueBroken,
    Virtqueue,
)
from vmm.memory import GuestMemory

DESC, AVAIL, USED = 0x1000, 0x2000, 0x3000


def desc(mem, table, i, addr, length, flags=0, nxt=0):
    mem.write(table + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))


def offer(mem, vq_size, heads, start=0):
    for k, h in enumerate(heads):
        mem.write_u16(AVAIL + 4 + 2 * ((start + k) % vq_size), h)
    mem.write_u16(AVAIL + 2, start + len(heads))


@pytest.fixture
def mem():
    m = GuestMemory(1 << 20)
    yield m
    m.close()


def test_chain_segments_and_used_ring(mem):
    vq = Virtqueue(mem, 8, DESC, AVAIL, USED)
    desc(mem, DESC, 0, 0x10000, 16, DESC_F_NEXT, 3)
    desc(mem, DESC, 3, 0x10010, 16, DESC_F_NEXT, 5)          # contiguous: coalesced
    desc(mem, DESC, 5, 0x20000, 100, DESC_F_WRITE)
    mem.write(0x10000, bytes(range(32)))
    offer(mem, 8, [0])
    chain = vq.pop()
    assert chain.error is None and chain.head == 0
    assert [(s.gpa, s.length) for s in chain.readable] == [(0x10000, 32)]
    assert chain.read(4, 8) == bytes(range(4, 12))
    assert chain.write(90, b"x" * 20) == 10
    assert mem.read(0x20000 + 90, 10) == b"x" * 10
    assert vq.pop() is None
    vq.push(chain.head, 42)
    assert mem.read_u16(USED + 2) == 1
    assert struct.unpack("<II", mem.read(USED + 4, 8)) == (0, 42)
    assert vq.should_notify() and not vq.should_notify()
    mem.write_u16(AVAIL, 1)                                    # NO_INTERRUPT
    offer(mem, 8, [0], start=1)
    vq.push(vq.pop().head, 0)
    assert not vq.should_notify()


def test_indirect_table(mem):
    vq = Virtqueue(mem, 4, DESC, AVAIL, USED)
    table = 0x5000
    desc(mem, table, 0, 0x10000, 8, DESC_F_NEXT, 1)
    desc(mem, table, 1, 0x30000, 64, DESC_F_WRITE)
    desc(mem, DESC, 2, table, 32, DESC_F_INDIRECT)
    offer(mem, 4, [2])
    chain = vq.pop()
    assert chain.error is None and chain.readable_len == 8 and chain.writable_len == 64


@pytest.mark.parametrize("setup, why", [
    (lambda m: desc(m, DESC, 0, 0xFFFF0, 0x100), "outside guest RAM"),
    (lambda m: desc(m, DESC, 0, 0x10000, 8, DESC_F_NEXT, 9), "beyond table"),
    (lambda m: (desc(m, DESC, 0, 0x10000, 8, DESC_F_NEXT, 1),
                desc(m, DESC, 1, 0x10000, 8, DESC_F_NEXT, 0)), "loops"),
    (lambda m: (desc(m, DESC, 0, 0x10000, 8, DESC_F_WRITE | DESC_F_NEXT, 1),
                desc(m, DESC, 1, 0x10000, 8)), "readable descriptor after"),
    (lambda m: desc(m, DESC, 0, 0x5000, 24, DESC_F_INDIRECT), "indirect table length"),
    (lambda m: desc(m, DESC, 0, 0xFFF00, 0x200, DESC_F_INDIRECT), "outside guest RAM"),
    (lambda m: (desc(m, DESC, 0, 0x5000, 16, DESC_F_INDIRECT),
                desc(m, 0x5000, 0, 0x6000, 16, DESC_F_INDIRECT)), "nested"),
    (lambda m: (desc(m, DESC, 0, 0x5000, 32, DESC_F_INDIRECT),
                desc(m, 0x5000, 0, 0x10000, 8, DESC_F_NEXT, 1),
                desc(m, 0x5000, 1, 0x10000, 8, DESC_F_NEXT, 0)), "loops"),
    (lambda m: desc(m, DESC, 0, (1 << 64) - 8, 16), "outside guest RAM"),
])
def test_malformed_chains_are_flagged_not_followed(mem, setup, why):
    vq = Virtqueue(mem, 8, DESC, AVAIL, USED)
    setup(mem)
    offer(mem, 8, [0])
    chain = vq.pop()
    assert chain.error is not None and why in chain.error
    assert chain.head == 0


def test_broken_rings_raise(mem):
    vq = Virtqueue(mem, 8, DESC, AVAIL, USED)
    mem.write_u16(AVAIL + 2, 9)                                # more than the queue holds
    with pytest.raises(QueueBroken):
        vq.pop()
    vq = Virtqueue(mem, 8, DESC, AVAIL, USED)
    offer(mem, 8, [8])                                         # head out of range
    with pytest.raises(QueueBroken):
        vq.pop()
    with pytest.raises(QueueBroken):
        Virtqueue(mem, 8, 0xFFFF8, AVAIL, USED)
    with pytest.raises(QueueBroken):
        Virtqueue(mem, 6, DESC, AVAIL, USED)


def test_event_idx(mem):
    vq = Virtqueue(mem, 8, DESC, AVAIL, USED, event_idx=True)
    desc(mem, DESC, 0, 0x10000, 8)
    mem.write_u16(AVAIL + 4 + 16, 1)                           # used_event: interrupt after 2nd
    offer(mem, 8, [0, 0])
    vq.push(vq.pop().head, 0)
    assert mem.read_u16(USED + 4 + 64) == 1                    # avail_event published
    assert not vq.should_notify()
    vq.push(vq.pop().head, 0)
    assert vq.should_notify()
