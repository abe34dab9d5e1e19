"""The host side of a serial port, as VirtualBox's port modes (PortMode) define it.

The UART runs on the VM's device thread and must never block on the host: `write()` only
appends to a bounded buffer (overflow is counted and dropped), and `read()` only takes what
an I/O thread has already received.  Input is flow-controlled: when the input buffer is full
the I/O thread stops reading the socket, so the peer waits instead of the guest losing bytes.
The I/O thread calls the notify callback (on its own thread) when input arrives; the UART turns
that into work on the device thread.

Modes (VirtualBox `PortMode` values):
    Disconnected (0)   output dropped, no input
    HostPipe (1)       Unix socket at `path`: server=True listens, server=False connects
    HostDevice (2)     a host character device (tty, pty) opened read/write
    RawFile (3)        output written to `path` (created/truncated), no input
    TCP (4)            server=True listens on `[host:]port` (host defaults to 127.0.0.1),
                       server=False connects to `host:port`
A server accepts one client at a time (later connections are closed at once, as VirtualBox
does); output while no client is connected is dropped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import stat
import termios
import threading
import tty
from collections.abc import Callable
from enum import IntEnum

INPUT_LIMIT = 64 * 1024
OUTPUT_LIMIT = 1024 * 1024


class PortMode(IntEnum):
    Disconnected = 0
    HostPipe = 1
    HostDevice = 2
    RawFile = 3
    TCP = 4


class SerialBackendError(Exception):
    """The host side of a serial port could not be set up."""


class SerialBackend:
    """Base: output dropped, no input (also VirtualBox's Disconnected mode)."""

    mode = PortMode.Disconnected

    def __init__(self) -> None:
        self._notify: Callable[[], None] | None = None
        self.dropped = 0        # output bytes thrown away (no peer, or peer too slow)

    def set_input_notify(self, callback: Callable[[], None] | None) -> None:
        """callback() runs on the backend's thread whenever new input becomes readable."""
        self._notify = callback

    @property
    def has_input(self) -> bool:
        return False

    def read(self, max_bytes: int) -> bytes:
        return b""

    def write(self, data: bytes) -> None:
        self.dropped += len(data)

    def close(self) -> None:
        pass

    def __enter__(self) -> SerialBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DisconnectedBackend(SerialBackend):
    pass


class RawFileBackend(SerialBackend):
    """Guest output goes to a host file, line-buffered so a reader sees whole lines soon."""

    mode = PortMode.RawFile

    def __init__(self, path: str | os.PathLike[str]):
        super().__init__()
        try:
            self._file = open(path, "wb", buffering=0)
        except OSError as e:
            raise SerialBackendError(f"cannot open serial output file {os.fspath(path)!r}: {e}") from e
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        if self._file.closed:
            self.dropped += len(data)
            return
        self._buf += data
        if b"\n" in data or len(self._buf) >= 4096:
            self.flush()

    def flush(self) -> None:
        if self._buf and not self._file.closed:
            try:
                self._file.write(self._buf)
            except OSError:
                self.dropped += len(self._buf)
            self._buf.clear()

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()


class _StreamBackend(SerialBackend):
    """One I/O thread per port moving bytes between bounded buffers and a connected stream."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._in = bytearray()
        self._out = bytearray()
        self._conn_fd: int | None = None
        self._conn_obj: object | None = None     # socket object owning _conn_fd, if any
        self._listener: socket.socket | None = None
        self._stop = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def _start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # -- device-thread side -----------------------------------------------------------------------
    @property
    def has_input(self) -> bool:
        return bool(self._in)

    def read(self, max_bytes: int) -> bytes:
        if max_bytes <= 0 or not self._in:
            return b""
        with self._lock:
            was_full = len(self._in) >= INPUT_LIMIT
            data = bytes(self._in[:max_bytes])
            del self._in[:max_bytes]
        if was_full:
            self._wake()
        return data

    def write(self, data: bytes) -> None:
        if self._conn_fd is None:
            self.dropped += len(data)
            return
        with self._lock:
            room = OUTPUT_LIMIT - len(self._out)
            was_empty = not self._out
            if len(data) > room:
                self.dropped += len(data) - max(room, 0)
                data = data[:max(room, 0)]
            self._out += data
        if was_empty and data:
            self._wake()

    def close(self) -> None:
        self._stop = True
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._drop_connection()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    # -- I/O thread -------------------------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def _attach(self, fd: int, owner: object | None) -> None:
        os.set_blocking(fd, False)
        self._conn_fd = fd
        self._conn_obj = owner
        self.connected.set()

    def _drop_connection(self) -> None:
        fd, owner = self._conn_fd, self._conn_obj
        self._conn_fd = None
        self._conn_obj = None
        self.connected.clear()
        with self._lock:
            self._out.clear()
        if fd is None:
            return
        if isinstance(owner, socket.socket):
            owner.close()
        else:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            while not self._stop:
                sel_map: dict[int, int] = {self._wake_r: selectors.EVENT_READ}
                if self._listener is not None:
                    sel_map[self._listener.fileno()] = selectors.EVENT_READ
                fd = self._conn_fd
                if fd is not None:
                    ev = 0
                    if len(self._in) < INPUT_LIMIT:
                        ev |= selectors.EVENT_READ
                    if self._out:
                        ev |= selectors.EVENT_WRITE
                    if ev:
                        sel_map[fd] = sel_map.get(fd, 0) | ev
                for k in list(sel.get_map().values()):
                    sel.unregister(k.fileobj)
                for f, ev in sel_map.items():
                    sel.register(f, ev)
                for key, ev in sel.select(timeout=1.0):
                    if self._stop:
                        break
                    if key.fileobj == self._wake_r:
                        with contextlib.suppress(OSError):
                            os.read(self._wake_r, 4096)
                    elif self._listener is not None and key.fileobj == self._listener.fileno():
                        self._accept()
                    elif key.fileobj == self._conn_fd:
                        if ev & selectors.EVENT_READ:
                            self._do_read()
                        if ev & selectors.EVENT_WRITE and self._conn_fd is not None:
                            self._do_write()
        finally:
            sel.close()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        if self._conn_fd is not None:
            conn.close()               # one client at a time
            return
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._attach(conn.fileno(), conn)

    def _do_read(self) -> None:
        assert self._conn_fd is not None
        room = INPUT_LIMIT - len(self._in)
        if room <= 0:
            return
        try:
            data = os.read(self._conn_fd, min(room, 16384))
        except BlockingIOError:
            return
        except OSError:
            self._on_hangup()
            return
        if not data:
            self._on_hangup()
            return
        with self._lock:
            self._in += data
        if self._notify is not None:
            self._notify()

    def _do_write(self) -> None:
        assert self._conn_fd is not None
        with self._lock:
            chunk = bytes(self._out[:65536])
        try:
            n = os.write(self._conn_fd, chunk)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EINTR):
                self._on_hangup()
            return
        with self._lock:
            del self._out[:n]

    def _on_hangup(self) -> None:
        self._drop_connection()


class TcpServerBackend(_StreamBackend):
    mode = PortMode.TCP

    def __init__(self, address: str | int):
        super().__init__()
        host, port = _split_host_port(str(address), default_host="127.0.0.1")
        try:
            lst = socket.create_server((host, port), family=_family(host), reuse_port=False)
        except OSError as e:
            raise SerialBackendError(f"cannot listen on TCP {host}:{port}: {e}") from e
        lst.setblocking(False)
        self._listener = lst
        self.port = lst.getsockname()[1]
        self._start(f"serial-tcpserver-{self.port}")


class TcpClientBackend(_StreamBackend):
    mode = PortMode.TCP

    def __init__(self, address: str, timeout: float = 5.0):
        super().__init__()
        host, port = _split_host_port(address, default_host=None)
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise SerialBackendError(f"cannot connect to TCP {host}:{port}: {e}") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._attach(sock.fileno(), sock)
        self._start(f"serial-tcpclient-{host}:{port}")


class PipeServerBackend(_StreamBackend):
    """HostPipe server: a listening Unix socket (a stale socket file is replaced)."""

    mode = PortMode.HostPipe

    def __init__(self, path: str | os.PathLike[str]):
        super().__init__()
        self.path = os.fspath(path)
        with contextlib.suppress(FileNotFoundError):
            if _is_socket(self.path):
                os.unlink(self.path)
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lst.bind(self.path)
            lst.listen(1)
        except OSError as e:
            lst.close()
            raise SerialBackendError(f"cannot listen on pipe {self.path!r}: {e}") from e
        lst.setblocking(False)
        self._listener = lst
        self._start(f"serial-pipeserver-{os.path.basename(self.path)}")

    def close(self) -> None:
        super().close()
        with contextlib.suppress(OSError):
            if _is_socket(self.path):
                os.unlink(self.path)


class PipeClientBackend(_StreamBackend):
    mode = PortMode.HostPipe

    def __init__(self, path: str | os.PathLike[str]):
        super().__init__()
        self.path = os.fspath(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError as e:
            sock.close()
            raise SerialBackendError(f"cannot connect to pipe {self.path!r}: {e}") from e
        self._attach(sock.fileno(), sock)
        self._start(f"serial-pipeclient-{os.path.basename(self.path)}")


class HostDeviceBackend(_StreamBackend):
    """A host character device (a tty or pty) used as the other end of the wire."""

    mode = PortMode.HostDevice

    def __init__(self, path: str | os.PathLike[str]):
        super().__init__()
        self.path = os.fspath(path)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as e:
            raise SerialBackendError(f"cannot open host device {self.path!r}: {e}") from e
        if os.isatty(fd):
            with contextlib.suppress(termios.error):
                tty.setraw(fd)          # the guest's bytes pass unchanged: no echo, no line editing
        self._attach(fd, None)
        self._start(f"serial-hostdev-{os.path.basename(self.path)}")


def create_backend(mode: PortMode | int, path: str = "", server: bool = False) -> SerialBackend:
    """The backend for a serial port's settings (ISerialPort hostMode / path / server)."""
    mode = PortMode(mode)
    if mode == PortMode.Disconnected:
        return DisconnectedBackend()
    if not path:
        raise SerialBackendError(f"serial port mode {mode.name} needs a path")
    if mode == PortMode.RawFile:
        return RawFileBackend(path)
    if mode == PortMode.TCP:
        return TcpServerBackend(path) if server else TcpClientBackend(path)
    if mode == PortMode.HostPipe:
        return PipeServerBackend(path) if server else PipeClientBackend(path)
    return HostDeviceBackend(path)


def _split_host_port(text: str, default_host: str | None) -> tuple[str, int]:
    host, sep, port_s = text.rpartition(":")
    if not sep:
        host, port_s = "", text
    host = host.strip("[]") or (default_host or "")
    if not host:
        raise SerialBackendError(f"TCP address {text!r} needs host:port")
    try:
        port = int(port_s)
    except ValueError:
        raise SerialBackendError(f"bad TCP port in {text!r}")
    if not 0 <= port <= 65535:
        raise SerialBackendError(f"TCP port out of range in {text!r}")
    return host, port


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
