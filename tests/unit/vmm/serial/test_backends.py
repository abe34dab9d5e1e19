"""Serial port host sides on loopback TCP, Unix sockets, a pty and files; never blocking the guest."""

import os
import socket
import threading
import time

import pytest

from vmm.devices.base import IrqLine
from vmm.devices.uart import Uart16550
from vmm.serial.backends import (
    INPUT_LIMIT,
    OUTPUT_LIMIT,
    DisconnectedBackend,
    HostDeviceBackend,
    PipeClientBackend,
    PipeServerBackend,
    PortMode,
    RawFileBackend,
    SerialBackendError,
    TcpClientBackend,
    TcpServerBackend,
    create_backend,
)
from vmm.tm import FakeClock


def _wait(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def _recv_exactly(sock, n):
    buf = bytearray()
    sock.settimeout(10)
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, "peer closed"
        buf += chunk
    return bytes(buf)


def _uart_with(backend):
    clock = FakeClock()
    kicked = threading.Event()
    u = Uart16550(IrqLine(), clock, backend, on_input=kicked.set)
    u.write(2, 1, 0x07)          # FIFO on
    return clock, u, kicked


def _drain_uart(clock, u, n):
    got = bytearray()
    end = time.monotonic() + 10
    while len(got) < n and time.monotonic() < end:
        clock.advance(0)
        while u.read(5, 1) & 0x01:
            got.append(u.read(0, 1))
        time.sleep(0.001)
    return bytes(got)


def test_tcp_server_round_trip_through_uart():
    be = TcpServerBackend(0)
    try:
        assert be.mode == PortMode.TCP
        clock, u, kicked = _uart_with(be)
        u.write(0, 1, ord("x"))                   # no client yet: dropped, not blocked
        assert be.dropped == 1
        c = socket.create_connection(("127.0.0.1", be.port))
        _wait(be.connected.is_set)
        for ch in b"login: ":
            u.write(0, 1, ch)
        assert _recv_exactly(c, 7) == b"login: "
        c.sendall(b"root\n")
        assert kicked.wait(10)
        assert _drain_uart(clock, u, 5) == b"root\n"
        # a second client is refused while the first is connected
        c2 = socket.create_connection(("127.0.0.1", be.port))
        c2.settimeout(10)
        assert c2.recv(1) == b""
        c2.close()
        # the first client leaves: a new one can connect
        c.close()
        _wait(lambda: not be.connected.is_set())
        c3 = socket.create_connection(("127.0.0.1", be.port))
        _wait(be.connected.is_set)
        u.write(0, 1, ord("!"))
        assert _recv_exactly(c3, 1) == b"!"
        c3.close()
    finally:
        be.close()


def test_tcp_client_and_hangup_never_blocks():
    lst = socket.create_server(("127.0.0.1", 0))
    port = lst.getsockname()[1]
    be = TcpClientBackend(f"127.0.0.1:{port}")
    try:
        peer, _ = lst.accept()
        be.write(b"ping")
        assert _recv_exactly(peer, 4) == b"ping"
        peer.sendall(b"pong")
        _wait(lambda: be.has_input)
        _wait(lambda: len(be._in) == 4)
        assert be.read(100) == b"pong"
        peer.close()
        _wait(lambda: not be.connected.is_set())
        be.write(b"lost")                          # after hangup: dropped, returns at once
        assert be.dropped == 4
    finally:
        be.close()
        lst.close()


def test_slow_peer_output_is_bounded_and_dropped():
    lst = socket.create_server(("127.0.0.1", 0))
    be = TcpClientBackend(f"127.0.0.1:{lst.getsockname()[1]}")
    try:
        peer, _ = lst.accept()                     # never reads
        chunk = b"z" * 65536
        for _ in range((OUTPUT_LIMIT * 4) // len(chunk)):
            be.write(chunk)
        assert be.dropped > 0
        peer.close()
    finally:
        be.close()
        lst.close()


def test_input_flow_control_keeps_every_byte():
    be = TcpServerBackend("127.0.0.1:0")
    try:
        c = socket.create_connection(("127.0.0.1", be.port))
        _wait(be.connected.is_set)
        data = os.urandom(INPUT_LIMIT * 3)
        t = threading.Thread(target=c.sendall, args=(data,))
        t.start()
        got = bytearray()
        end = time.monotonic() + 20
        while len(got) < len(data) and time.monotonic() < end:
            assert len(be._in) <= INPUT_LIMIT
            got += be.read(4096)
            if not be.has_input:
                time.sleep(0.001)
        t.join(10)
        assert bytes(got) == data
        c.close()
    finally:
        be.close()


def test_host_pipe_server_and_client(tmp_path):
    path = tmp_path / "com1.sock"
    srv = PipeServerBackend(path)
    try:
        cli = PipeClientBackend(path)
        try:
            _wait(srv.connected.is_set)
            cli.write(b"abc")
            _wait(lambda: len(srv._in) == 3)
            assert srv.read(10) == b"abc"
            srv.write(b"xyz")
            _wait(lambda: len(cli._in) == 3)
            assert cli.read(2) == b"xy" and cli.read(2) == b"z"
        finally:
            cli.close()
    finally:
        srv.close()
    assert not path.exists()
    with pytest.raises(SerialBackendError):
        PipeClientBackend(path)


def test_host_device_on_a_pty():
    master, slave = os.openpty()
    name = os.ttyname(slave)
    be = HostDeviceBackend(name)          # puts the tty in raw mode: "\n" is not turned into "\r\n"

    try:
        be.write(b"to-host\n")
        os.set_blocking(master, True)
        buf = b""
        while len(buf) < 8:
            buf += os.read(master, 8 - len(buf))
        assert buf == b"to-host\n"
        os.write(master, b"to-guest")
        _wait(lambda: len(be._in) == 8)
        assert be.read(64) == b"to-guest"
    finally:
        be.close()
        os.close(master)
        os.close(slave)


def test_raw_file_and_disconnected(tmp_path):
    p = tmp_path / "com1.log"
    p.write_bytes(b"old")
    be = RawFileBackend(p)
    clock, u, _ = _uart_with(be)
    for ch in b"Linux version\n":
        u.write(0, 1, ch)
    assert p.read_bytes() == b"Linux version\n"    # truncated on open, flushed per line
    u.write(0, 1, ord("x"))
    be.close()
    assert p.read_bytes().endswith(b"x")
    d = DisconnectedBackend()
    d.write(b"abc")
    assert d.dropped == 3 and d.read(10) == b"" and not d.has_input


def test_create_backend_modes_and_errors(tmp_path):
    assert isinstance(create_backend(PortMode.Disconnected), DisconnectedBackend)
    f = create_backend(PortMode.RawFile, str(tmp_path / "f.log"))
    assert isinstance(f, RawFileBackend)
    f.close()
    s = create_backend(PortMode.TCP, "127.0.0.1:0", server=True)
    assert isinstance(s, TcpServerBackend)
    s.close()
    with pytest.raises(SerialBackendError):
        create_backend(PortMode.TCP, "", server=True)
    with pytest.raises(SerialBackendError):
        create_backend(PortMode.TCP, "localhost:notaport")
    with pytest.raises(SerialBackendError):
        create_backend(PortMode.TCP, "5555")              # client needs host:port
    with pytest.raises(SerialBackendError):
        create_backend(PortMode.RawFile, str(tmp_path / "missing" / "x.log"))
    with pytest.raises(SerialBackendError):
        create_backend(PortMode.HostDevice, str(tmp_path / "no-such-tty"))
    with pytest.raises(ValueError):
        create_backend(9, "x")


def test_port_modes_mirror_the_apis():
    """The VMM does not import the Main API, so it names VirtualBox's PortMode values itself."""
    from vboxsvc.api.enums import PortMode as ApiPortMode
    assert {m.name: int(m) for m in PortMode} == {m.name: int(m) for m in ApiPortMode}
