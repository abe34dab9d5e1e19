"""The VNC server against a scripted client: handshake, None and VNC authentication, Raw and Zlib
updates, DesktopSize, incremental updates only on change, keys typed as scan codes, and bad
clients disconnected while the server keeps serving."""

from __future__ import annotations

import socket
import struct
import zlib

import pytest

from vmm.devices.vga_render import Frame
from vmm.display.des import encrypt_block, vnc_response
from vmm.display.rfb import PixelFormat, RfbServer, convert_pixels, parse_ports


class Screen:
    def __init__(self, w=4, h=3):
        self.set(w, h, 0x40)
        self.typed: list[int] = []

    def set(self, w, h, fill):
        self.frame = Frame(w, h, bytes([fill, fill + 1, fill + 2]) * (w * h))
        self.version = getattr(self, "version", 0) + 1


@pytest.fixture
def server():
    scr = Screen()
    srv = RfbServer(lambda: scr.frame, lambda: scr.version, scr.typed.extend, ports=[0])
    srv.start()
    yield srv, scr
    srv.close()


def _connect(srv, password=None, minor=8):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    f = s.makefile("rb")
    assert f.read(12) == b"RFB 003.008\n"
    s.sendall(b"RFB 003.%03d\n" % minor)
    if minor == 3:
        sec = struct.unpack(">I", f.read(4))[0]
    else:
        n = f.read(1)[0]
        types = f.read(n)
        sec = types[0]
        s.sendall(bytes((sec,)))
    if sec == 2:
        challenge = f.read(16)
        s.sendall(vnc_response(password or "", challenge))
    if sec == 2 or minor == 8:
        result = struct.unpack(">I", f.read(4))[0]
        if result:
            reason = f.read(struct.unpack(">I", f.read(4))[0]) if minor == 8 else b""
            return s, f, None, reason
    s.sendall(b"\x01")
    w, h = struct.unpack(">HH", f.read(4))
    fmt = f.read(16)
    name = f.read(struct.unpack(">I", f.read(4))[0])
    return s, f, (w, h, fmt, name), None


def _request(s, incremental, w, h):
    s.sendall(struct.pack(">BBHHHH", 3, incremental, 0, 0, w, h))


def _read_update(f, zs=None):
    assert f.read(1) == b"\x00"
    f.read(1)
    n = struct.unpack(">H", f.read(2))[0]
    rects = []
    for _ in range(n):
        x, y, w, h, enc = struct.unpack(">HHHHi", f.read(12))
        if enc == 0:
            data = f.read(w * h * 4)
        elif enc == 6:
            data = zs.decompress(f.read(struct.unpack(">I", f.read(4))[0]))
        else:
            data = b""
        rects.append((x, y, w, h, enc, data))
    return rects


def test_des_matches_the_textbook_vector():
    assert encrypt_block(bytes.fromhex("133457799BBCDFF1"), bytes.fromhex("0123456789ABCDEF")).hex() == \
        "85e813540f0ab405"


def test_no_auth_handshake_and_raw_full_then_incremental_updates(server):
    srv, scr = server
    s, f, init, _ = _connect(srv)
    w, h, fmt, name = init
    assert (w, h, name) == (4, 3, b"vboxpy") and fmt == PixelFormat().pack()
    _request(s, 0, 4, 3)
    (x, y, rw, rh, enc, data), = _read_update(f)
    assert (x, y, rw, rh, enc) == (0, 0, 4, 3, 0) and data == bytes((0x42, 0x41, 0x40, 0)) * 12
    _request(s, 1, 4, 3)                                 # nothing changed: no answer until it does
    s.settimeout(0.3)
    with pytest.raises(socket.timeout):
        s.recv(1)
    s.settimeout(10)
    scr.set(4, 3, 0x10)
    (_, y, _, rh, enc, data), = _read_update(f)
    assert (y, rh) == (0, 3) and data[:4] == bytes((0x12, 0x11, 0x10, 0))
    assert srv.active == 1 and srv.connections == 1
    s.close()


def test_zlib_and_desktop_size(server):
    srv, scr = server
    s, f, _, _ = _connect(srv)
    s.sendall(struct.pack(">BxHii", 2, 2, 6, -223))
    zs = zlib.decompressobj()
    _request(s, 0, 4, 3)
    (_, _, _, _, enc, data), = _read_update(f, zs)
    assert enc == 6 and data == bytes((0x42, 0x41, 0x40, 0)) * 12
    scr.set(8, 2, 0x20)
    _request(s, 1, 4, 3)
    rects = _read_update(f, zs)
    assert rects[0][:5] == (0, 0, 8, 2, -223)
    assert rects[1][4] == 6 and rects[1][5] == bytes((0x22, 0x21, 0x20, 0)) * 16
    s.close()


def test_vnc_password_accepts_the_right_one_and_refuses_the_wrong_one():
    scr = Screen()
    srv = RfbServer(lambda: scr.frame, lambda: scr.version, scr.typed.extend, ports=[0], password="s3cret")
    srv.start()
    try:
        _, _, init, reason = _connect(srv, "wrong")
        assert init is None and reason == b"Authentication failed"
        s, _, init, _ = _connect(srv, "s3cret")
        assert init[:2] == (4, 3)
        s.close()
        s, _, init, _ = _connect(srv, "s3cret", minor=3)
        assert init[:2] == (4, 3)
        s.close()
    finally:
        srv.close()


def test_keys_become_set_1_scancodes(server):
    srv, scr = server
    s, f, _, _ = _connect(srv)
    for down, sym in ((1, 0xFFE1), (1, ord("A")), (0, ord("A")), (0, 0xFFE1), (1, 0xFF52), (0, 0xFF52),
                      (1, 0x20AC)):                      # the euro sign: no PC key, nothing typed
        s.sendall(struct.pack(">BBxxI", 4, down, sym))
    s.sendall(struct.pack(">BBHH", 5, 1, 10, 10))       # pointer: read and dropped
    _request(s, 0, 4, 3)
    _read_update(f)
    assert scr.typed == [0x2A, 0x1E, 0x9E, 0xAA, 0xE0, 0x48, 0xE0, 0xC8]
    s.close()


@pytest.mark.parametrize("garbage", [
    b"HELLO WORLD!",                                     # not RFB
    b"RFB 003.008\n\x07",                                # a security type that was not offered
])
def test_bad_handshakes_are_disconnected(server, garbage):
    srv, _ = server
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.recv(12)
    s.sendall(garbage)
    data = b""
    while chunk := s.recv(100):
        data += chunk
    s.close()
    s2, _, init, _ = _connect(srv)                        # the server still serves
    assert init is not None
    s2.close()


@pytest.mark.parametrize("message", [
    b"\x63",                                             # unknown message type
    struct.pack(">BxHI", 6, 0, 1 << 30),                 # huge cut text
    struct.pack(">BxH", 2, 5000),                        # too many encodings
    b"\x00\x00\x00\x00" + bytes((8, 8, 0, 0)) + bytes(12),   # colour-map pixel format
])
def test_malformed_messages_disconnect_the_client_only(server, message):
    srv, _ = server
    s, f, _, _ = _connect(srv)
    s.sendall(message)
    assert f.read(1) == b""                              # closed by the server
    s.close()
    s2, f2, init, _ = _connect(srv)
    _request(s2, 0, 4, 3)
    assert len(_read_update(f2)) == 1
    s2.close()


def test_pixel_formats_and_port_specs():
    rgb = bytes((255, 128, 0))
    assert convert_pixels(rgb, PixelFormat()) == bytes((0, 128, 255, 0))
    be = PixelFormat(big_endian=True)
    assert convert_pixels(rgb, be) == bytes((0, 255, 128, 0))
    f16 = PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)
    assert convert_pixels(rgb, f16) == ((31 << 11) | (31 << 5)).to_bytes(2, "little")
    assert parse_ports("5000,5010-5012") == [5000, 5010, 5011, 5012]
    assert parse_ports("0") == [3389] and parse_ports("") == [3389]
    with pytest.raises(ValueError):
        parse_ports("5900-5800")
