import dataclasses
import os

import pytest

from vmm.memory import GuestMemory
from vmm.ssm import SavedStateError, SavedStateReader, SavedStateWriter, decode_state, encode_state


@dataclasses.dataclass
class Inner:
    a: int = 0
    fifo: bytes = b""


@dataclasses.dataclass
class Outer:
    name: str = ""
    regs: list[int] = dataclasses.field(default_factory=list)
    inner: Inner = dataclasses.field(default_factory=Inner)
    chans: list[Inner] = dataclasses.field(default_factory=list)
    pair: tuple[int, int] = (0, 0)


def test_state_roundtrip_nested():
    s = Outer("pit", [1, 2, 3], Inner(5, b"\x00\xff"), [Inner(1), Inner(2, b"x")], (7, 8))
    assert decode_state(Outer, encode_state(s)) == s


def _mem():
    m = GuestMemory(8 << 20)
    m.write(0x1000, b"hello")
    m.write(0x10_0000 + 4095, b"\x01\x02")        # straddles a page boundary
    m.write((8 << 20) - 3, b"end")
    return m


def test_ram_and_units_roundtrip(tmp_path):
    path = tmp_path / "s.sav"
    m = _mem()
    with SavedStateWriter(path, {"machine": "x", "ram": m.size}) as w:
        w.add_state("pit", 0, 2, Inner(3, b"abc"))
        w.add_ram(m)
        w.add_unit("cpu", 0, 1, b"regs")
    # mostly-zero RAM is stored cheaply
    assert os.path.getsize(path) < 64 * 1024
    m2 = GuestMemory(8 << 20)
    m2.write(0x5000, b"garbage that must be cleared")
    with SavedStateReader(path) as r:
        assert r.meta == {"machine": "x", "ram": m.size}
        assert r.read_state(Inner, "pit") == Inner(3, b"abc")
        assert r.read_unit("cpu") == (1, b"regs")
        r.read_ram(m2)
    assert m2.read(0, m2.size) == m.read(0, m.size)
    with SavedStateReader(path) as r, pytest.raises(SavedStateError, match="newer"):
        r.read_unit("pit", max_version=1)


def test_dense_ram(tmp_path):
    m = GuestMemory(4 << 20)
    m.write(0, os.urandom(4 << 20))
    p = tmp_path / "d.sav"
    with SavedStateWriter(p, {}) as w:
        w.add_ram(m)
    m2 = GuestMemory(4 << 20)
    with SavedStateReader(p) as r:
        r.read_ram(m2)
    assert m2.read(0, m2.size) == m.read(0, m.size)


def test_corruption_detected(tmp_path):
    p = tmp_path / "c.sav"
    m = _mem()
    with SavedStateWriter(p, {}) as w:
        w.add_ram(m)
        w.add_unit("cpu", 0, 1, b"x" * 100)
    data = bytearray(p.read_bytes())
    # flip a payload byte -> checksum error when read
    i = data.rfind(b"x" * 100)
    data[i + 10] ^= 0xFF
    p.write_bytes(bytes(data))
    with SavedStateReader(p) as r, pytest.raises(SavedStateError, match="checksum"):
        r.read_unit("cpu")
    # truncation -> error at open
    p.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(SavedStateError, match="truncated|corrupt"):
        SavedStateReader(p)
    # wrong version -> clear error
    good = bytearray(data)
    good[14] = 9
    p.write_bytes(bytes(good))
    with pytest.raises(SavedStateError, match="unsupported version"):
        SavedStateReader(p)
    p.write_bytes(b"not a state file at all")
    with pytest.raises(SavedStateError, match="not a vboxpy saved state"):
        SavedStateReader(p)


def test_failed_write_leaves_no_file(tmp_path):
    p = tmp_path / "f.sav"
    with pytest.raises(RuntimeError), SavedStateWriter(p, {}) as w:
        w.add_unit("a", 0, 1, b"1")
        raise RuntimeError("boom")
    assert not p.exists() and not (tmp_path / "f.sav.tmp").exists()
