"""A DEALER end of the bus in plain Python (ZMTP 3.0 over the service's Unix socket), for short-lived clients.

A `vboxmanage` run makes a handful of calls and exits; loading pyzmq and starting its I/O
thread costs it more than the calls. This channel speaks the ZeroMQ wire protocol the
service's ROUTER socket expects (ZMTP 3.0, RFC 23: the 64-byte greeting, the NULL
mechanism's READY command with Socket-Type DEALER, then length-prefixed frames) on a
blocking Unix socket, with the same bound on frame sizes. Frames and their signatures are
the bus's own (wire.py), checked and answered by the service exactly as those of the pyzmq
sockets long-lived processes use.
"""

from __future__ import annotations

import _socket
import time

FLAG_MORE, FLAG_LONG, FLAG_COMMAND = 0x01, 0x02, 0x04
GREETING = (b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\0") + b"\x00" + b"\0" * 31)
GREETING_BYTES = 64
CONNECT_TIMEOUT_S = 5.0


class ChannelClosed(Exception):
    """The service closed the connection, never accepted it, or broke the protocol."""


def _property(name: bytes, value: bytes) -> bytes:
    return bytes((len(name),)) + name + len(value).to_bytes(4, "big") + value


def _frame(body: bytes, flags: int = 0) -> bytes:
    if len(body) > 255:
        return bytes((flags | FLAG_LONG,)) + len(body).to_bytes(8, "big") + body
    return bytes((flags, len(body))) + body


class ZmtpChannel:
    """One connection to a ZeroMQ ROUTER socket at `path`, as a DEALER; send() and recv(timeout)."""

    def __init__(self, path: str, max_frame: int):
        self.path = path
        self.max_frame = max_frame
        self._sock = None
        self._buf = bytearray()
        self._ready = False
        self._skipping = False
        self._peer_ready = False

    def _connect(self) -> None:
        """Greetings first; our READY only once the peer's READY came (ZeroMQ reads our greeting
        before it answers, and drops a peer whose READY is already there with the greeting)."""
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self._sock, self._buf, self._ready, self._skipping = sock, bytearray(), False, False
        self._peer_ready = False
        try:
            sock.settimeout(CONNECT_TIMEOUT_S)
            sock.connect(self.path)
            sock.sendall(GREETING)
            while True:
                if self._take() is not None:
                    raise ChannelClosed("a message before the handshake")
                if self._peer_ready:
                    break
                chunk = sock.recv(4096)
                if not chunk:
                    raise ChannelClosed("the service closed the connection during the handshake")
                self._buf += chunk
            sock.sendall(_frame(b"\x05READY" + _property(b"Socket-Type", b"DEALER"), FLAG_COMMAND))
        except (OSError, ChannelClosed) as e:
            self.close()
            raise ChannelClosed(f"cannot connect to {self.path}: {e}") from None

    def send(self, body: bytes) -> None:
        if self._sock is None:
            self._connect()
        try:
            self._sock.settimeout(None)
            self._sock.sendall(_frame(body))
        except OSError as e:
            self.close()
            raise ChannelClosed(f"send failed: {e}") from None

    def recv(self, timeout_s: float) -> bytes | None:
        """The next message (one frame); None when nothing came within `timeout_s`."""
        if self._sock is None:
            raise ChannelClosed("not connected")
        deadline = time.monotonic() + timeout_s      # heartbeats arriving meanwhile do not extend it
        while True:
            message = self._take()
            if message is not None:
                return message
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                self._sock.settimeout(left)
                chunk = self._sock.recv(65536)
            except TimeoutError:
                return None
            except OSError as e:
                self.close()
                raise ChannelClosed(f"receive failed: {e}") from None
            if not chunk:
                self.close()
                raise ChannelClosed("the service closed the connection")
            self._buf += chunk

    def _take(self) -> bytes | None:
        """One complete message out of the buffer (greeting and commands consumed on the way)."""
        buf = self._buf
        while True:
            if not self._ready:
                if len(buf) < GREETING_BYTES:
                    return None
                if buf[0] != 0xFF or buf[9] != 0x7F or buf[10] < 3 or bytes(buf[12:16]) != b"NULL":
                    self.close()
                    raise ChannelClosed("the peer does not speak ZMTP 3 with the NULL mechanism")
                del buf[:GREETING_BYTES]
                self._ready = True
            if len(buf) < 2:
                return None
            flags = buf[0]
            if flags & FLAG_LONG:
                if len(buf) < 9:
                    return None
                size, start = int.from_bytes(buf[1:9], "big"), 9
            else:
                size, start = buf[1], 2
            if size > self.max_frame:
                self.close()
                raise ChannelClosed(f"oversized frame ({size} bytes)")
            if len(buf) < start + size:
                return None
            body = bytes(buf[start:start + size])
            del buf[:start + size]
            if flags & FLAG_COMMAND:
                self._command(body)
                continue
            if flags & FLAG_MORE or self._skipping:  # the service sends one-part messages: drop others whole
                self._skipping = bool(flags & FLAG_MORE)
                continue
            return body

    def _command(self, body: bytes) -> None:
        name = body[1:1 + body[0]] if body else b""
        if name == b"READY":
            self._peer_ready = True
            return
        if name == b"PING":  # ZMTP 3.1 heartbeat: answer with the context it carries
            context = body[1 + 4 + 2:]
            try:
                self._sock.sendall(_frame(b"\x04PONG" + context, FLAG_COMMAND))
            except OSError:
                pass
            return
        if name == b"ERROR":
            self.close()
            raise ChannelClosed("the service refused the connection")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
