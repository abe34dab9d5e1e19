"""msgpack's format in plain Python, for short-lived clients.

A `vboxmanage` run sends and reads a few small bodies and exits; loading the msgpack package
(its C extension brings `collections` and the whole pure-Python `datetime` with it) costs it
more than all of its encoding. This module writes the same bytes msgpack's
`Packer(use_bin_type=True)` writes for the types the bus carries (None, bool, int, float, str,
bytes, list/tuple, dict, extension types) and reads every format of the specification
(https://github.com/msgpack/msgpack/blob/master/spec.md) as `unpackb(raw=False,
strict_map_key=False)` does. Long-lived processes use the msgpack package; wire.Codec picks.
"""

from __future__ import annotations

MAX_DEPTH = 200  # nesting bound: far deeper than any body on the bus, well within Python's recursion limit


class ExtType:
    """An extension value: application type `code` (0..127) and its payload."""

    __slots__ = ("code", "data")

    def __init__(self, code: int, data: bytes):
        if not isinstance(code, int) or not 0 <= code <= 127:
            raise ValueError("code must be 0..127")
        if not isinstance(data, bytes):
            raise TypeError("data must be bytes")
        self.code = code
        self.data = data

    def __eq__(self, other) -> bool:
        return isinstance(other, ExtType) and other.code == self.code and other.data == self.data

    def __hash__(self) -> int:
        return hash((self.code, self.data))

    def __repr__(self) -> str:
        return f"ExtType(code={self.code}, data={self.data!r})"


def packb(obj, default=None) -> bytes:
    out = bytearray()
    _pack(obj, out, default, 0)
    return bytes(out)


class Raw(bytes):
    """Bytes that are already one msgpack value (an encoding made once and sent again and again)."""

    __slots__ = ()


def _pack(obj, out: bytearray, default, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("recursion limit exceeded")
    t = type(obj)
    # the common exact types first, by identity (a batch request is thousands of these)
    if t is str:
        data = obj.encode("utf-8")
        n = len(data)
        if n < 32:
            out.append(0xA0 | n)
            out += data
            return
        _pack_str(data, out)
    elif t is int:
        if 0 <= obj < 0x80:
            out.append(obj)
        else:
            _pack_int(obj, out)
    elif t is list or t is tuple:
        n = len(obj)
        if n < 16:
            out.append(0x90 | n)
        else:
            _head(out, n, 0x90, 16, b"\xdc", b"\xdd")
        for v in obj:
            _pack(v, out, default, depth + 1)
    elif t is Raw:
        out += obj
    elif obj is None:
        out.append(0xC0)
    elif obj is True:
        out.append(0xC3)
    elif obj is False:
        out.append(0xC2)
    elif t is dict or isinstance(obj, dict):
        _head(out, len(obj), 0x80, 16, b"\xde", b"\xdf")
        for k, v in obj.items():
            _pack(k, out, default, depth + 1)
            _pack(v, out, default, depth + 1)
    elif isinstance(obj, int):  # IntEnum and other subclasses, as their value
        _pack_int(int(obj), out)
    elif isinstance(obj, str):
        _pack_str(obj.encode("utf-8"), out)
    elif isinstance(obj, (list, tuple)):
        _head(out, len(obj), 0x90, 16, b"\xdc", b"\xdd")
        for v in obj:
            _pack(v, out, default, depth + 1)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        _sized(out, len(data), 0xC4, "bytes object")
        out += data
    elif isinstance(obj, float):
        from _struct import pack  # loaded on the first float: most runs send none

        out += b"\xcb" + pack(">d", obj)
    elif t is ExtType:
        _pack_ext(obj, out)
    elif default is not None:
        _pack(default(obj), out, default, depth + 1)
    else:
        raise TypeError(f"can not serialize {t.__name__!r} object")


def _pack_str(data: bytes, out: bytearray) -> None:
    n = len(data)
    if n < 32:
        out.append(0xA0 | n)
    else:
        _sized(out, n, 0xD9, "str")
    out += data


def _sized(out: bytearray, n: int, op8: int, what: str) -> None:
    """The head of a str, bin or ext value of `n` bytes: op8, op8 + 1 or op8 + 2 with a 1-, 2- or
    4-byte length (str 8/16/32 are 0xd9.., bin 0xc4.., ext 0xc7..)."""
    if n < 0x100:
        out += bytes((op8, n))
    elif n < 0x10000:
        out += bytes((op8 + 1,)) + n.to_bytes(2, "big")
    elif n < 0x100000000:
        out += bytes((op8 + 2,)) + n.to_bytes(4, "big")
    else:
        raise ValueError(f"{what} is too large")


def _head(out: bytearray, n: int, fix: int, fix_max: int, h16: bytes, h32: bytes) -> None:
    if n < fix_max:
        out.append(fix | n)
    elif n < 0x10000:
        out += h16 + n.to_bytes(2, "big")
    elif n < 0x100000000:
        out += h32 + n.to_bytes(4, "big")
    else:
        raise ValueError("container is too large")


def _pack_int(v: int, out: bytearray) -> None:
    if 0 <= v < 0x80:
        out.append(v)
    elif -32 <= v < 0:
        out.append(v & 0xFF)
    elif v > 0:
        if v < 0x100:
            out += b"\xcc" + bytes((v,))
        elif v < 0x10000:
            out += b"\xcd" + v.to_bytes(2, "big")
        elif v < 0x100000000:
            out += b"\xce" + v.to_bytes(4, "big")
        elif v < 0x10000000000000000:
            out += b"\xcf" + v.to_bytes(8, "big")
        else:
            raise OverflowError("int too big to convert")
    elif v >= -0x80:
        out += b"\xd0" + v.to_bytes(1, "big", signed=True)
    elif v >= -0x8000:
        out += b"\xd1" + v.to_bytes(2, "big", signed=True)
    elif v >= -0x80000000:
        out += b"\xd2" + v.to_bytes(4, "big", signed=True)
    elif v >= -0x8000000000000000:
        out += b"\xd3" + v.to_bytes(8, "big", signed=True)
    else:
        raise OverflowError("int too big to convert")


_FIXEXT = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}


def _pack_ext(ext: ExtType, out: bytearray) -> None:
    n = len(ext.data)
    fix = _FIXEXT.get(n)
    if fix is not None:
        out.append(fix)
    else:
        _sized(out, n, 0xC7, "ext data")
    out.append(ext.code)
    out += ext.data


class _Reader:
    __slots__ = ("data", "pos", "ext_hook")

    def __init__(self, data: bytes, ext_hook):
        self.data = data
        self.pos = 0
        self.ext_hook = ext_hook

    def take(self, n: int) -> bytes:
        p = self.pos
        end = p + n
        if end > len(self.data):
            raise ValueError("unpack(b) received truncated data")
        self.pos = end
        return self.data[p:end]

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def read(self, depth: int):
        if depth > MAX_DEPTH:
            raise ValueError("recursion limit exceeded")
        data = self.data
        p = self.pos
        if p >= len(data):
            raise ValueError("unpack(b) received truncated data")
        b = data[p]
        self.pos = p + 1
        if b < 0x80:
            return b
        if b >= 0xE0:
            return b - 0x100
        if b < 0x90:
            return self.map(b & 0x0F, depth)
        if b < 0xA0:
            return self.array(b & 0x0F, depth)
        if b < 0xC0:
            return self.take(b & 0x1F).decode("utf-8")
        if b == 0xC0:
            return None
        if b == 0xC2:
            return False
        if b == 0xC3:
            return True
        if 0xCC <= b <= 0xCF:
            return self.uint(1 << (b - 0xCC))
        if 0xD0 <= b <= 0xD3:
            return int.from_bytes(self.take(1 << (b - 0xD0)), "big", signed=True)
        if 0xD9 <= b <= 0xDB:
            return self.take(self.uint(1 << (b - 0xD9))).decode("utf-8")
        if 0xC4 <= b <= 0xC6:
            return self.take(self.uint(1 << (b - 0xC4)))
        if b == 0xCB or b == 0xCA:
            from _struct import unpack  # loaded on the first float: most runs read none

            return unpack(">d" if b == 0xCB else ">f", self.take(8 if b == 0xCB else 4))[0]
        if b == 0xDC or b == 0xDD:
            return self.array(self.uint(2 if b == 0xDC else 4), depth)
        if b == 0xDE or b == 0xDF:
            return self.map(self.uint(2 if b == 0xDE else 4), depth)
        if 0xD4 <= b <= 0xD8:
            return self.ext(1 << (b - 0xD4))
        if 0xC7 <= b <= 0xC9:
            return self.ext(self.uint(1 << (b - 0xC7)))
        raise ValueError(f"unpack(b) received an invalid byte 0x{b:02x}")

    def array(self, n: int, depth: int) -> list:
        if n > len(self.data) - self.pos:  # every element takes at least a byte
            raise ValueError("unpack(b) received truncated data")
        read = self.read
        out = []
        for _ in range(n):
            out.append(read(depth + 1))
        return out

    def map(self, n: int, depth: int) -> dict:
        if 2 * n > len(self.data) - self.pos:
            raise ValueError("unpack(b) received truncated data")
        out = {}
        for _ in range(n):
            k = self.read(depth + 1)
            out[k] = self.read(depth + 1)
        return out

    def ext(self, n: int):
        code = int.from_bytes(self.take(1), "big", signed=True)
        payload = self.take(n)
        if self.ext_hook is None:
            if code < 0:
                raise ValueError(f"unsupported extension type {code}")
            return ExtType(code, payload)
        return self.ext_hook(code, payload)


def unpackb(data: bytes, ext_hook=None):
    """The one value `data` holds; ValueError when it is malformed, truncated or followed by more."""
    reader = _Reader(bytes(data), ext_hook)
    value = reader.read(0)
    if reader.pos != len(reader.data):
        raise ValueError("unpack(b) received extra data")
    return value
