"""A small ctypes binding to libslirp (Debian's libslirp0), the user-mode TCP/IP stack.

Only what the NAT backend needs: create an instance from a `SlirpConfig` (version 4), feed
it frames, drive its sockets through `pollfds_fill`/`pollfds_poll`, add and remove host
port forwards.  libslirp is not thread-safe: the caller serializes every call (vmm.net.nat
holds one lock around them).  Callbacks arrive on the calling thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
from collections.abc import Callable

POLL_IN, POLL_OUT, POLL_PRI, POLL_ERR, POLL_HUP = 1, 2, 4, 8, 16
CONFIG_VERSION = 4


class SlirpError(Exception):
    """libslirp is missing or refused a request."""


def in_addr(text: str) -> int:
    """An IPv4 address as `struct in_addr` holds it (network byte order in a native u32)."""
    return int.from_bytes(ipaddress.IPv4Address(text or "0.0.0.0").packed, "little")


class _In6Addr(ctypes.Structure):
    _fields_ = [("words", ctypes.c_uint32 * 4)]


class SlirpConfig(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint32),
        ("restricted", ctypes.c_int),
        ("in_enabled", ctypes.c_bool),
        ("vnetwork", ctypes.c_uint32),
        ("vnetmask", ctypes.c_uint32),
        ("vhost", ctypes.c_uint32),
        ("in6_enabled", ctypes.c_bool),
        ("vprefix_addr6", _In6Addr),
        ("vprefix_len", ctypes.c_uint8),
        ("vhost6", _In6Addr),
        ("vhostname", ctypes.c_char_p),
        ("tftp_server_name", ctypes.c_char_p),
        ("tftp_path", ctypes.c_char_p),
        ("bootfile", ctypes.c_char_p),
        ("vdhcp_start", ctypes.c_uint32),
        ("vnameserver", ctypes.c_uint32),
        ("vnameserver6", _In6Addr),
        ("vdnssearch", ctypes.POINTER(ctypes.c_char_p)),
        ("vdomainname", ctypes.c_char_p),
        ("if_mtu", ctypes.c_size_t),
        ("if_mru", ctypes.c_size_t),
        ("disable_host_loopback", ctypes.c_bool),
        ("enable_emu", ctypes.c_bool),
        ("outbound_addr", ctypes.c_void_p),
        ("outbound_addr6", ctypes.c_void_p),
        ("disable_dns", ctypes.c_bool),
        ("disable_dhcp", ctypes.c_bool),
    ]


SEND_PACKET = ctypes.CFUNCTYPE(ctypes.c_ssize_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
GUEST_ERROR = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p)
CLOCK_GET_NS = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p)
TIMER_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
TIMER_NEW = ctypes.CFUNCTYPE(ctypes.c_void_p, TIMER_CB, ctypes.c_void_p, ctypes.c_void_p)
TIMER_FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
TIMER_MOD = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)
POLL_FD = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p)
NOTIFY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
INIT_COMPLETED = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
TIMER_NEW_OPAQUE = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
ADD_POLL = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
GET_REVENTS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


class SlirpCb(ctypes.Structure):
    _fields_ = [
        ("send_packet", SEND_PACKET),
        ("guest_error", GUEST_ERROR),
        ("clock_get_ns", CLOCK_GET_NS),
        ("timer_new", TIMER_NEW),
        ("timer_free", TIMER_FREE),
        ("timer_mod", TIMER_MOD),
        ("register_poll_fd", POLL_FD),
        ("unregister_poll_fd", POLL_FD),
        ("notify", NOTIFY),
        ("init_completed", INIT_COMPLETED),
        ("timer_new_opaque", TIMER_NEW_OPAQUE),
    ]


_lib: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    name = ctypes.util.find_library("slirp") or "libslirp.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError as e:
        raise SlirpError(f"libslirp is not installed ({e}); install the libslirp0 package") from None
    lib.slirp_new.restype = ctypes.c_void_p
    lib.slirp_new.argtypes = [ctypes.POINTER(SlirpConfig), ctypes.POINTER(SlirpCb), ctypes.c_void_p]
    lib.slirp_cleanup.argtypes = [ctypes.c_void_p]
    lib.slirp_input.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.slirp_pollfds_fill.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32), ADD_POLL,
                                       ctypes.c_void_p]
    lib.slirp_pollfds_poll.argtypes = [ctypes.c_void_p, ctypes.c_int, GET_REVENTS, ctypes.c_void_p]
    lib.slirp_add_hostfwd.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_int,
                                      ctypes.c_uint32, ctypes.c_int]
    lib.slirp_remove_hostfwd.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_int]
    lib.slirp_version_string.restype = ctypes.c_char_p
    lib.slirp_connection_info.restype = ctypes.c_void_p
    lib.slirp_connection_info.argtypes = [ctypes.c_void_p]
    _lib = lib
    return lib


def version() -> str:
    return library().slirp_version_string().decode()


class Slirp:
    """One libslirp instance.  `on_packet(frame)` gets each frame for the guest; `on_timer_change()`
    is called when a slirp timer is (re)armed so the poller can shorten its sleep."""

    def __init__(self, network: str, netmask: str, host: str, dhcp_start: str, nameserver: str,
                 on_packet: Callable[[bytes], None], *, restricted: bool = False,
                 disable_host_loopback: bool = False, hostname: str = "", tftp_prefix: str = "",
                 bootfile: str = "", tftp_server: str = "", domain: str = "", mtu: int = 1500,
                 disable_dns: bool = False, on_guest_error: Callable[[str], None] | None = None,
                 clock_ns: Callable[[], int] | None = None,
                 on_timer_change: Callable[[], None] | None = None):
        import time
        lib = library()
        self._lib = lib
        self._on_packet = on_packet
        self._clock = clock_ns or time.monotonic_ns
        self._on_timer_change = on_timer_change
        self._timers: dict[int, list] = {}      # id -> [callback, cb_opaque, expire_ms or None]
        self._next_timer = 1
        self._strings: list[bytes] = []
        cfg = SlirpConfig()
        cfg.version = CONFIG_VERSION
        cfg.restricted = int(restricted)
        cfg.in_enabled = True
        cfg.vnetwork = in_addr(network)
        cfg.vnetmask = in_addr(netmask)
        cfg.vhost = in_addr(host)
        cfg.in6_enabled = False
        cfg.vdhcp_start = in_addr(dhcp_start)
        cfg.vnameserver = in_addr(nameserver)
        cfg.vhostname = self._keep(hostname)
        cfg.tftp_server_name = self._keep(tftp_server)
        cfg.tftp_path = self._keep(tftp_prefix)
        cfg.bootfile = self._keep(bootfile)
        cfg.vdomainname = self._keep(domain)
        cfg.if_mtu = mtu
        cfg.if_mru = mtu
        cfg.disable_host_loopback = disable_host_loopback
        cfg.disable_dns = disable_dns
        cb = self._cb = SlirpCb()
        cb.send_packet = SEND_PACKET(self._send_packet)
        cb.guest_error = GUEST_ERROR(lambda msg,
                                     _o: on_guest_error and on_guest_error(msg.decode(errors="replace")))
        cb.clock_get_ns = CLOCK_GET_NS(lambda _o: self._clock())
        cb.timer_new = TIMER_NEW(self._timer_new)
        cb.timer_free = TIMER_FREE(self._timer_free)
        cb.timer_mod = TIMER_MOD(self._timer_mod)
        cb.register_poll_fd = POLL_FD(lambda fd, _o: None)
        cb.unregister_poll_fd = POLL_FD(lambda fd, _o: None)
        cb.notify = NOTIFY(lambda _o: None)
        self._cfg = cfg
        self._handle = lib.slirp_new(ctypes.byref(cfg), ctypes.byref(cb), None)
        if not self._handle:
            raise SlirpError("libslirp could not create the NAT instance (bad network settings?)")

    def _keep(self, text: str) -> bytes | None:
        if not text:
            return None
        b = text.encode()
        self._strings.append(b)
        return b

    # -- callbacks (on the thread that called into slirp) ---------------------------------------------
    def _send_packet(self, buf, length, _opaque) -> int:
        try:
            self._on_packet(ctypes.string_at(buf, length))
        except Exception:        # never unwind through C
            pass
        return length

    def _timer_new(self, cb, cb_opaque, _opaque) -> int:
        tid = self._next_timer
        self._next_timer += 1
        self._timers[tid] = [cb, cb_opaque, None]
        return tid

    def _timer_free(self, tid, _opaque) -> None:
        self._timers.pop(tid, None)

    def _timer_mod(self, tid, expire_ms, _opaque) -> None:
        t = self._timers.get(tid)
        if t is not None:
            t[2] = expire_ms
            if self._on_timer_change is not None:
                self._on_timer_change()

    # -- the poll loop's side ---------------------------------------------------------------------------
    def next_timer_ms(self) -> int | None:
        due = [t[2] for t in self._timers.values() if t[2] is not None]
        return min(due) if due else None

    def run_timers(self) -> None:
        now_ms = self._clock() // 1_000_000
        for t in list(self._timers.values()):
            if t[2] is not None and t[2] <= now_ms:
                t[2] = None
                t[0](t[1])

    def pollfds_fill(self) -> tuple[list[tuple[int, int]], int]:
        """The (fd, slirp events) to poll and the longest sleep slirp allows (ms)."""
        fds: list[tuple[int, int]] = []

        def add(fd, events, _opaque):
            fds.append((fd, events))
            return len(fds) - 1
        timeout = ctypes.c_uint32(0xFFFFFFFF)
        cb = ADD_POLL(add)
        self._lib.slirp_pollfds_fill(self._handle, ctypes.byref(timeout), cb, None)
        return fds, timeout.value

    def pollfds_poll(self, revents: list[int], error: bool = False) -> None:
        def get(idx, _opaque):
            return revents[idx] if 0 <= idx < len(revents) else 0
        self._lib.slirp_pollfds_poll(self._handle, int(error), GET_REVENTS(get), None)

    def input(self, frame: bytes) -> None:
        self._lib.slirp_input(self._handle, frame, len(frame))

    def add_hostfwd(self, udp: bool, host_ip: str, host_port: int, guest_ip: str, guest_port: int) -> bool:
        return self._lib.slirp_add_hostfwd(self._handle, int(udp), in_addr(host_ip), host_port,
                                           in_addr(guest_ip), guest_port) == 0

    def remove_hostfwd(self, udp: bool, host_ip: str, host_port: int) -> bool:
        return self._lib.slirp_remove_hostfwd(self._handle, int(udp), in_addr(host_ip), host_port) == 0

    def connection_info(self) -> str:
        p = self._lib.slirp_connection_info(self._handle)
        if not p:
            return ""
        text = ctypes.string_at(p).decode(errors="replace")
        ctypes.CDLL(None).free(ctypes.c_void_p(p))
        return text

    def close(self) -> None:
        if self._handle:
            self._lib.slirp_cleanup(self._handle)
            self._handle = None
