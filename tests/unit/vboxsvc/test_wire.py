"""Frames: signatures, size cap, replay guard, references and events in msgpack."""

from __future__ import annotations

import os
import time

import msgpack
import pytest

from vboxsvc.api.enums import MachineState, VBoxEventType
from vboxsvc.api.events import Event, matches
from vboxsvc.ipc.wire import MAX_FRAME, Codec, FrameError, Ref, ReplayGuard, sign, verify

KEY = b"k" * 32


def test_sign_verify():
    parts = sign(KEY, b"body")
    assert len(parts) == 1 and verify(KEY, parts) == b"body"
    with pytest.raises(FrameError, match="signature"):
        verify(b"x" * 32, parts)
    with pytest.raises(FrameError, match="signature"):
        verify(KEY, [b"bodz" + parts[0][4:]])
    with pytest.raises(FrameError, match="part"):
        verify(KEY, [b"body", parts[0][4:]])
    with pytest.raises(FrameError, match="short"):
        verify(KEY, [b"x" * 32])
    with pytest.raises(FrameError, match="oversized"):
        verify(KEY, [b"x" * (MAX_FRAME + 33)])


def _msg(sid, seq, ts=None, chan=0):
    return {"s": sid, "c": chan, "q": seq, "t": int(time.time() * 1000) if ts is None else ts}


def test_replay_guard():
    g = ReplayGuard()
    sid = os.urandom(16)
    key = g.check(_msg(sid, 1))
    g.commit(key, 1)
    with pytest.raises(FrameError, match="replayed"):
        g.check(_msg(sid, 1))
    g.commit(g.check(_msg(sid, 5)), 5)
    with pytest.raises(FrameError, match="replayed"):
        g.check(_msg(sid, 4))
    g.check(_msg(sid, 1, chan=1))  # channels count separately
    with pytest.raises(FrameError, match="stale"):
        g.check(_msg(sid, 9, ts=1000))
    for bad in ({"s": b"short", "c": 0, "q": 1, "t": 1}, {"s": sid, "c": 7, "q": 1, "t": 1},
                {"s": sid, "c": 0, "q": "1", "t": 1}, {}):
        with pytest.raises(FrameError):
            g.check(bad)
    # an uncommitted check does not advance the counter (a spoofed frame cannot lock a client out)
    g.check(_msg(sid, 100))
    g.commit(g.check(_msg(sid, 6)), 6)


@pytest.mark.parametrize("plain", [False, True], ids=["msgpack", "plain"])
def test_codec_refs_and_events(plain):
    class Obj:
        __interface__ = "IMachine"

    seen = []
    codec = Codec(lambda o: Ref(b"", 7, o.__interface__) if hasattr(o, "__interface__") else None,
                  lambda r: seen.append(r) or ("resolved", r.oid), plain=plain)
    ev = Event(VBoxEventType.OnMachineStateChanged, {"machine_id": "m", "state": 6}, id=3)
    data = codec.pack({"obj": Obj(), "ev": ev, "n": MachineState.Running, "b": b"\x00"})
    out = codec.unpack(data)
    assert out["obj"] == ("resolved", 7) and seen[0].iface == "IMachine"
    assert out["ev"].state == MachineState.Running and out["ev"].machine_id == "m" and out["ev"].id == 3
    assert out["n"] == 6 and out["b"] == b"\x00"
    with pytest.raises(TypeError):
        codec.pack({"x": object()})
    with pytest.raises(FrameError):
        codec.unpack(msgpack.packb(msgpack.ExtType(99, b"")))
    with pytest.raises(FrameError):
        codec.unpack(msgpack.packb(msgpack.ExtType(1, b"\x91\x01")))  # malformed reference
    with pytest.raises(FrameError):
        codec.unpack(msgpack.packb(msgpack.ExtType(2, msgpack.packb([1, 2]))))  # malformed event
    with pytest.raises(FrameError):
        codec.unpack(b"\xc1")


def test_event_values_and_matching():
    with pytest.raises(ValueError):
        Event(VBoxEventType.OnMachineStateChanged, {"machine_id": "m"})  # lacks state
    assert matches([VBoxEventType.Any], VBoxEventType.OnMediumRegistered)
    assert matches([VBoxEventType.MachineEvent], VBoxEventType.OnSessionStateChanged)
    assert not matches([VBoxEventType.MachineEvent], VBoxEventType.OnMediumRegistered)
    assert matches([VBoxEventType.SnapshotEvent], VBoxEventType.OnSnapshotTaken)
    assert not matches([VBoxEventType.OnMachineRegistered], VBoxEventType.OnMachineStateChanged)


@pytest.mark.parametrize("plain", [False, True], ids=["msgpack", "plain"])
def test_batch_result_references_travel_and_malformed_ones_are_dropped(plain):
    from vboxsvc.ipc.wire import EXT_EARLIER, Earlier

    codec = Codec(lambda o: None, lambda r: r, plain=plain)
    out = codec.unpack(codec.pack({"b": [[Earlier(0, "IMachine"), 0, "get_extra_data", ["k"]]]}))
    assert out["b"][0][0] == Earlier(0) and type(out["b"][0][0]) is Earlier
    for payload in (-1, "0", True, 2 ** 40, [0]):
        with pytest.raises(FrameError, match="batch result reference"):
            codec.unpack(msgpack.packb(msgpack.ExtType(EXT_EARLIER, msgpack.packb(payload))))


@pytest.mark.parametrize("plain", [False, True], ids=["msgpack", "plain"])
def test_packing_while_another_thread_imports_the_events_module(plain, monkeypatch):
    """A bus thread importing vboxsvc.api.events (the first event arrives) while the main thread
    sends an object: the half-made module has no Event class yet, and the object is no event."""
    import sys
    import types

    class Obj:
        __interface__ = "IMachine"

    monkeypatch.setitem(sys.modules, "vboxsvc.api.events", types.ModuleType("vboxsvc.api.events"))
    codec = Codec(lambda o: Ref(b"", 3, o.__interface__), lambda r: r, plain=plain)
    assert codec.unpack(codec.pack({"o": Obj()}))["o"] == Ref(b"", 3, "IMachine")
