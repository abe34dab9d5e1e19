"""The plain-Python DEALER channel against a real ZeroMQ ROUTER socket (pyzmq), as the service binds it."""

from __future__ import annotations

import time

import pytest
import zmq

from vboxsvc.ipc.zmtp import ChannelClosed, ZmtpChannel


@pytest.fixture
def router(tmp_path):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    path = str(tmp_path / "bus.sock")
    sock.bind("ipc://" + path)
    yield Router(sock, path)
    sock.close(0)
    ctx.term()


class Router:
    """The ROUTER socket and the path it listens on."""

    def __init__(self, sock, path: str):
        self.sock, self.path = sock, path

    def __getattr__(self, name):
        return getattr(self.sock, name)


def _echo(router, reply_size: int | None = None) -> bytes:
    assert router.poll(5000), "the ROUTER got nothing"
    ident, body = router.recv_multipart()
    router.send_multipart([ident, body if reply_size is None else b"r" * reply_size])
    return body


@pytest.mark.parametrize("size", [0, 1, 255, 256, 70_000])
def test_frames_both_ways(router, size):
    channel = ZmtpChannel(router.path, 1 << 20)
    try:
        channel.send(b"q" * size)
        assert _echo(router, size + 1) == b"q" * size
        assert channel.recv(5) == b"r" * (size + 1)
        channel.send(b"again")  # the connection stays usable
        assert _echo(router) == b"again" and channel.recv(5) == b"again"
    finally:
        channel.close()


def test_recv_times_out_with_none(router):
    channel = ZmtpChannel(router.path, 1 << 20)
    try:
        channel.send(b"x")
        _echo(router, 0)
        assert channel.recv(5) == b""
        assert channel.recv(0.05) is None
    finally:
        channel.close()


def test_oversized_frame_is_refused(router):
    channel = ZmtpChannel(router.path, 1000)
    try:
        channel.send(b"x")
        _echo(router, 5000)
        with pytest.raises(ChannelClosed):
            channel.recv(5)
    finally:
        channel.close()


def test_multipart_messages_are_skipped_whole(router):
    channel = ZmtpChannel(router.path, 1 << 20)
    try:
        channel.send(b"x")
        assert router.poll(5000)
        ident, _ = router.recv_multipart()
        router.send_multipart([ident, b"part1", b"part2"])
        router.send_multipart([ident, b"single"])
        assert channel.recv(5) == b"single"
    finally:
        channel.close()


def test_nobody_listening(tmp_path):
    with pytest.raises(ChannelClosed):
        ZmtpChannel(str(tmp_path / "none.sock"), 1 << 20).send(b"x")


def test_peer_going_away(router):
    channel = ZmtpChannel(router.path, 1 << 20)
    channel.send(b"x")
    _echo(router)
    assert channel.recv(5) == b"x"
    router.close(0)
    with pytest.raises(ChannelClosed):
        for _ in range(50):  # the close reaches us as end of stream
            channel.recv(0.1)
    channel.close()


def test_heartbeats_are_answered(tmp_path):
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.HEARTBEAT_IVL, 100)
    router.setsockopt(zmq.HEARTBEAT_TIMEOUT, 1000)
    path = str(tmp_path / "hb.sock")
    router.bind("ipc://" + path)
    channel = ZmtpChannel(path, 1 << 20)
    try:
        channel.send(b"x")
        assert router.poll(5000)
        ident, _ = router.recv_multipart()
        deadline = time.monotonic() + 3.0  # three heartbeat timeouts, answering PINGs while waiting
        while time.monotonic() < deadline:
            assert channel.recv(0.05) is None
        router.send_multipart([ident, b"still here"])
        assert channel.recv(5) == b"still here"
    finally:
        channel.close()
        router.close(0)
        ctx.term()
