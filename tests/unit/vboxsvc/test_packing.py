"""vboxsvc.ipc.packing writes the bytes the msgpack package writes and reads what it reads."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vboxsvc.ipc import packing

_ints = st.integers(-(2 ** 63), 2 ** 64 - 1)
_scalars = (st.none() | st.booleans() | _ints | st.floats()
            | st.text() | st.binary())
_values = st.recursive(
    _scalars,
    lambda inner: (st.lists(inner, max_size=20) | st.tuples(inner, inner)
                   | st.dictionaries(st.text() | _ints, inner, max_size=20)),
    max_leaves=60)


def _same(a, b) -> bool:
    """Equal, with NaN equal to itself and tuples read back as lists."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=400, deadline=None)
@given(_values)
def test_the_same_bytes_as_msgpack_and_read_back_alike(value):
    ours = packing.packb(value)
    assert ours == msgpack.packb(value, use_bin_type=True)
    assert _same(value, packing.unpackb(ours))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 8, 15, 16, 17, 255, 256, 65535, 65536])
def test_every_length_class_of_str_bin_array_map_and_ext(n):
    for value in ("x" * n, b"y" * n, [1] * n, {i: None for i in range(n)}, msgpack.ExtType(5, b"z" * n)):
        theirs = msgpack.packb(value, use_bin_type=True)
        mine = packing.ExtType(5, value.data) if isinstance(value, msgpack.ExtType) else value
        assert packing.packb(mine) == theirs
        back = packing.unpackb(theirs, ext_hook=lambda c, d: (c, d))
        assert back == ((5, value.data) if isinstance(value, msgpack.ExtType) else value)


def test_formats_msgpack_reads_but_the_bus_never_writes():
    assert packing.unpackb(b"\xca\x3f\xc0\x00\x00") == 1.5            # float 32
    assert packing.unpackb(b"\xd0\x05") == 5                             # int 8 holding a positive value
    assert packing.unpackb(b"\xcd\x00\x01") == 1                         # uint 16 holding a small value
    assert packing.unpackb(b"\xd9\x01a") == "a"                          # str 8 holding a short string
    assert packing.unpackb(b"\xd4\x07\x01") == packing.ExtType(7, b"\x01")


@pytest.mark.parametrize("data", [
    b"", b"\xc1", b"\x92\x01", b"\xa3ab", b"\xcd\x01", b"\x81\x01", b"\xc4\x05abc", b"\xd7\x01abc",
    b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\x01\x02",
    b"\xa2\xff\xfe",
], ids=repr)
def test_malformed_truncated_or_trailing_bodies_raise_value_error(data):
    with pytest.raises(ValueError):
        msgpack.unpackb(data, raw=False, strict_map_key=False)
    with pytest.raises(ValueError):
        packing.unpackb(data)


def test_unhashable_map_key_and_unknown_types():
    with pytest.raises(TypeError):
        packing.unpackb(b"\x81\x90\x01")                                 # {[]: 1}
    with pytest.raises(TypeError):
        packing.packb(object())
    assert packing.packb(object(), default=lambda o: "o") == msgpack.packb("o")
    with pytest.raises(OverflowError):
        packing.packb(2 ** 64)
    with pytest.raises(ValueError):
        packing.packb(_nested(600))
    with pytest.raises(ValueError):
        packing.unpackb(b"\x91" * 600 + b"\x01")


def _nested(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def test_raw_values_are_written_as_they_are():
    ref = packing.Raw(msgpack.packb(msgpack.ExtType(1, b"abc")))
    assert packing.packb([ref, ref, 5]) == msgpack.packb([msgpack.ExtType(1, b"abc")] * 2 + [5])
