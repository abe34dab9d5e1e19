"""The VM's remote display: an RFB 3.8 (VNC) server in the VM process.

VirtualBox serves a headless VM's screen over VRDE, whose VNC flavour any VNC viewer can use;
this server does that job.  It shows what the VGA shows (a `screen()` Frame from the VMM),
sends only when the screen's version changed (a static screen costs one integer compare per
poll), and types the viewer's keys on the guest's PS/2 keyboard.  Pointer events are read and
dropped: the machine has no PS/2 mouse yet.

Protocol (RFB 3.3/3.7/3.8): security None, or VNC Authentication (DES challenge) when a
password is set; ServerInit with 32-bit true colour; client messages SetPixelFormat (true
colour, 8/16/32 bpp), SetEncodings (Raw 0, Zlib 6, DesktopSize -223), FramebufferUpdateRequest,
KeyEvent, PointerEvent, ClientCutText.  Every message is length-checked; a client that sends
garbage, an unknown message or a colour-map format is disconnected and the VM never notices.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from vmm.display.des import vnc_response
from vmm.display.keysyms import keysym_scancodes

log = logging.getLogger("vboxpy.vrde")

ENC_RAW, ENC_ZLIB, ENC_DESKTOP_SIZE = 0, 6, -223
SEC_NONE, SEC_VNC = 1, 2
MSG_SET_PIXEL_FORMAT, MSG_SET_ENCODINGS, MSG_UPDATE_REQUEST = 0, 2, 3
MSG_KEY, MSG_POINTER, MSG_CUT_TEXT = 4, 5, 6
MAX_CUT_TEXT = 1 << 20
MAX_ENCODINGS = 1024
HANDSHAKE_TIMEOUT_S = 30.0
POLL_S = 0.05


class ProtocolError(Exception):
    """The client broke the protocol: it is disconnected."""


@dataclass
class PixelFormat:
    bpp: int = 32
    depth: int = 24
    big_endian: bool = False
    true_colour: bool = True
    red_max: int = 255
    green_max: int = 255
    blue_max: int = 255
    red_shift: int = 16
    green_shift: int = 8
    blue_shift: int = 0

    def pack(self) -> bytes:
        return struct.pack(">BBBBHHHBBB3x", self.bpp, self.depth, self.big_endian, self.true_colour,
                           self.red_max, self.green_max, self.blue_max, self.red_shift, self.green_shift,
                           self.blue_shift)

    @classmethod
    def unpack(cls, data: bytes) -> PixelFormat:
        f = cls(*struct.unpack(">BBBBHHHBBB3x", data))
        f.big_endian, f.true_colour = bool(f.big_endian), bool(f.true_colour)
        if not f.true_colour:
            raise ProtocolError("colour-map pixel formats are not served")
        if f.bpp not in (8, 16, 32) or not all(0 < m <= 0xFFFF for m in (f.red_max, f.green_max, f.blue_max)):
            raise ProtocolError(f"unsupported pixel format ({f.bpp} bpp)")
        if any(s >= f.bpp for s in (f.red_shift, f.green_shift, f.blue_shift)):
            raise ProtocolError("pixel format shifts outside the pixel")
        return f


def convert_pixels(rgb: bytes, fmt: PixelFormat) -> bytes:
    """RGB bytes -> pixels in the client's format."""
    n = len(rgb) // 3
    byte_shifts = all(m == 255 for m in (fmt.red_max, fmt.green_max, fmt.blue_max)) and \
        all(s % 8 == 0 for s in (fmt.red_shift, fmt.green_shift, fmt.blue_shift))
    if fmt.bpp == 32 and byte_shifts:
        out = bytearray(4 * n)
        for shift, channel in ((fmt.red_shift, 0), (fmt.green_shift, 1), (fmt.blue_shift, 2)):
            pos = 3 - shift // 8 if fmt.big_endian else shift // 8
            out[pos::4] = rgb[channel::3]
        return bytes(out)
    nbytes = fmt.bpp // 8
    order = "big" if fmt.big_endian else "little"
    cache: dict[bytes, bytes] = {}
    out = bytearray()
    for i in range(0, 3 * n, 3):
        px = rgb[i:i + 3]
        v = cache.get(px)
        if v is None:
            value = ((px[0] * fmt.red_max // 255) << fmt.red_shift
                     | (px[1] * fmt.green_max // 255) << fmt.green_shift
                     | (px[2] * fmt.blue_max // 255) << fmt.blue_shift)
            v = cache[px] = (value & ((1 << fmt.bpp) - 1)).to_bytes(nbytes, order)
        out += v
    return bytes(out)


def parse_ports(spec: str) -> list[int]:
    """VRDE's TCP/Ports: "5900", "5000,5010-5012" (VirtualBox tries them in order); "0" or "" means 3389."""
    ports: list[int] = []
    for part in (spec or "").replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"invalid VRDE port specification '{spec}'") from None
        if not (0 <= a <= 65535 and 0 <= b <= 65535) or b < a:
            raise ValueError(f"invalid VRDE port specification '{spec}'")
        ports.extend(range(a, b + 1))
    return [p if p else 3389 for p in ports] or [3389]


class RfbServer:
    """Serve `screen()` (a Frame) to VNC viewers; `version()` tells whether it may have changed."""

    def __init__(self, screen: Callable[[], object], version: Callable[[], object],
                 put_scancodes: Callable[[list[int]], object], *, address: str = "127.0.0.1",
                 ports: list[int] | None = None, password: str = "", name: str = "vboxpy"):
        self._screen = screen
        self._version = version
        self._put = put_scancodes
        self.password = password
        self.name = name
        self.address = address or "0.0.0.0"
        self._ports = ports or [5900]
        self._sock: socket.socket | None = None
        self.port = -1                 # VRDE's "VRDEPort": -1 not yet bound, 0 failed
        self._lock = threading.Lock()
        self._clients: list[_Client] = []
        self.connections = 0           # clients so far
        self.last_connect: float | None = None
        self.last_disconnect: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life --------------------------------------------------------------------------------------
    def start(self) -> int:
        last: OSError | None = None
        for port in self._ports:
            s = socket.socket(socket.AF_INET6 if ":" in self.address else socket.AF_INET)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((self.address, port))
                s.listen(4)
            except OSError as e:
                s.close()
                last = e
                continue
            self._sock = s
            self.port = s.getsockname()[1]
            self._thread = threading.Thread(target=self._accept_loop, name="VRDE-listen", daemon=True)
            self._thread.start()
            log.info("VRDE: VNC server listening on %s:%d", self.address, self.port)
            return self.port
        self.port = 0
        raise OSError(f"VRDE: no free port in {self._ports} on {self.address}: {last}")

    def close(self) -> None:
        self._stop.set()
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            c.close()
        if self._thread is not None:
            self._thread.join(2)
        for c in clients:
            c.join(2)

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._clients)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self._sock], [], [], 0.2)
                if not r:
                    continue
                conn, peer = self._sock.accept()
            except (OSError, ValueError):
                return
            client = _Client(self, conn, peer)
            with self._lock:
                self._clients.append(client)
                self.connections += 1
                self.last_connect = time.time()
            client.start()

    def _gone(self, client: _Client) -> None:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
                self.last_disconnect = time.time()


class _Client:
    def __init__(self, server: RfbServer, sock: socket.socket, peer):
        self.server = server
        self.sock = sock
        self.peer = peer
        self.fmt = PixelFormat()
        self.encodings: set[int] = set()
        self.size = (0, 0)
        self.request: tuple[bool, int, int, int, int] | None = None
        self.sent_version = None
        self.last_rgb: bytes | None = None
        self.zlib = zlib.compressobj(6)
        self._thread = threading.Thread(target=self._run, name="VRDE-client", daemon=True)
        self._buf = bytearray()

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- I/O ----------------------------------------------------------------------------------------
    def _recv_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("client closed the connection")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _run(self) -> None:
        try:
            self.sock.settimeout(HANDSHAKE_TIMEOUT_S)
            self._handshake()
            self.sock.settimeout(None)
            log.info("VRDE: client %s connected", self.peer[0])
            self._serve()
        except ProtocolError as e:
            log.info("VRDE: client %s disconnected: %s", self.peer[0], e)
        except (OSError, ConnectionError, struct.error):
            pass
        except Exception:                 # a bug in this server must not take the VM down
            log.exception("VRDE: client %s: unexpected error", self.peer[0])
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
            self.server._gone(self)

    def _handshake(self) -> None:
        s = self.server
        self.sock.sendall(b"RFB 003.008\n")
        ver = self._recv_exact(12)
        if not (ver.startswith(b"RFB 003.") and ver.endswith(b"\n")):
            raise ProtocolError("not an RFB client")
        try:
            minor = int(ver[8:11])
        except ValueError:
            raise ProtocolError("bad RFB version") from None
        minor = 8 if minor >= 8 else 7 if minor == 7 else 3
        sec = SEC_VNC if s.password else SEC_NONE
        if minor == 3:
            self.sock.sendall(struct.pack(">I", sec))
        else:
            self.sock.sendall(bytes((1, sec)))
            chosen = self._recv_exact(1)[0]
            if chosen != sec:
                self._fail(minor, "security type not offered")
        if sec == SEC_VNC:
            challenge = os.urandom(16)
            self.sock.sendall(challenge)
            answer = self._recv_exact(16)
            if answer != vnc_response(s.password, challenge):
                self._fail(minor, "Authentication failed", always=True)
            self.sock.sendall(struct.pack(">I", 0))
        elif minor == 8:
            self.sock.sendall(struct.pack(">I", 0))
        self._recv_exact(1)                                  # ClientInit: shared flag (always shared)
        frame = s._screen()
        self.size = (frame.width, frame.height)
        name = s.name.encode()
        self.sock.sendall(struct.pack(">HH", *self.size) + self.fmt.pack()
                          + struct.pack(">I", len(name)) + name)

    def _fail(self, minor: int, reason: str, always: bool = False) -> None:
        if minor == 8 or always:
            text = reason.encode()
            msg = struct.pack(">I", 1)
            if minor == 8:
                msg += struct.pack(">I", len(text)) + text
            try:
                self.sock.sendall(msg)
            except OSError:
                pass
        raise ProtocolError(reason)

    def _serve(self) -> None:
        while not self.server._stop.is_set():
            if not self._buf:
                r, _, _ = select.select([self.sock], [], [], POLL_S)
                if r:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        return
                    self._buf += chunk
            while self._buf:
                self._message()
            self._maybe_update()

    def _message(self) -> None:
        kind = self._recv_exact(1)[0]
        if kind == MSG_SET_PIXEL_FORMAT:
            data = self._recv_exact(19)
            self.fmt = PixelFormat.unpack(data[3:])
            self.last_rgb = None
        elif kind == MSG_SET_ENCODINGS:
            _, n = struct.unpack(">BH", self._recv_exact(3))
            if n > MAX_ENCODINGS:
                raise ProtocolError("too many encodings")
            self.encodings = set(struct.unpack(f">{n}i", self._recv_exact(4 * n)))
        elif kind == MSG_UPDATE_REQUEST:
            inc, x, y, w, h = struct.unpack(">BHHHH", self._recv_exact(9))
            self.request = (bool(inc), x, y, w, h)
            if not inc:
                self.last_rgb = None
        elif kind == MSG_KEY:
            down, _, keysym = struct.unpack(">BHI", self._recv_exact(7))
            codes = keysym_scancodes(keysym, bool(down))
            if codes:
                self.server._put(codes)
        elif kind == MSG_POINTER:
            self._recv_exact(5)                              # no PS/2 mouse to move
        elif kind == MSG_CUT_TEXT:
            _, n = struct.unpack(">3sI", self._recv_exact(7))
            if n > MAX_CUT_TEXT:
                raise ProtocolError("cut text too long")
            self._recv_exact(n)
        else:
            raise ProtocolError(f"unknown client message {kind}")

    # -- updates --------------------------------------------------------------------------------------
    def _maybe_update(self) -> None:
        if self.request is None:
            return
        incremental = self.request[0]
        version = self.server._version()
        if incremental and version == self.sent_version and self.last_rgb is not None:
            return
        frame = self.server._screen()
        self.sent_version = version
        rects: list[bytes] = []
        if (frame.width, frame.height) != self.size:
            if ENC_DESKTOP_SIZE not in self.encodings:
                raise ProtocolError("the screen size changed and the client cannot follow")
            self.size = (frame.width, frame.height)
            rects.append(struct.pack(">HHHHi", 0, 0, frame.width, frame.height, ENC_DESKTOP_SIZE))
            self.last_rgb = None
        width, height = self.size
        stride = width * 3
        rgb = frame.rgb
        if self.last_rgb is None or len(self.last_rgb) != len(rgb):
            y0, y1 = 0, height
        else:
            y0 = 0
            while y0 < height and (rgb[y0 * stride:(y0 + 1) * stride]
                                   == self.last_rgb[y0 * stride:(y0 + 1) * stride]):
                y0 += 1
            y1 = height
            while y1 > y0 and (rgb[(y1 - 1) * stride:y1 * stride]
                               == self.last_rgb[(y1 - 1) * stride:y1 * stride]):
                y1 -= 1
        self.last_rgb = rgb
        if y1 > y0:
            pixels = convert_pixels(rgb[y0 * stride:y1 * stride], self.fmt)
            if ENC_ZLIB in self.encodings:
                data = self.zlib.compress(pixels) + self.zlib.flush(zlib.Z_SYNC_FLUSH)
                rects.append(struct.pack(">HHHHiI", 0, y0, width, y1 - y0, ENC_ZLIB, len(data)) + data)
            else:
                rects.append(struct.pack(">HHHHi", 0, y0, width, y1 - y0, ENC_RAW) + pixels)
        if not rects:
            return                                           # nothing changed: keep the request open
        self.request = None
        self.sock.sendall(struct.pack(">BxH", 0, len(rects)) + b"".join(rects))
