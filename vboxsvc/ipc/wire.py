"""Frames on the bus: msgpack bodies, HMAC-SHA256 signatures, size cap, replay protection.

A frame is one ZeroMQ part: the msgpack body followed by its 32-byte HMAC-SHA256 under the
per-user key.
Every body carries the sender's session id `s` (16 random bytes), its channel `c` (0 for
calls, 1 for the callee channel of a process that exports objects), a per-channel
sequence number `q` and a millisecond timestamp `t`; the service accepts a frame only
with a valid signature, a fresh timestamp and a sequence number above the last one seen.
Object references and events are msgpack extension types; nothing is ever pickled.
"""

from __future__ import annotations

import sys
import time
from _operator import _compare_digest as compare_digest  # hmac.compare_digest, without loading OpenSSL
from _thread import _local  # threading.local (threading itself is not needed here)

MAX_FRAME = 16 * 1024 * 1024      # bytes per body; ZeroMQ drops peers that send more
MAC_BYTES = 32
CLOCK_WINDOW_MS = 30_000           # how stale (or early) a frame's timestamp may be
HELLO_TIMEOUT_S = 20.0             # how long a client waits for the service to answer its hello
POLL_MS = 1000                     # a client blocked in a call wakes this often to check the service
EXT_REF = 1
EXT_EVENT = 2
EXT_EARLIER = 3

_EVENTS = __name__.rsplit(".", 2)[0] + ".api.events"

# channels
CALL = 0
CALLEE = 1

# call kinds (vboxsvc.ipc.dispatcher runs them)
KIND_GET, KIND_SET, KIND_CALL = 1, 2, 0


class FrameError(Exception):
    """A frame that must be dropped (bad size, signature, encoding or replay)."""


class Ref:
    """A reference to an object living in some process: owner session id (b'' = the service), oid,
    interface."""

    # _ext: the encoded [owner, oid, iface], once sent; _raw: the whole extension value (packing.Raw)
    __slots__ = ("owner", "oid", "iface", "_ext", "_raw")

    def __init__(self, owner: bytes, oid: int, iface: str):
        self.owner = owner
        self.oid = oid
        self.iface = iface
        self._ext = None
        self._raw = None

    def key(self) -> tuple:
        return (self.owner, self.oid)

    def __eq__(self, other) -> bool:
        return isinstance(other, Ref) and other.owner == self.owner and other.oid == self.oid

    def __hash__(self) -> int:
        return hash((self.owner, self.oid))

    def __repr__(self) -> str:
        return f"Ref({self.owner.hex() or 'svc'}, {self.oid}, {self.iface})"


class Earlier:
    """In a batch entry, as its target or one of its arguments: the result of entry `index` of the
    same batch, which runs before it, so that dependent calls share one round trip (find a machine
    and read it). `iface` is what the caller expects it to be, for its own use (not sent)."""

    __slots__ = ("index", "iface")

    def __init__(self, index: int, iface: str = ""):
        self.index = index
        self.iface = iface

    def __eq__(self, other) -> bool:
        return type(other) is Earlier and other.index == self.index

    def __hash__(self) -> int:
        return hash(("earlier", self.index))

    def __repr__(self) -> str:
        return f"Earlier({self.index})"


def contains_earlier(value) -> bool:
    """Whether an Earlier sits anywhere in `value` (lists and maps included)."""
    if type(value) is Earlier:
        return True
    if isinstance(value, (list, tuple)):
        return any(contains_earlier(v) for v in value)
    if isinstance(value, dict):
        return any(contains_earlier(v) for v in value.values())
    return False


_REF_CACHE: dict[bytes, Ref] = {}
_REF_CACHE_MAX = 4096


def _plain(obj):
    raise TypeError(f"cannot send {type(obj).__name__} on the bus")


class Codec:
    """msgpack with our extension types; `to_ref` turns local objects into Refs, `from_ref` resolves them.

    `plain` encodes with vboxsvc.ipc.packing (the same bytes, in plain Python) instead of the
    msgpack package: for a process that sends a few small bodies and exits (the CLI), where
    loading msgpack costs more than the encoding.
    """

    def __init__(self, to_ref, from_ref, plain: bool = False):
        if plain:
            from . import packing as mp
        else:
            import msgpack as mp
        self._mp = mp
        self._plain = plain
        self._to_ref = to_ref
        self._from_ref = from_ref
        self._local = _local()

    def _ref_ext(self, ref: Ref):
        if self._plain:
            raw = ref._raw
            if raw is None:
                raw = ref._raw = self._mp.Raw(self._mp.packb(self._mp.ExtType(EXT_REF, self._ref_data(ref))))
            return raw
        return self._mp.ExtType(EXT_REF, self._ref_data(ref))

    def _ref_data(self, ref: Ref) -> bytes:
        data = ref._ext
        if data is None:  # references are sent again and again: encode each once
            data = ref._ext = self._mp.packb([ref.owner, ref.oid, ref.iface])
        return data

    def _default(self, obj):
        if isinstance(obj, Ref):
            return self._ref_ext(obj)
        if type(obj) is Earlier:
            return self._mp.ExtType(EXT_EARLIER, self._mp.packb(obj.index))
        # not loaded, or being imported by another thread (no Event class yet): obj is no Event
        event_class = getattr(sys.modules.get(_EVENTS), "Event", None)
        if event_class is not None and isinstance(obj, event_class):
            return self._mp.ExtType(EXT_EVENT, self._mp.packb(obj.to_wire(), default=_plain))
        ref = self._to_ref(obj)
        if ref is None:
            raise TypeError(f"cannot send {type(obj).__name__} on the bus")
        return self._ref_ext(ref)

    def _unpack_ref(self, data: bytes) -> Ref:
        ref = _REF_CACHE.get(data)
        if ref is None:  # the same references arrive again and again: decode each once (refs are immutable)
            val = self._mp.unpackb(data)
            if (not isinstance(val, list) or len(val) != 3 or not isinstance(val[0], bytes)
                    or not isinstance(val[1], int) or not isinstance(val[2], str)):
                raise FrameError("malformed object reference")
            ref = Ref(val[0], val[1], val[2])
            if len(_REF_CACHE) >= _REF_CACHE_MAX:
                _REF_CACHE.clear()
            _REF_CACHE[data] = ref
        return ref

    def _ext(self, code: int, data: bytes):
        if code == EXT_REF:
            return self._from_ref(self._unpack_ref(data))
        if code == EXT_EVENT:
            from ..api.events import Event

            try:
                return Event.from_wire(self._mp.unpackb(data))
            except (ValueError, TypeError, KeyError) as e:
                raise FrameError(f"malformed event: {e}") from None
        if code == EXT_EARLIER:
            index = self._mp.unpackb(data)
            if type(index) is not int or not 0 <= index < 1 << 32:
                raise FrameError("malformed batch result reference")
            return Earlier(index)
        raise FrameError(f"unknown extension type {code}")

    def pack(self, obj) -> bytes:
        if self._plain:
            return self._mp.packb(obj, default=self._default)
        packer = getattr(self._local, "packer", None)
        if packer is None:
            packer = self._local.packer = self._mp.Packer(default=self._default, use_bin_type=True)
        try:
            return packer.pack(obj)
        except BaseException:
            packer.reset()  # drop what a failed pack left in the buffer
            raise

    def unpack(self, data: bytes):
        try:
            if self._plain:
                return self._mp.unpackb(data, ext_hook=self._ext)
            return self._mp.unpackb(data, ext_hook=self._ext, raw=False, strict_map_key=False)
        except FrameError:
            raise
        except Exception as e:  # msgpack raises a zoo of types on garbage
            raise FrameError(f"undecodable body: {type(e).__name__}: {e}") from None


def sha256(data: bytes = b""):
    """A SHA-256 hash object: OpenSSL's when hashlib is loaded already (the service), else Python's
    own `_sha256` (the same digest), which spares a short-lived client loading libcrypto."""
    if "_hashlib" in sys.modules:
        import hashlib

        return hashlib.sha256(data)
    try:
        from _sha256 import sha256 as own
    except ImportError:
        import hashlib

        return hashlib.sha256(data)
    return own(data)


class _Mac:
    """HMAC-SHA256 under one key with the padded key blocks hashed once (RFC 2104 done by hand).

    `hmac.digest` re-derives the key pads on every frame; copying two precomputed hash
    states is about four times cheaper and gives the very same MAC.
    """

    __slots__ = ("inner", "outer")

    def __init__(self, key: bytes):
        if len(key) > 64:
            key = sha256(key).digest()
        key = key.ljust(64, b"\0")
        self.inner = sha256(key.translate(_IPAD))
        self.outer = sha256(key.translate(_OPAD))

    def digest(self, body: bytes) -> bytes:
        inner = self.inner.copy()
        inner.update(body)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_MACS: dict[bytes, _Mac] = {}


def _mac(key: bytes) -> _Mac:
    m = _MACS.get(key)
    if m is None:  # one key per home in practice; bounded anyway
        if len(_MACS) >= 16:
            _MACS.clear()
        m = _MACS[key] = _Mac(key)
    return m


def sign(key: bytes, body: bytes) -> list[bytes]:
    return [body + _mac(key).digest(body)]


def verify(key: bytes, parts: list[bytes]) -> bytes:
    """The body of a well-formed, correctly signed one-part frame, else FrameError."""
    if len(parts) != 1:
        raise FrameError(f"expected 1 frame part, got {len(parts)}")
    frame = parts[0]
    if len(frame) > MAX_FRAME + MAC_BYTES:
        raise FrameError("oversized frame")
    if len(frame) <= MAC_BYTES:
        raise FrameError("short frame")
    body, mac = frame[:-MAC_BYTES], frame[-MAC_BYTES:]
    if not compare_digest(_mac(key).digest(body), mac):
        raise FrameError("bad signature")
    return body


def now_ms() -> int:
    return int(time.time() * 1000)


class ReplayGuard:
    """Accepts each (session, channel, sequence) once, in increasing order, within the clock window."""

    def __init__(self, window_ms: int = CLOCK_WINDOW_MS):
        self.window_ms = window_ms
        self._last: dict[tuple[bytes, int], int] = {}
        self._gone: dict[tuple[bytes, int], float] = {}

    def check(self, msg: dict) -> tuple[bytes, int]:
        sid, chan, seq, ts = msg.get("s"), msg.get("c"), msg.get("q"), msg.get("t")
        if not isinstance(sid, bytes) or len(sid) != 16 or chan not in (CALL, CALLEE):
            raise FrameError("bad session id or channel")
        if not isinstance(seq, int) or not isinstance(ts, int):
            raise FrameError("bad sequence number or timestamp")
        if abs(now_ms() - ts) > self.window_ms:
            raise FrameError("stale timestamp")
        key = (sid, chan)
        if seq <= self._last.get(key, 0):
            raise FrameError("replayed frame")
        return key

    def commit(self, key: tuple[bytes, int], seq: int) -> None:
        """Record a sequence number once the frame is known to come from the session's own connection."""
        self._last[key] = seq

    def forget(self, sid: bytes) -> None:
        """A session ended: its counters stay until every frame it sent is past the clock window."""
        t = time.monotonic()
        for chan in (CALL, CALLEE):
            if (sid, chan) in self._last:
                self._gone[(sid, chan)] = t

    def purge(self) -> None:
        cutoff = time.monotonic() - 2 * self.window_ms / 1000
        for key in [k for k, t in self._gone.items() if t < cutoff]:
            self._gone.pop(key, None)
            self._last.pop(key, None)
