"""The service side of the bus: one ROUTER socket, one thread, no business logic.

It verifies frames (signature, size, replay), keeps track of connected clients (a session
id per client process, its call and callee channels, its PID watched through a pidfd so a
death is noticed at once), runs calls on the service's own objects through the dispatcher,
forwards calls on objects owned by clients (IConsole in the VM process) to their owner and
routes the answer back, and never blocks: long results come back as Deferreds. Other
threads hand work to the loop with `post`. The service plugs in through a `Host`.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import logging
import os
import resource
import time
from collections.abc import Callable

import zmq

from ..api import errors as rc
from ..api.errors import VBoxError
from . import dispatcher as dsp
from .dispatcher import Deferred, ObjectTable, RemoteRef
from .wire import (
    CALL,
    CALLEE,
    MAX_FRAME,
    Codec,
    Earlier,
    FrameError,
    Ref,
    ReplayGuard,
    contains_earlier,
    now_ms,
    sign,
    verify,
)

log = logging.getLogger("vboxsvc.bus")

SERVICE_SID = b"\0" * 16
PID_MAX = 1 << 22               # Linux's upper bound for pid_max
FDS_PER_CLIENT = 4              # a pidfd, the call and callee connections, and some slack
FDS_RESERVED = 256              # settings files, images, logs, the VM processes' pipes
TRACEBACKS_PER_MINUTE = 10
MAX_BATCH = 4096                # calls in one batch frame
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
_NOBLOCK = int(zmq.NOBLOCK)


class ClientInfo:
    """One connected client process (one `connect()`)."""

    __slots__ = ("sid", "pid", "pidfd", "call_id", "callee_id", "callee_batch", "token", "name", "alive",
                 "data")

    def __init__(self, sid: bytes, pid: int, token: str | None, name: str):
        self.sid, self.pid, self.token, self.name = sid, pid, token, name
        self.pidfd: int | None = None
        self.call_id: bytes | None = None
        self.callee_id: bytes | None = None
        self.callee_batch = False   # its callee channel takes batches (said so in its hello)
        self.alive = True
        self.data: dict = {}  # the host's per-client bookkeeping


class Host:
    """What the service provides to the bus."""

    def on_hello(self, client: ClientInfo) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def on_client_gone(self, client: ClientInfo) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class _Timer:
    __slots__ = ("when", "fn", "cancelled", "seq")

    def __init__(self, when, fn, seq):
        self.when, self.fn, self.seq, self.cancelled = when, fn, seq, False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)


class BusServer:
    def __init__(self, key: bytes, host: Host, table: ObjectTable | None = None):
        self.key = key
        self.host = host
        self.table = table or ObjectTable(b"")
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME + 4096)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 100_000)
        # inbound: a full per-peer queue makes ZeroMQ stop reading that peer (back-pressure, nothing
        # lost), so a flooding client costs at most this many frames of memory
        self.sock.setsockopt(zmq.RCVHWM, 1000)
        self.codec = Codec(self._to_ref, self._from_ref)
        self.guard = ReplayGuard()
        self.clients: dict[bytes, ClientInfo] = {}
        self._by_pidfd: dict[int, ClientInfo] = {}
        self._seq = itertools.count(1)
        self._fwd_ids = itertools.count(1)
        self._pending: dict[int, tuple[Deferred, bytes]] = {}   # forwarded call id -> (deferred, owner sid)
        self._timers: list[_Timer] = []
        self._timer_seq = itertools.count()
        self._posted: list[Callable] = []
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._extra_fds: dict[int, Callable[[], None]] = {}
        self._fds_changed = False
        self._running = False
        self.stats = {"frames": 0, "dropped": 0, "refused": 0, "failures": 0}
        self.max_clients = client_cap()
        self._failure_window = (0.0, 0)     # (minute start, tracebacks logged in it)
        # the host's check of each decoded frame while it is starting: False when the frame needs what
        # is not ready yet; the host then makes it ready (its objects may change) before answering
        self.admit: Callable[[dict], bool] | None = None

    # --- transport setup -------------------------------------------------------------
    def bind(self, endpoint: str) -> None:
        self.sock.bind(endpoint)

    def adopt(self, fd: int, endpoint: str) -> None:
        """Use a listening socket passed by systemd (LISTEN_FDS) instead of binding a new one."""
        self.sock.setsockopt(zmq.USE_FD, fd)
        self.sock.bind(endpoint)

    # --- references ------------------------------------------------------------------
    def _to_ref(self, obj) -> Ref | None:
        if getattr(obj, "__interface__", None) is None:
            return None
        return self.table.ref(obj)

    def _from_ref(self, ref: Ref):
        if ref.owner == b"":
            obj = self.table.get(ref.oid)
            if obj is None:
                raise _UnknownObject(ref)
            return obj
        return RemoteRef(ref.owner, ref.oid, ref.iface)

    # --- loop helpers usable by the host -----------------------------------------------
    def post(self, fn: Callable[[], None]) -> None:
        """Run fn on the loop thread (thread-safe)."""
        self._posted.append(fn)
        os.eventfd_write(self._wake_fd, 1)

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> _Timer:
        t = _Timer(time.monotonic() + delay_s, fn, next(self._timer_seq))
        heapq.heappush(self._timers, t)
        return t

    def watch_fd(self, fd: int, fn: Callable[[], None]) -> None:
        self._extra_fds[fd] = fn
        self._fds_changed = True

    def unwatch_fd(self, fd: int) -> None:
        self._extra_fds.pop(fd, None)
        self._fds_changed = True

    def stop(self) -> None:
        self._running = False
        self.post(lambda: None)

    def call_remote(self, target: Ref, kind: int, member: str, args=(), kwargs=None) -> Deferred:
        """Call a member of an object living in a client process; the Deferred gets the answer."""
        d = Deferred()
        owner = self.clients.get(target.owner)
        if owner is None or not owner.alive or owner.callee_id is None:
            d.fail(VBoxError(rc.NS_ERROR_CALL_FAILED,
                             f"The process owning this {target.iface} object is gone", target.iface, ""))
            return d
        fid = next(self._fwd_ids)
        self._pending[fid] = (d, owner.sid)
        msg = {"op": "call", "i": fid, "o": Ref(target.owner, target.oid, target.iface),
               "m": member, "k": kind, "a": list(args)}
        if kwargs:
            msg["w"] = kwargs
        self._send(owner.callee_id, msg)
        return d

    def call_remote_batch(self, owner_sid: bytes, entries: list) -> Deferred:
        """Several calls on objects of one client process in one frame (entries as in a batch:
        [Ref, kind, member, args]); the Deferred gets [[0, result] or [1, error], ...] in order."""
        d = Deferred()
        owner = self.clients.get(owner_sid)
        if owner is None or not owner.alive or owner.callee_id is None or not owner.callee_batch:
            d.fail(VBoxError(rc.NS_ERROR_CALL_FAILED, "The process owning these objects is gone"))
            return d
        fid = next(self._fwd_ids)
        self._pending[fid] = (d, owner.sid)
        self._send(owner.callee_id, {"op": "batch", "i": fid, "b": [
            [Ref(t.owner, t.oid, t.iface), kind, member, list(args)] for t, kind, member, args in entries]})
        return d

    # --- sending ---------------------------------------------------------------------
    def _send(self, ident: bytes, msg: dict) -> None:
        msg["s"], msg["c"], msg["q"], msg["t"] = SERVICE_SID, CALL, next(self._seq), now_ms()
        try:
            body = self.codec.pack(msg)
        except (TypeError, ValueError) as e:
            log.error("unsendable reply: %s", e)
            i = msg.get("i", 0)
            body = self.codec.pack({"op": "err", "i": i, "s": SERVICE_SID, "c": CALL, "q": next(self._seq),
                                    "t": now_ms(), "e": [rc.E_FAIL, f"unsendable result: {e}", "", ""]})
        if len(body) > MAX_FRAME:
            body = self.codec.pack({"op": "err", "i": msg.get("i", 0), "s": SERVICE_SID, "c": CALL,
                                    "q": next(self._seq), "t": now_ms(),
                                    "e": [rc.E_INVALIDARG, "The result is too large for the bus", "", ""]})
        try:
            self.sock.send(ident, _SNDMORE_NOBLOCK)
            self.sock.send(sign(self.key, body)[0], _NOBLOCK)
        except zmq.ZMQError as e:  # peer gone (ROUTER_MANDATORY) or its queue is full
            log.debug("cannot send to %s: %s", ident.hex(), e)

    def _reply(self, ident: bytes, cid, value=None, error: VBoxError | None = None) -> None:
        if error is not None:
            self._send(ident, {"op": "err", "i": cid, "e": error.to_wire()})
        else:
            self._send(ident, {"op": "ret", "i": cid, "r": value})

    # --- receiving -------------------------------------------------------------------
    def _on_frame(self, parts: list[bytes]) -> None:
        self.stats["frames"] += 1
        ident = parts[0]
        try:
            body = verify(self.key, parts[1:])
        except FrameError as e:
            self.stats["dropped"] += 1
            log.debug("dropped frame from %s: %s", ident.hex(), e)
            return
        try:
            msg = self.codec.unpack(body)
            if self.admit is not None and not self.admit(msg):
                msg = self.codec.unpack(body)   # the host made ready what the frame needs: decode anew
        except _UnknownObject:
            # a signed frame naming an object we do not have: still check who sent it
            self._undecodable_frame(ident, body, "The object reference is not valid (the object does not "
                                                 "exist or was released)")
            return
        except FrameError as e:
            # signed, but holding what this service does not know (a newer client's extension type, a
            # malformed reference): the caller is told at once rather than left to its time-out
            self._undecodable_frame(ident, body, f"The VirtualBox service cannot decode the call: {e}")
            return
        try:
            if not isinstance(msg, dict):
                raise FrameError("body is not a map")
            sid, chan = self.guard.check(msg)
        except FrameError as e:
            self.stats["dropped"] += 1
            log.debug("dropped frame from %s: %s", ident.hex(), e)
            return
        op = msg.get("op")
        client = self.clients.get(sid)
        if op == "hello":
            if self._hello(ident, sid, chan, msg, client):
                self.guard.commit((sid, chan), msg["q"])
            return
        if client is None or not client.alive or ident != (client.call_id if chan == CALL
                                                           else client.callee_id):
            self.stats["dropped"] += 1
            log.debug("dropped %r frame from unknown session %s", op, sid.hex())
            return
        self.guard.commit((sid, chan), msg["q"])
        if op == "call":
            self._call(ident, client, msg)
        elif op == "batch":
            self._batch(ident, client, msg)
        elif op in ("ret", "err") and chan == CALLEE:
            self._answer(client, msg)
        elif op == "bye":
            self._reply(ident, msg.get("i"))
            self.client_gone(client)
        else:
            self._reply(ident, msg.get("i"), error=VBoxError(rc.E_INVALIDARG, f"unknown operation {op!r}"))

    def _undecodable_frame(self, ident: bytes, body: bytes, text: str) -> None:
        # decode again with every extension value left as it is, to answer the caller (a known client
        # on its own connection, with a fresh frame) with a clear error; anything else is dropped
        import msgpack
        try:
            msg = msgpack.unpackb(body, raw=False, strict_map_key=False,
                                  ext_hook=lambda c, d: msgpack.ExtType(c, d))
            sid, _chan = self.guard.check(msg)
        except Exception:
            self.stats["dropped"] += 1
            return
        client = self.clients.get(sid)
        if client is not None and ident in (client.call_id, client.callee_id) and msg.get("op") in (
                "call", "batch"):
            self.guard.commit((sid, msg["c"]), msg["q"])
            self._reply(ident, msg.get("i"), error=VBoxError(rc.E_INVALIDARG, text))
        else:
            self.stats["dropped"] += 1

    def _hello(self, ident: bytes, sid: bytes, chan: int, msg: dict, client: ClientInfo | None) -> bool:
        pid, cid = msg.get("pid"), msg.get("i")
        if client is None:
            if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < PID_MAX:
                self._reply(ident, cid, error=VBoxError(rc.E_INVALIDARG, "hello without a valid pid"))
                return False
            if len(self.clients) >= self.max_clients:
                # refuse clearly, before the client costs a pidfd: the one over the cap is told why
                self.stats["refused"] += 1
                log.debug("refused a client (pid %d): %d clients connected", pid, len(self.clients))
                self._reply(ident, cid, error=VBoxError(
                    rc.E_ACCESSDENIED, f"The VirtualBox service has too many clients ({self.max_clients}); "
                                       "try again later"))
                return False
            token = msg.get("token") if isinstance(msg.get("token"), str) else None
            name = msg.get("name") if isinstance(msg.get("name"), str) else ""
            client = ClientInfo(sid, pid, token, name[:200])
            try:
                client.pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                self._reply(ident, cid, error=VBoxError(rc.E_ACCESSDENIED, f"no process with pid {pid}"))
                return False
            except OSError as e:
                if e.errno == errno.EMFILE or e.errno == errno.ENFILE:
                    self.stats["refused"] += 1
                    self._reply(ident, cid, error=VBoxError(
                        rc.E_ACCESSDENIED,
                        "The VirtualBox service is out of file descriptors; try again later"))
                    return False
                client.pidfd = None  # no pidfd support: the periodic liveness check covers it
            if client.pidfd is not None:
                self._by_pidfd[client.pidfd] = client
                self._fds_changed = True
            self.clients[sid] = client
        elif not client.alive or pid != client.pid:
            self._reply(ident, cid, error=VBoxError(rc.E_ACCESSDENIED, "session id already in use"))
            return False
        if chan == CALL:
            if client.call_id is not None and client.call_id != ident:
                self._reply(ident, cid, error=VBoxError(rc.E_ACCESSDENIED, "session id already in use"))
                return False
            client.call_id = ident
            try:
                info = self.host.on_hello(client)
            except VBoxError as e:
                self._reply(ident, cid, error=e)
                self.client_gone(client)
                return False
            # what this service's bus takes beyond the first version's: a client newer than the
            # service (a service left running across an upgrade) must not send it anything else
            self._reply(ident, cid, dict(info, caps=CAPABILITIES))
            return True
        else:
            if client.callee_id is not None and client.callee_id != ident:
                self._reply(ident, cid, error=VBoxError(rc.E_ACCESSDENIED, "callee channel already open"))
                return False
            client.callee_id = ident
            client.callee_batch = msg.get("batch") is True
            self._reply(ident, cid, {})
            return True

    def _call(self, ident: bytes, client: ClientInfo, msg: dict) -> None:
        cid = msg.get("i")
        target = msg.get("o")
        kind = msg.get("k", dsp.CALL)
        args = msg.get("a", ())
        kwargs = msg.get("w")
        member = msg.get("m")
        if (not isinstance(args, (list, tuple)) or (kwargs is not None and not isinstance(kwargs, dict))
                or not isinstance(member, str) or not isinstance(kind, int)
                or (kwargs and not all(isinstance(k, str) for k in kwargs))):
            self._reply(ident, cid, error=VBoxError(rc.E_INVALIDARG, "malformed call (member, kind, "
                                                                    "arguments or keyword arguments)"))
            return
        if isinstance(target, RemoteRef):
            if target.owner == client.sid:
                self._reply(ident, cid, error=VBoxError(rc.E_INVALIDARG, "call on your own object"))
                return
            d = self.call_remote(target, kind, member, args if isinstance(args, list) else [], kwargs)
            d.add_callback(lambda v, e: self._reply(ident, cid, v, e) if client.alive else None)
            return
        if target is None or getattr(target, "__interface__", None) is None:
            self._reply(ident, cid, error=VBoxError(rc.E_INVALIDARG, "call without a target object"))
            return
        _current.client = client
        try:
            result = dsp.invoke(target, kind, member, args, kwargs)
        except VBoxError as e:
            self._reply(ident, cid, error=e)
            return
        finally:
            _current.client = None
        if isinstance(result, Deferred):
            result.add_callback(lambda v, e: self._reply(ident, cid, v, e) if client.alive else None)
        else:
            self._reply(ident, cid, result)

    def _batch(self, ident: bytes, client: ClientInfo, msg: dict) -> None:
        """Many independent calls in one frame (a client reading what it prints in one round trip).

        Each entry is [target, kind, member, args] and runs exactly as the lone call would; the
        answer lists [0, result] or [1, error] per entry, in order, once every entry is done. An
        entry's target or argument may be an Earlier: the result of an entry before it that has
        answered (entries on the service's objects run in order), as when a client finds a
        machine and reads it in the same batch.
        """
        cid, calls = msg.get("i"), msg.get("b")
        if not isinstance(calls, list) or len(calls) > MAX_BATCH:
            self._reply(ident, cid, error=VBoxError(rc.E_INVALIDARG, f"malformed batch (a list of at most "
                                                                    f"{MAX_BATCH} calls)"))
            return
        out: list = [None] * len(calls)
        waiting = [1]  # the entries still running, plus one until every entry has been started

        def done(index: int, value, error: VBoxError | None) -> None:
            out[index] = [1, error.to_wire()] if error is not None else [0, value]
            finish()

        def finish() -> None:
            waiting[0] -= 1
            if waiting[0] == 0 and client.alive:
                self._reply(ident, cid, out)

        remote: dict[bytes, list[tuple[int, list]]] = {}  # owner -> its entries (index, entry)
        for index, entry in enumerate(calls):
            if (not isinstance(entry, list) or len(entry) != 4 or not isinstance(entry[1], int)
                    or not isinstance(entry[2], str) or not isinstance(entry[3], list)):
                out[index] = [1, VBoxError(rc.E_INVALIDARG, "malformed batch entry").to_wire()]
                continue
            target, kind, member, args = entry
            if type(target) is Earlier or (args and any(type(a) is Earlier for a in args)):
                try:
                    target, args = _earlier(target, index, out), [_earlier(a, index, out) for a in args]
                except VBoxError as e:
                    out[index] = [1, e.to_wire()]
                    continue
                entry = [target, kind, member, args]
            if isinstance(target, RemoteRef):
                if target.owner == client.sid:
                    out[index] = [1, VBoxError(rc.E_INVALIDARG, "call on your own object").to_wire()]
                elif contains_earlier(args):  # nested in an argument: meaningless to the other process
                    out[index] = [1, VBoxError(rc.E_INVALIDARG, "a batch result reference is valid only "
                                                                "as an entry's target or argument").to_wire()]
                else:
                    waiting[0] += 1
                    remote.setdefault(target.owner, []).append((index, entry))
                continue
            if target is None or getattr(target, "__interface__", None) is None:
                out[index] = [1, VBoxError(rc.E_INVALIDARG, "call without a target object").to_wire()]
                continue
            _current.client = client
            try:
                result = dsp.invoke(target, kind, member, args, None)
            except VBoxError as e:
                out[index] = [1, e.to_wire()]
                continue
            finally:
                _current.client = None
            if isinstance(result, Deferred):
                waiting[0] += 1
                result.add_callback(lambda v, e, i=index: done(i, v, e))
            else:
                out[index] = [0, result]
        for owner, entries in remote.items():
            self._forward_batch(owner, entries, done)
        finish()

    def _forward_batch(self, owner_sid: bytes, entries: list, done) -> None:
        """A batch's entries on objects of another process: one frame to it when it takes batches
        (a VM process answering a poller's showvminfo), else one forwarded call per entry."""
        owner = self.clients.get(owner_sid)
        if len(entries) == 1 or owner is None or not owner.callee_batch:
            for index, (target, kind, member, args) in entries:
                self.call_remote(target, kind, member, args).add_callback(lambda v, e, i=index: done(i, v, e))
            return

        def answered(results, error: VBoxError | None) -> None:
            if error is None and not (isinstance(results, list) and len(results) == len(entries)
                                      and all(isinstance(r, list) and len(r) == 2 for r in results)):
                error = VBoxError(rc.E_FAIL, "malformed batch answer from the object's owner")
            for n, (index, _entry) in enumerate(entries):
                if error is not None:
                    done(index, None, error)
                    continue
                failed, value = results[n]
                if failed:
                    try:
                        value = VBoxError.from_wire(value)
                    except (TypeError, ValueError):
                        value = VBoxError(rc.E_FAIL, "malformed error from the object's owner")
                    done(index, None, value)
                else:
                    done(index, value, None)

        self.call_remote_batch(owner_sid, [entry for _index, entry in entries]).add_callback(answered)

    def _answer(self, client: ClientInfo, msg: dict) -> None:
        entry = self._pending.pop(msg.get("i"), None)
        if entry is None:
            return
        d, _owner = entry
        if msg.get("op") == "ret":
            d.resolve(msg.get("r"))
        else:
            try:
                d.fail(VBoxError.from_wire(msg.get("e")))
            except (TypeError, ValueError):
                d.fail(VBoxError(rc.E_FAIL, "malformed error from the object's owner"))

    # --- client lifecycle ----------------------------------------------------------------
    def client_gone(self, client: ClientInfo) -> None:
        if not client.alive:
            return
        client.alive = False
        self.clients.pop(client.sid, None)
        self.guard.forget(client.sid)
        if client.pidfd is not None:
            self._by_pidfd.pop(client.pidfd, None)
            self._fds_changed = True
            os.close(client.pidfd)
            client.pidfd = None
        for fid, (d, owner) in list(self._pending.items()):
            if owner == client.sid:
                self._pending.pop(fid, None)
                d.fail(VBoxError(rc.NS_ERROR_CALL_FAILED, "The process owning the object has terminated"))
        try:
            self.host.on_client_gone(client)
        except Exception:
            log.exception("on_client_gone failed")

    def _check_liveness(self) -> None:
        # fallback for clients without a pidfd, and housekeeping
        for client in list(self.clients.values()):
            if client.pidfd is None:
                try:
                    os.kill(client.pid, 0)
                except ProcessLookupError:
                    self.client_gone(client)
                except PermissionError:
                    pass
        self.guard.purge()
        self.call_later(0.5, self._check_liveness)

    # --- the loop --------------------------------------------------------------------
    def run(self) -> None:
        self._running = True
        self.call_later(0.5, self._check_liveness)
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self._wake_fd, zmq.POLLIN)
        registered: set[int] = set()
        sock = self.sock
        # pyzmq's constants are enum flags whose operators cost microseconds: use plain ints here
        recv, NOBLOCK = sock.recv_multipart, int(zmq.NOBLOCK)
        EVENTS, POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
        while self._running:
            if len(registered) != len(self._by_pidfd) + len(self._extra_fds) or self._fds_changed:
                self._fds_changed = False
                fds = set(self._by_pidfd) | set(self._extra_fds)
                for fd in registered - fds:
                    poller.unregister(fd)
                for fd in fds - registered:
                    poller.register(fd, zmq.POLLIN)
                registered = fds
            timeout = None
            if self._timers:
                timeout = max(0.0, (self._timers[0].when - time.monotonic()) * 1000)
            events = poller.poll(timeout)
            for what, _ev in events:
                if what is sock:
                    # drain what is queued, bounded so timers and deaths still get their turn; asking
                    # EVENTS is much cheaper than the exception an empty non-blocking recv raises
                    for _ in range(256):
                        try:
                            parts = recv(NOBLOCK)
                        except zmq.Again:
                            break
                        try:
                            self._on_frame(parts)
                        except Exception:
                            self._failure("frame handling failed")
                        if not sock.get(EVENTS) & POLLIN:
                            break
                elif what == self._wake_fd:
                    try:
                        os.eventfd_read(self._wake_fd)
                    except BlockingIOError:
                        pass
                elif what in self._by_pidfd:
                    self.client_gone(self._by_pidfd[what])
                elif what in self._extra_fds:
                    self._run_safely(self._extra_fds[what])
            while self._posted:
                self._run_safely(self._posted.pop(0))
            now = time.monotonic()
            while self._timers and self._timers[0].when <= now:
                t = heapq.heappop(self._timers)
                if not t.cancelled:
                    self._run_safely(t.fn)

    def _run_safely(self, fn) -> None:
        try:
            fn()
        except Exception:
            self._failure("loop callback failed")

    def _failure(self, what: str) -> None:
        """Log an unexpected exception; a flood of them gets a few tracebacks a minute, then counts."""
        self.stats["failures"] += 1
        now = time.monotonic()
        start, n = self._failure_window
        if now - start >= 60:
            if n > TRACEBACKS_PER_MINUTE:
                log.error("%d more failures in the last minute (tracebacks not logged)",
                          n - TRACEBACKS_PER_MINUTE)
            start, n = now, 0
        n += 1
        self._failure_window = (start, n)
        if n <= TRACEBACKS_PER_MINUTE:
            log.exception(what)

    def close(self) -> None:
        for client in list(self.clients.values()):
            if client.pidfd is not None:
                os.close(client.pidfd)
                client.pidfd = None
        self.sock.close(0)
        self.ctx.term()
        os.close(self._wake_fd)


CAPABILITIES = ["earlier"]  # batch entries may use the results of earlier entries (wire.Earlier)


def _earlier(value, index: int, out: list):
    """`value` of batch entry `index`, an Earlier replaced by that entry's result (E_INVALIDARG when
    it names no entry before this one, or one that failed or is still running)."""
    if type(value) is not Earlier:
        return value
    j = value.index
    if j >= index:
        raise VBoxError(rc.E_INVALIDARG, f"batch entry {index} uses the result of entry {j}, which does "
                                         "not run before it")
    got = out[j]
    if got is None:
        raise VBoxError(rc.E_INVALIDARG, f"batch entry {index} uses the result of entry {j}, which has "
                                         "not finished (it waits, or runs in another process)")
    if got[0]:
        raise VBoxError(rc.E_INVALIDARG, f"batch entry {index} uses the result of entry {j}, which failed")
    return got[1]


class _UnknownObject(FrameError):
    def __init__(self, ref: Ref):
        super().__init__(f"unknown object {ref!r}")


class _Current:
    """The client whose call is being run (set by the loop around each dispatch)."""
    client: ClientInfo | None = None


_current = _Current()


def current_client() -> ClientInfo | None:
    return _current.client


def client_cap() -> int:
    """How many clients the service takes: VBOXPY_MAX_CLIENTS, else what the descriptor limit
    (raised to the hard limit at start) allows with room for the service's own files."""
    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        soft = 1024
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    cap = max(16, (soft - FDS_RESERVED) // FDS_PER_CLIENT)
    env = os.environ.get("VBOXPY_MAX_CLIENTS", "")
    if env.isdigit() and int(env) > 0:
        cap = min(cap, int(env))
    return cap


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError):
            pass
    return soft


def new_session_id() -> bytes:
    return os.urandom(16)


