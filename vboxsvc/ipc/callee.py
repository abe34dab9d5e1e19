"""The parts of a bus client that long-lived processes use: the call channel over pyzmq, and the
callee channel that serves calls on the objects a process exports (the VM process's IConsole,
event listeners). A short-lived client (the CLI) never imports this module.
"""

from __future__ import annotations

import os

from ..api import errors as rc
from ..api.errors import VBoxError
from .dispatcher import CALL, Deferred, invoke
from .proxy import Proxy
from .wire import CALLEE, HELLO_TIMEOUT_S, MAX_FRAME, POLL_MS, FrameError, now_ms, sign, verify


def _log():
    import logging

    return logging.getLogger("vboxsvc.client")


def zmq_socket(ctx, endpoint: str):
    import zmq

    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RECONNECT_IVL, 10)
    s.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME + 4096)
    s.setsockopt(zmq.RCVTIMEO, POLL_MS)
    s.connect(endpoint)
    return s


class ZmqChannel:
    """The call channel as a pyzmq DEALER socket (reconnects by itself)."""

    def __init__(self, ctx, endpoint: str):
        import zmq

        self._again = zmq.Again
        self._sock = zmq_socket(ctx, endpoint)

    def send(self, body: bytes) -> None:
        self._sock.send(body)

    def recv(self, timeout_s: float) -> bytes | None:
        try:
            return self._sock.recv()  # RCVTIMEO: wakes every POLL_MS
        except self._again:
            return None

    def close(self) -> None:
        self._sock.close(0)


class CallbackListener:
    __interface__ = "IEventListener"

    def __init__(self, callback):
        self._callback = callback

    def handle_event(self, event) -> None:  # an api.events.Event
        self._callback(event)


class Callee:
    """Serves calls on exported objects: one socket owned by one thread, work on a small pool."""

    WORKERS = 8

    def __init__(self, client):
        self.client = client
        self._ctx = client.zmq_context()
        import concurrent.futures  # only processes that export objects need a pool
        self._pool = concurrent.futures.ThreadPoolExecutor(self.WORKERS, thread_name_prefix="vbox-callee")
        self._events = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vbox-events")
        self._out: list[tuple] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._seq = 0
        import threading

        self._started = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop = False
        self._fd_lock = threading.Lock()
        self._loop_done = False
        self._orphaned = False
        self._thread = threading.Thread(target=self._run, name="vbox-callee-loop", daemon=True)

    def start(self) -> None:
        if not self._started.is_set():
            self._started.set()
            self._thread.start()
        self._ready.wait(HELLO_TIMEOUT_S)
        if self._error is not None:
            raise self._error

    def stop(self) -> bool:
        """Stop serving; True once the loop thread has closed its socket."""
        self._stop = True
        with self._fd_lock:
            wake = self._wake_w
        if wake >= 0:
            try:
                os.write(wake, b"x")
            except OSError:
                pass
        import threading

        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._events.shutdown(wait=False, cancel_futures=True)
        with self._fd_lock:
            done = self._loop_done or not self._started.is_set()
            if done:
                self._close_pipe()
            else:  # the loop still runs and reads the wake pipe: it closes the pipe when it ends
                self._orphaned = True
        return done

    def _close_pipe(self) -> None:
        # once only: a second close would hit whatever the numbers belong to by then (another
        # context's signaler, whose next poll then aborts the process)
        if self._wake_r < 0:
            return
        r, w, self._wake_r, self._wake_w = self._wake_r, self._wake_w, -1, -1
        os.close(r)
        os.close(w)

    def _send(self, sock, msg: dict) -> None:
        self._seq += 1
        msg["s"], msg["c"], msg["q"], msg["t"] = self.client.sid, CALLEE, self._seq, now_ms()
        try:
            body = self.client.codec.pack(msg)
        except TypeError as e:
            body = self.client.codec.pack({**{k: msg[k] for k in ("s", "c", "q", "t", "i")}, "op": "err",
                                           "e": [rc.E_FAIL, f"unsendable result: {e}", "", ""]})
        sock.send_multipart(sign(self.client.key, body))

    def _run(self) -> None:
        import zmq

        sock = zmq_socket(self._ctx, self.client.endpoint)
        try:
            self._send(sock, {"op": "hello", "i": 0, "pid": os.getpid(), "batch": True})
            if not sock.poll(int(HELLO_TIMEOUT_S * 1000)):
                raise VBoxError(rc.NS_ERROR_CALL_FAILED,
                                "The VirtualBox service did not open the callee channel")
            reply = self.client.codec.unpack(verify(self.client.key, sock.recv_multipart()))
            if reply.get("op") == "err":
                raise VBoxError.from_wire(reply["e"])
        except BaseException as e:
            self._error = e
            sock.close(0)
            with self._fd_lock:
                self._loop_done = True
                if self._orphaned:
                    self._close_pipe()
            self._ready.set()
            return
        self._ready.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        while not self._stop:
            for what, _ in poller.poll(500):
                if what is sock:
                    while True:
                        try:
                            parts = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._incoming(parts)
                else:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
            while self._out:
                self._send(sock, self._out.pop(0))
        sock.close(0)
        with self._fd_lock:
            self._loop_done = True
            if self._orphaned:
                self._close_pipe()

    def _incoming(self, parts) -> None:
        try:
            body = verify(self.client.key, parts)
        except FrameError as e:
            _log().warning("dropped a bad incoming frame: %s", e)
            return
        try:
            msg = self.client.codec.unpack(body)
        except FrameError as e:
            self._undecodable(body, e)
            return
        if not isinstance(msg, dict):
            return
        if msg.get("op") == "batch" and isinstance(msg.get("b"), list):
            self._pool.submit(self._work_batch, msg)
            return
        if msg.get("op") != "call":
            return
        # events go to listeners one at a time, in the order the service sent them
        target = msg.get("o")
        pool = self._events if getattr(target, "__interface__", None) == "IEventListener" else self._pool
        pool.submit(self._work, msg)

    def _undecodable(self, body: bytes, error: FrameError) -> None:
        """A signed call this process cannot decode (what a newer service sends, a reference to an
        object it no longer exports): answered with an error, so that the service's caller is told at
        once rather than when this process ends."""
        import msgpack

        try:
            msg = msgpack.unpackb(body, raw=False, strict_map_key=False,
                                  ext_hook=lambda c, d: msgpack.ExtType(c, d))
        except Exception:
            msg = None
        if not isinstance(msg, dict) or msg.get("op") not in ("call", "batch"):
            _log().warning("dropped a bad incoming call: %s", error)
            return
        text = f"The process owning the object cannot decode the call: {error}"
        self._answer({"op": "err", "i": msg.get("i"), "e": VBoxError(rc.E_INVALIDARG, text).to_wire()})

    def _work(self, msg: dict) -> None:
        cid = msg.get("i")
        try:
            out = {"op": "ret", "i": cid,
                   "r": self._run_one(msg.get("o"), msg.get("k", CALL), msg.get("m"), msg.get("a", ()),
                                      msg.get("w"))}
        except VBoxError as e:
            out = {"op": "err", "i": cid, "e": e.to_wire()}
        self._answer(out)

    def _work_batch(self, msg: dict) -> None:
        """Several calls the service forwarded in one frame (a batch's entries on our objects), run in
        order, each as the lone call would be; the answer lists [0, result] or [1, error] per entry."""
        results = []
        for entry in msg["b"]:
            try:
                if not isinstance(entry, list) or len(entry) != 4:
                    raise VBoxError(rc.E_INVALIDARG, "malformed batch entry")
                results.append([0, self._run_one(entry[0], entry[1], entry[2], entry[3], None)])
            except VBoxError as e:
                results.append([1, e.to_wire()])
        self._answer({"op": "ret", "i": msg.get("i"), "r": results})

    @staticmethod
    def _run_one(target, kind, member, args, kwargs):
        if target is None or isinstance(target, Proxy):
            raise VBoxError(rc.E_INVALIDARG, "call on an object this process does not export")
        result = invoke(target, kind, member, args, kwargs)
        if isinstance(result, Deferred):
            import threading

            done = threading.Event()
            box = []
            result.add_callback(lambda v, e: (box.append((v, e)), done.set()))
            done.wait()
            value, err = box[0]
            if err is not None:
                raise err
            result = value
        return result

    def _answer(self, out: dict) -> None:
        self._out.append(out)
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
