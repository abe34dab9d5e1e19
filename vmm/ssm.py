"""SSM: the saved-state file of a VM (VirtualBox's `Snapshots/<timestamp>.sav`).

A state file is a header, a sequence of self-describing units and an end record:

    header   MAGIC, u16 major, u16 minor, u32 meta_len, meta (msgpack map)
    unit     b"UNIT", u16 name_len, name, u32 instance, u32 version, then chunks:
             u32 length, u32 crc32(data), data   ... a zero-length chunk ends the unit
    end      b"END!", u32 unit count

Units are named like VirtualBox's (device name + instance + unit version), so a unit
from a newer device version is refused by name rather than misread.  RAM is streamed
straight from guest memory in runs; all-zero pages cost 17 bytes per run, and nothing
holds a second copy of RAM.  The file is written to `<path>.tmp` and renamed, so a
crash never leaves a half-written state file under the real name.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import mmap
import os
import struct
import typing
import zlib
from collections.abc import Iterator

import msgpack

MAGIC = b"VBOXPY-SSM\x00\x01\x1a\n"
MAJOR = 1
MINOR = 0
CHUNK_MAX = 4 << 20
PAGE = 4096
_RUN_ZERO = 0
_RUN_DATA = 1
_ZERO_64K = bytes(65536)
_ZERO_PAGE = bytes(PAGE)


class SavedStateError(Exception):
    """The state file is corrupt, truncated or from an incompatible version."""


# ---- state value objects <-> msgpack -------------------------------------------

def encode_state(obj) -> bytes:
    """A device/CPU state value object (dataclass, possibly nested) as msgpack."""
    return msgpack.packb(_to_plain(obj), use_bin_type=True)


def decode_state(cls, data: bytes):
    try:
        plain = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as e:
        raise SavedStateError(f"undecodable state for {cls.__name__}: {e}") from e
    return _from_plain(cls, plain)


def _to_plain(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    return obj


def _from_plain(tp, value):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SavedStateError(f"state for {tp.__name__} is not a map")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = _from_plain(hints.get(f.name, typing.Any), value[f.name])
        try:
            return tp(**kwargs)
        except TypeError as e:
            raise SavedStateError(f"state for {tp.__name__}: {e}") from e
    if origin in (list, tuple) and isinstance(value, list):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return tuple(_from_plain(a, v) for a, v in zip(args, value, strict=False))
        inner = args[0] if args else typing.Any
        items = [_from_plain(inner, v) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict and isinstance(value, dict):
        args = typing.get_args(tp)
        inner = args[1] if len(args) == 2 else typing.Any
        return {k: _from_plain(inner, v) for k, v in value.items()}
    if tp is bytearray and isinstance(value, bytes):
        return bytearray(value)
    return value


# ---- writer ------------------------------------------------------------------------

class SavedStateWriter:
    def __init__(self, path: str | os.PathLike, meta: dict):
        self.path = os.fspath(path)
        self._tmp = self.path + ".tmp"
        self._f = open(self._tmp, "wb")
        self._units = 0
        m = msgpack.packb(meta, use_bin_type=True)
        self._f.write(MAGIC + struct.pack("<HHI", MAJOR, MINOR, len(m)) + m)

    def _begin(self, name: str, instance: int, version: int) -> None:
        n = name.encode()
        self._f.write(b"UNIT" + struct.pack("<H", len(n)) + n + struct.pack("<II", instance, version))
        self._units += 1

    def _chunk(self, data) -> None:
        self._f.write(struct.pack("<II", len(data), zlib.crc32(data)))
        self._f.write(data)

    def _end_unit(self) -> None:
        self._f.write(struct.pack("<II", 0, 0))

    def add_unit(self, name: str, instance: int, version: int, payload: bytes) -> None:
        self._begin(name, instance, version)
        for i in range(0, len(payload), CHUNK_MAX):
            self._chunk(payload[i:i + CHUNK_MAX])
        self._end_unit()

    def add_state(self, name: str, instance: int, version: int, state) -> None:
        self.add_unit(name, instance, version, encode_state(state))

    def add_ram(self, memory, name: str = "pgm", instance: int = 0, version: int = 1) -> None:
        """Stream guest RAM (a vmm.memory.GuestMemory) region by region."""
        self._begin(name, instance, version)
        for base, length, _off in memory.regions:
            buf = bytearray()
            for start, end, is_zero in _runs(memory.view(base, length), base):
                if is_zero:
                    buf += struct.pack("<BQQ", _RUN_ZERO, start, end - start)
                else:
                    if buf:
                        self._chunk(bytes(buf))
                        buf.clear()
                    view = memory.view(start, end - start)
                    for i in range(0, len(view), CHUNK_MAX - 32):
                        part = view[i:i + CHUNK_MAX - 32]
                        head = struct.pack("<BQQ", _RUN_DATA, start + i, len(part))
                        self._f.write(struct.pack("<II", len(head) + len(part),
                                                  zlib.crc32(part, zlib.crc32(head))))
                        self._f.write(head)
                        self._f.write(part)
                if len(buf) > CHUNK_MAX - 64:
                    self._chunk(bytes(buf))
                    buf.clear()
            if buf:
                self._chunk(bytes(buf))
        self._end_unit()

    def close(self) -> None:
        self._f.write(b"END!" + struct.pack("<I", self._units))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._f.close()
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _runs(view: memoryview, base: int) -> Iterator[tuple[int, int, bool]]:
    """Split a RAM region into maximal zero / non-zero page runs (64 KiB fast path)."""
    n = len(view)
    run_start, run_zero = 0, None
    pos = 0
    while pos < n:
        step = 65536 if pos % 65536 == 0 and pos + 65536 <= n else PAGE
        if step == 65536:
            # bytes(...) == is a memcmp; comparing a memoryview is element by element (20x slower)
            z = bytes(view[pos:pos + 65536]) == _ZERO_64K
            if not z:
                # mixed block: classify page by page
                for p in range(pos, pos + 65536, PAGE):
                    pz = bytes(view[p:p + PAGE]) == _ZERO_PAGE
                    if run_zero is None:
                        run_zero = pz
                    elif pz != run_zero:
                        yield base + run_start, base + p, run_zero
                        run_start, run_zero = p, pz
                pos += 65536
                continue
        else:
            z = not any(bytes(view[pos:pos + step]))
        if run_zero is None:
            run_zero = z
        elif z != run_zero:
            yield base + run_start, base + pos, run_zero
            run_start, run_zero = pos, z
        pos += step
    if n:
        yield base + run_start, base + n, bool(run_zero)


# ---- reader ------------------------------------------------------------------------

@dataclasses.dataclass
class UnitInfo:
    name: str
    instance: int
    version: int
    offset: int     # file offset of the first chunk


class SavedStateReader:
    """Opens and structurally verifies a state file; units are read on demand."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            self._f = open(self.path, "rb")
        except OSError as e:
            raise SavedStateError(f"cannot open saved state file '{self.path}': {e.strerror}") from e
        self.size = os.fstat(self._f.fileno()).st_size
        head = self._f.read(len(MAGIC) + 8)
        if len(head) < len(MAGIC) + 8 or head[:len(MAGIC)] != MAGIC:
            self.close()
            raise SavedStateError(f"'{self.path}' is not a vboxpy saved state file")
        major, minor, mlen = struct.unpack_from("<HHI", head, len(MAGIC))
        if major != MAJOR:
            self.close()
            raise SavedStateError(
                f"saved state file '{self.path}' has unsupported version {major}.{minor} "
                f"(supported: {MAJOR}.x)")
        if mlen > 1 << 20 or len(MAGIC) + 8 + mlen > self.size:
            self.close()
            raise SavedStateError(f"saved state file '{self.path}' has a corrupt header")
        try:
            self.meta = msgpack.unpackb(self._f.read(mlen), raw=False)
        except Exception as e:
            self.close()
            raise SavedStateError(f"saved state file '{self.path}' has a corrupt header: {e}") from e
        self.units: list[UnitInfo] = []
        try:
            self._index()
        except SavedStateError:
            self.close()
            raise

    def _read_exact(self, n: int) -> bytes:
        b = self._f.read(n)
        if len(b) != n:
            raise SavedStateError(f"saved state file '{self.path}' is truncated")
        return b

    def _index(self) -> None:
        while True:
            tag = self._read_exact(4)
            if tag == b"END!":
                count = struct.unpack("<I", self._read_exact(4))[0]
                if count != len(self.units):
                    raise SavedStateError(f"saved state file '{self.path}' is corrupt (unit count)")
                return
            if tag != b"UNIT":
                raise SavedStateError(f"saved state file '{self.path}' is corrupt (bad record at "
                                      f"{self._f.tell() - 4:#x})")
            (nlen,) = struct.unpack("<H", self._read_exact(2))
            name = self._read_exact(nlen).decode("utf-8", "replace")
            instance, version = struct.unpack("<II", self._read_exact(8))
            info = UnitInfo(name, instance, version, self._f.tell())
            while True:
                length, _crc = struct.unpack("<II", self._read_exact(8))
                if length == 0:
                    break
                if length > CHUNK_MAX or self._f.tell() + length > self.size:
                    raise SavedStateError(f"saved state file '{self.path}' is corrupt (chunk size)")
                self._f.seek(length, os.SEEK_CUR)
            self.units.append(info)

    def find(self, name: str, instance: int = 0) -> UnitInfo:
        for u in self.units:
            if u.name == name and u.instance == instance:
                return u
        raise SavedStateError(f"saved state file '{self.path}' has no unit '{name}' instance {instance}")

    def _chunks(self, unit: UnitInfo) -> Iterator[bytes]:
        self._f.seek(unit.offset)
        while True:
            length, crc = struct.unpack("<II", self._read_exact(8))
            if length == 0:
                return
            data = self._read_exact(length)
            if zlib.crc32(data) != crc:
                raise SavedStateError(f"saved state file '{self.path}' is corrupt (checksum in unit "
                                      f"'{unit.name}')")
            yield data

    def read_unit(self, name: str, instance: int = 0, max_version: int | None = None) -> tuple[int, bytes]:
        u = self.find(name, instance)
        if max_version is not None and u.version > max_version:
            raise SavedStateError(
                f"unit '{name}' version {u.version} is newer than supported ({max_version})"
            )
        return u.version, b"".join(self._chunks(u))

    def read_state(self, cls, name: str, instance: int = 0, max_version: int | None = None):
        _v, data = self.read_unit(name, instance, max_version)
        return decode_state(cls, data)

    def read_ram(self, memory, name: str = "pgm", instance: int = 0) -> None:
        """Load RAM runs into a vmm.memory.GuestMemory (zero runs are zeroed).

        A chunk holding one data run is read straight into guest memory and checked there (no
        second copy of RAM); zero runs give their pages back to the kernel where they can."""
        u = self.find(name, instance)
        self._f.seek(u.offset)
        # checksums of data read straight into RAM are computed on a second thread (zlib releases
        # the GIL) while the next run is read; every one is checked before returning
        checks: list[tuple[concurrent.futures.Future, int]] = []
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ssm-crc") as pool:
            while True:
                length, crc = struct.unpack("<II", self._read_exact(8))
                if length == 0:
                    break
                if length > CHUNK_MAX:
                    raise SavedStateError(f"saved state file '{self.path}' is corrupt (chunk size)")
                head = self._read_exact(min(17, length))
                if len(head) == 17:
                    kind, start, rlen = struct.unpack("<BQQ", head)
                    if kind == _RUN_DATA and 17 + rlen == length and memory.contains(start, rlen):
                        view = memory.view(start, rlen)
                        if self._f.readinto(view) != rlen:
                            raise SavedStateError(f"saved state file '{self.path}' is truncated")
                        checks.append((pool.submit(zlib.crc32, view, zlib.crc32(head)), crc))
                        continue
                chunk = head + self._read_exact(length - len(head))
                if zlib.crc32(chunk) != crc:
                    raise SavedStateError(f"saved state file '{self.path}' is corrupt (checksum in unit "
                                          f"'{u.name}')")
                self._load_records(memory, chunk)
        if any(f.result() != crc for f, crc in checks):
            raise SavedStateError(f"saved state file '{self.path}' is corrupt (checksum in unit '{u.name}')")

    def _load_records(self, memory, chunk: bytes) -> None:
        pos = 0
        while pos < len(chunk):
            if len(chunk) - pos < 17:
                raise SavedStateError(f"saved state file '{self.path}' is corrupt (RAM record)")
            kind, start, length = struct.unpack_from("<BQQ", chunk, pos)
            pos += 17
            if not memory.contains(start, length) and length:
                raise SavedStateError(f"saved state RAM run {start:#x}+{length:#x} is outside guest RAM")
            if kind == _RUN_ZERO:
                _zero(memory, start, length)
            elif kind == _RUN_DATA:
                if pos + length > len(chunk):
                    raise SavedStateError(f"saved state file '{self.path}' is corrupt (RAM data)")
                memory.write(start, memoryview(chunk)[pos:pos + length])
                pos += length
            else:
                raise SavedStateError(f"saved state file '{self.path}' is corrupt (RAM record kind)")

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _zero(memory, start: int, length: int) -> None:
    """Zero guest RAM; whole pages are dropped (MADV_DONTNEED: they read as zero, cost nothing)."""
    if length <= 0:
        return
    view = memory.view(start, length)
    mm = getattr(memory, "mmap", None)
    advise = getattr(mm, "madvise", None)
    if advise is not None and hasattr(memory, "regions"):
        off = next(o + (start - b) for b, n, o in memory.regions if b <= start and start + length <= b + n)
        first = -off % mmap.PAGESIZE
        whole = (length - first) // mmap.PAGESIZE * mmap.PAGESIZE if length > first else 0
        if whole:
            view[:first] = bytes(first)
            advise(mmap.MADV_DONTNEED, off + first, whole)
            tail = first + whole
            view[tail:] = bytes(length - tail)
            return
    for i in range(0, length, len(_ZERO_64K)):
        part = view[i:i + len(_ZERO_64K)]
        part[:] = _ZERO_64K[:len(part)]
