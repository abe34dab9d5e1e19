"""Disk DMA between scattered guest-RAM segments and an image: direct and bounce-buffer paths."""

import os

import pytest

from vmm.devices import blockio
from vmm.memory import GuestMemory

from .fake_disk import RawFile


@pytest.mark.parametrize("segments", [3, 40])          # below and above DIRECT_MAX_SEGMENTS
def test_scattered_read_and_write_roundtrip(tmp_path, segments, monkeypatch):
    monkeypatch.setattr(blockio, "BOUNCE_CHUNK", 4096)   # several bounce groups, one oversized segment
    img = RawFile(tmp_path / "d.raw", 1 << 20)
    mem = GuestMemory(4 << 20)
    sizes = [512 * (1 + i % 5) for i in range(segments)]
    sizes[segments // 2] = 8192                          # larger than a bounce chunk
    views, addr = [], 0x10000
    for n in sizes:
        views.append(mem.view(addr, n))
        addr += n + 4096                                 # not contiguous in guest RAM
    data = os.urandom(sum(sizes))
    img.write_at(4096, data)
    assert blockio.read_into(img, 4096, views, len(data) - 100) == len(data) - 100
    assert b"".join(bytes(v) for v in views)[:len(data) - 100] == data[:-100]
    assert bytes(views[-1])[-100:] == bytes(100)         # past `length`: untouched
    new = os.urandom(sum(sizes))
    pos = 0
    for v in views:
        v[:] = new[pos:pos + len(v)]
        pos += len(v)
    assert blockio.write_from(img, 65536, views, len(new)) == len(new)
    assert img.read_at(65536, len(new)) == new
    img.close()
