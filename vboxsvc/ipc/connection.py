"""The client side of the bus: one connection to the service, its proxies, sessions and exported objects.

Scripts use it through `vboxsvc.ipc.client.connect()` (see there); this module holds the
machinery (ZeroMQ, msgpack, the schema), which `client` imports only once a service start
has been set going, so that both overlap.

A process that implements objects for others (the VM process and its IConsole) calls
`client.export(obj, "IConsole")`: a second channel then serves calls on exported objects
from a small thread pool, while the process keeps making its own calls (vboxsvc.ipc.callee,
with the pyzmq call channel: a short-lived client loads neither).
"""

from __future__ import annotations

import _thread  # a lock without importing threading (only the callee channel needs threads)
import os
import sys
from time import monotonic as _monotonic

from ..api import errors as rc
from ..api.errors import VBoxError
from . import autostart, paths
from .proxy import Proxy, make_proxy
from .wire import CALL as CALL_CHANNEL
from .wire import HELLO_TIMEOUT_S, MAX_FRAME, POLL_MS, Codec, Earlier, FrameError, Ref, now_ms, sign, verify
from .wire import KIND_CALL as CALL
from .wire import KIND_GET as GET


def _log():
    import logging  # only when something goes wrong: a short-lived client does not pay for it

    return logging.getLogger("vboxsvc.client")

HELLO_RETRY_S = 2.0
# Every call has a bound: a service that is gone, stopped (SIGSTOP) or wedged must not hold a client
# forever. Calls answer at once on a healthy service (its loop never blocks); long operations are
# waits (IProgress, getEvent), which the client splits into short slices (WAIT_SLICE_MS).
STOPPED_GRACE_S = 3.0
BATCH_MAX = 4096  # calls per batch frame (the service's bound)
# a call in flight on another thread owns the call socket: teardown waits for it to notice (it wakes
# every POLL_MS); a ZeroMQ socket closed under a thread blocked in it aborts the process in libzmq
TEARDOWN_WAIT_S = POLL_MS / 1000 + 2.0
_HELD: dict[int, list] = {}  # id(client) -> its ZeroMQ context and sockets, until the client is torn down


def call_timeout_s() -> float:
    """How long one bus call may take (VBOXPY_CALL_TIMEOUT_S, 60 s by default), read per call, not at
    import: code imported once may serve runs with different environments."""
    return float(os.environ.get("VBOXPY_CALL_TIMEOUT_S") or 60.0)


WAIT_SLICE_MS = 1000
# calls that wait on the service side -> position of their timeout argument
_SLICED = {"wait_for_completion": 0, "wait_for_operation_completion": 1, "get_event": 1}


class Client:
    """One connection to the service (a COM 'client'): proxies, sessions, exported objects, events.

    `light` carries the calls over vboxsvc.ipc.zmtp instead of pyzmq: for a process that makes
    a few calls and exits (the CLI), where loading pyzmq costs more than the calls. pyzmq is
    still loaded once the process exports objects (the callee channel).
    """

    def __init__(self, autostart_service: bool = True, name: str | None = None, light: bool = False):
        if autostart_service:
            autostart.ensure_service()
        self.key = paths.load_key(create=False)
        self.endpoint = paths.endpoint()
        self.sid = os.urandom(16)
        self._table = None  # dispatcher.ObjectTable, once the process exports an object
        self._table_lock = _thread.allocate_lock()
        self.codec = Codec(self._to_ref, self._from_ref, plain=light)
        self._ctx = None
        # the ZeroMQ context and socket stay reachable from here until _teardown: a client dropped
        # without close() is garbage together with its proxies (a cycle), and the collector must run
        # our __del__ (which closes the socket first), never the context's own (which would wait for
        # that socket for ever)
        _HELD[id(self)] = self._held = []
        self._light = light
        if light:
            from .zmtp import ZmtpChannel

            self._sock = ZmtpChannel(self.endpoint[len("ipc://"):], MAX_FRAME + 4096)
        else:
            from .callee import ZmqChannel

            self._sock = ZmqChannel(self.zmq_context(), self.endpoint)
        self._held.append(self._sock)
        self._lock = _thread.allocate_lock()
        self._seq = 0
        self._closed = False
        self._torn_down = False
        self._callee = None  # callee.Callee, once the process exports an object
        self._listeners: list = []
        hello = {"op": "hello", "pid": os.getpid(), "name": name or os.path.basename(sys.argv[0] or "python")}
        token = os.environ.get("VBOXPY_LAUNCH_TOKEN")
        if token:
            hello["token"] = token
        try:
            info = self._hello(hello, autostart_service)
        except BaseException:
            self._teardown()
            raise
        self.service_pid: int = info["pid"]
        self.virtualbox = info["vbox"]
        self._vbclient = info["client"]
        self.virtualbox_client = self._vbclient  # IVirtualBoxClient
        caps = info.get("caps") if isinstance(info.get("caps"), list) else ()
        # what the service takes beyond the bus's first version (busserver.CAPABILITIES)
        self.capabilities = frozenset(c for c in caps if isinstance(c, str))

    def _hello(self, hello: dict, autostart_service: bool) -> dict:
        # a service that is just exiting may have accepted our connection: start or find the next one
        for _attempt in range(3):
            try:
                return self._request(dict(hello), timeout_s=HELLO_RETRY_S)
            except VBoxError as e:
                if e.result_code != rc.NS_ERROR_CALL_FAILED:
                    raise
                if autostart_service and not autostart.probe(paths.socket_path()):
                    autostart.ensure_service()
        return self._request(dict(hello), timeout_s=HELLO_TIMEOUT_S)

    @property
    def table(self):
        """The objects this process exports (a CLI run exports none: made on first use)."""
        table = self._table
        if table is None:
            with self._table_lock:
                if self._table is None:
                    from .dispatcher import ObjectTable

                    self._table = ObjectTable(self.sid)
                table = self._table
        return table

    def zmq_context(self):
        if self._ctx is None:
            import zmq

            self._ctx = zmq.Context()
            self._held.append(self._ctx)
        return self._ctx

    # --- public API ----------------------------------------------------------------------
    def session(self):
        """A new, unlocked ISession (IVirtualBoxClient::session)."""
        return self._vbclient.session

    @property
    def event_source(self):
        return self.virtualbox.event_source

    def export(self, obj, interface: str | None = None) -> Ref:
        """Make a local object callable over the bus as `interface`; returns its reference."""
        if interface is not None:
            current = getattr(obj, "__interface__", None)
            if current is None:
                try:
                    obj.__interface__ = interface
                except AttributeError:
                    raise TypeError(
                        f"cannot export {type(obj).__name__}: set __interface__ on its class"
                    ) from None
            elif current != interface:
                raise TypeError(f"object implements {current}, not {interface}")
        self._ensure_callee()
        return self.table.ref(obj)

    def unexport(self, obj) -> None:
        self.table.drop(obj)

    def subscribe(self, callback, types, source=None):
        """Call `callback(event)` (on a bus thread) for every event of `types`; returns the listener ref."""
        from .callee import CallbackListener

        listener = CallbackListener(callback)
        ref = self.export(listener)
        es = source if source is not None else self.event_source
        es.register_listener(ref, list(types), True)
        self._listeners.append((es, ref, listener))
        return ref

    def unsubscribe(self, ref) -> None:
        for i, (es, r, listener) in enumerate(self._listeners):
            if r == ref:
                es.unregister_listener(r)
                self.table.drop(listener)
                del self._listeners[i]
                return

    def close(self) -> None:
        if self._closed:
            return
        try:
            # a light client's socket is a plain Unix socket: the service reads the goodbye even after
            # we closed our end, so there is no need to wait for its answer
            self._request({"op": "bye"}, timeout_s=5, wait=not self._light)
        except VBoxError:
            pass
        self._teardown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- calls -----------------------------------------------------------------------------
    def call(self, ref: Ref, kind: int, member: str, args=(), kwargs=None):
        if kind == CALL and member in _SLICED:
            return self._sliced(ref, member, list(args), dict(kwargs or {}))
        msg = {"op": "call", "o": ref, "m": member, "k": kind, "a": list(args)}
        if kwargs:
            msg["w"] = kwargs
        return self._request(msg, timeout_s=call_timeout_s())

    def send_last(self, proxy, method: str, args=()) -> None:
        """Call `method` of `proxy` without waiting for the answer (dropped when it comes): for a
        process's last calls whose outcome changes nothing for it (the CLI's unlock before it exits).
        The service runs a connection's calls in order, so a close() that follows comes after it."""
        self._request({"op": "call", "o": proxy._ref, "m": method, "k": CALL, "a": list(args)}, wait=False)

    def batch(self, calls, enums: bool = True) -> list:
        """Run independent calls in one round trip; for each, (True, result) or (False, VBoxError).

        `calls` holds (proxy, kind, member, args) with kind GET (args empty) or CALL (positional
        args); a proxy or argument may be `wire.Earlier(i, interface)`, the result of entry i (an
        entry before it, on an object of the service), so that dependent calls share the trip.
        Each entry runs on its object exactly as the lone call would (the same checks, the same
        errors); only the round trips are shared. The one-call-per-member API is unchanged.
        Results typed as enums are IntEnums as from the proxies, or plain ints with enums=False.
        """
        from .proxy import convert

        calls = list(calls)
        if "earlier" not in self.capabilities and any(
                type(p) is Earlier or any(type(a) is Earlier for a in args) for p, _k, _m, args in calls):
            return self._one_by_one(calls, enums)  # a service from before Earlier would drop the frame
        out: list = []
        for start in range(0, len(calls), BATCH_MAX):
            chunk = calls[start:start + BATCH_MAX]
            wire = [[p if type(p) is Earlier else p._ref, kind, member, list(args)]
                    for p, kind, member, args in chunk]
            results = self._request({"op": "batch", "b": wire}, timeout_s=call_timeout_s())
            if not isinstance(results, list) or len(results) != len(chunk):
                raise VBoxError(rc.E_UNEXPECTED, "malformed batch answer from the service")
            for (p, kind, member, _args), (failed, value) in zip(chunk, results, strict=True):
                if failed:
                    out.append((False, VBoxError.from_wire(value)))
                else:
                    iface = p.iface if type(p) is Earlier else p._ref.iface
                    out.append((True, convert(iface, kind, member, value) if enums else value))
        return out

    def _one_by_one(self, calls: list, enums: bool) -> list:
        """batch() as lone calls, in order, an Earlier replaced by the result it names (for a service
        that does not take Earlier in batches)."""
        from .proxy import convert

        out: list = []

        def earlier(value, index: int):
            if type(value) is not Earlier:
                return value
            if value.index >= index or not out[value.index][0]:
                raise VBoxError(rc.E_INVALIDARG, f"batch entry {index} uses the result of entry "
                                                 f"{value.index}, which failed or does not run before it")
            return out[value.index][1]

        for index, (p, kind, member, args) in enumerate(calls):
            try:
                target = earlier(p, index)
                call_args = [earlier(a, index) for a in args]
                if not isinstance(target, Proxy):
                    raise VBoxError(rc.E_INVALIDARG, "call without a target object")
                value = self.call(target._ref, kind, member, call_args)
                out.append((True, convert(target._ref.iface, kind, member, value) if enums else value))
            except VBoxError as e:
                out.append((False, e))
        return out

    def _sliced(self, ref: Ref, member: str, args: list, kwargs: dict):
        """A call that waits up to its `timeout` ms (-1: without end) as a series of short waits, so
        that no single bus call outlives call_timeout_s() however long the wait is: IProgress's
        waitFor*Completion (until `completed`), IEventSource::getEvent (until an event comes)."""
        timeout = kwargs.pop("timeout", None)
        if timeout is None:
            pos = _SLICED[member]
            timeout = args.pop(pos) if len(args) > pos else -1
        timeout = int(timeout)
        if 0 <= timeout <= WAIT_SLICE_MS:
            return self._wait_call(ref, member, args, kwargs, timeout)
        deadline = None if timeout < 0 else _monotonic() + timeout / 1000
        while True:
            left = WAIT_SLICE_MS if deadline is None else int(min(WAIT_SLICE_MS,
                                                                  (deadline - _monotonic()) * 1000))
            if left <= 0:
                return None
            result = self._wait_call(ref, member, args, kwargs, left)
            if member == "get_event":
                if result is not None:
                    return result
            elif self.call(ref, GET, "completed"):
                return None

    def _wait_call(self, ref: Ref, member: str, args: list, kwargs: dict, timeout: int):
        msg = {"op": "call", "o": ref, "m": member, "k": CALL, "a": args + [timeout]}
        if kwargs:
            msg["w"] = kwargs
        return self._request(msg, timeout_s=call_timeout_s() + timeout / 1000)

    def _request(self, msg: dict, timeout_s: float | None = None, wait: bool = True):
        if self._closed:
            raise VBoxError(rc.E_UNEXPECTED, "The client connection is closed")
        with self._lock:
            self._seq += 1
            seq = self._seq
            msg["i"] = seq
            msg["s"], msg["c"], msg["q"], msg["t"] = self.sid, CALL_CHANNEL, seq, now_ms()
            try:
                body = self.codec.pack(msg)
            except TypeError as e:
                raise VBoxError(rc.E_INVALIDARG, str(e)) from None
            if len(body) > MAX_FRAME:
                raise VBoxError(rc.E_INVALIDARG, "The call is too large for the bus")
            sock = self._sock
            try:
                sock.send(sign(self.key, body)[0])
            except Exception as e:
                raise _gone(e) from None
            if not wait:
                return None
            start = _monotonic()
            stopped_since = None
            while True:
                try:
                    frame = sock.recv(POLL_MS / 1000)  # wakes every POLL_MS to check the service
                except Exception as e:
                    raise _gone(e) from None
                if frame is None:
                    if self._closed:   # torn down by another thread: it waits for us to let go
                        raise VBoxError(rc.NS_ERROR_CALL_FAILED, "The client connection is closed",
                                        "IVirtualBox", "")
                    now = _monotonic()
                    if timeout_s is not None and now - start >= timeout_s:
                        raise VBoxError(rc.NS_ERROR_CALL_FAILED,
                                        f"The VirtualBox service did not answer within {timeout_s:.0f} s",
                                        "IVirtualBox", "")
                    if msg["op"] != "hello":
                        state = _process_state(self.service_pid)
                        if state is None:
                            raise VBoxError(rc.NS_ERROR_CALL_FAILED,
                                            "The VirtualBox service (vboxsvc) has terminated",
                                            "IVirtualBox", "")
                        if state and state in "Tt":
                            stopped_since = stopped_since or now
                            if now - stopped_since >= STOPPED_GRACE_S:
                                raise VBoxError(rc.NS_ERROR_CALL_FAILED,
                                                f"The VirtualBox service (vboxsvc, pid "
                                                f"{self.service_pid}) is "
                                                "stopped and does not answer", "IVirtualBox", "")
                        else:
                            stopped_since = None
                    continue
                try:
                    reply = self.codec.unpack(verify(self.key, [frame]))
                except FrameError as e:
                    _log().warning("dropped a bad reply: %s", e)
                    continue
                if not isinstance(reply, dict) or reply.get("i") != seq:
                    continue  # a late answer to an abandoned request
                break
        if reply.get("op") == "err":
            raise VBoxError.from_wire(reply["e"])
        return reply.get("r")

    # --- references ----------------------------------------------------------------------
    def _to_ref(self, obj):
        if isinstance(obj, Proxy):
            return obj._ref
        if getattr(obj, "__interface__", None) is not None:
            self._ensure_callee()
            return self.table.ref(obj)
        return None

    def _from_ref(self, ref: Ref):
        if ref.owner == self.sid:
            obj = self.table.get(ref.oid)
            if obj is None:
                raise FrameError(f"reference to an object we no longer export ({ref.oid})")
            return obj
        return make_proxy(self, ref)

    # --- callee channel --------------------------------------------------------------------
    def _ensure_callee(self) -> None:
        if self._callee is None:
            with self._lock:
                if self._callee is None:
                    from .callee import Callee

                    self._callee = Callee(self)
            self._callee.start()

    def _teardown(self) -> None:
        if self._torn_down:
            return
        self._torn_down = True
        self._closed = True
        callee_left = False
        if self._callee is not None:
            callee_left = not self._callee.stop()
        if not self._lock.acquire(timeout=TEARDOWN_WAIT_S):
            # a call still blocks in the socket: leaving it open (and the context alive) costs a few
            # descriptors; closing it under that thread would abort the process
            _log().warning("a call still holds the bus connection: its socket is left open")
            return
        try:
            self._sock.close()
        finally:
            self._lock.release()
        _HELD.pop(id(self), None)
        if self._ctx is None:
            return
        if callee_left:
            # term() waits for every socket: let the callee thread close its own, never block here
            import threading

            threading.Thread(target=self._ctx.term, name="vbox-ctx-term", daemon=True).start()
        else:
            self._ctx.term()

    def __del__(self):
        # dropped without close(): free the sockets without waiting for anyone (no goodbye either;
        # the service notices the process when it exits)
        try:
            if not self._closed:
                self._teardown()
        except Exception:
            pass


def _gone(error: Exception) -> VBoxError:
    """What a caller sees when the call channel broke (pyzmq errors pass through unchanged)."""
    from .zmtp import ChannelClosed

    if not isinstance(error, ChannelClosed):
        raise error
    return VBoxError(rc.NS_ERROR_CALL_FAILED, "The VirtualBox service (vboxsvc) has terminated",
                     "IVirtualBox", "")


def _process_state(pid: int) -> str | None:
    """The one-letter state of a process ('R', 'S', 'T' for stopped, ...); None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b") ", 1)[1][:1].decode()
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"
    return None if state in ("Z", "X") else state
