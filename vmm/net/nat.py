"""VirtualBox's NAT attachment on libslirp, running inside the VM process.

Addresses follow VirtualBox's NAT engine (DrvNAT): on the network 10.0.<slot+2>.0/24 (or the
machine's `--natnet<N>`), the gateway and host are .2, the DNS proxy .3, and DHCP hands the
guest .15.  One poll thread drives libslirp's sockets and timers; frames from the NIC enter on
the vCPU thread; one lock serializes every libslirp call.  Port-forwarding rules can be added
and removed while the VM runs (`controlvm natpf<N>`).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vmm.net.slirp import POLL_ERR, POLL_HUP, POLL_IN, POLL_OUT, POLL_PRI, Slirp, SlirpError

log = logging.getLogger("vboxpy.nat")

_TO_POLL = ((POLL_IN, select.POLLIN), (POLL_OUT, select.POLLOUT), (POLL_PRI, select.POLLPRI),
            (POLL_ERR, select.POLLERR), (POLL_HUP, select.POLLHUP))
MAX_SLEEP_MS = 1000


class NatError(Exception):
    """A NAT setting or rule that cannot be applied (the text says which)."""


@dataclass(frozen=True)
class NatRule:
    name: str
    udp: bool
    host_ip: str
    host_port: int
    guest_ip: str
    guest_port: int


@dataclass
class NatConfig:
    network: str = ""                 # "10.0.2.0/24"; empty: VirtualBox's default for the slot
    slot: int = 0
    rules: list[NatRule] = field(default_factory=list)
    localhost_reachable: bool = True
    bind_ip: str = ""
    dns_proxy: bool = False
    dns_host_resolver: bool = False
    tftp_prefix: str = ""
    tftp_boot_file: str = ""
    tftp_next_server: str = ""
    mtu: int = 0
    alias_mode: int = 0


@dataclass(frozen=True)
class NatAddresses:
    network: str
    netmask: str
    gateway: str
    dns: str
    guest: str


def addresses(cfg: NatConfig) -> NatAddresses:
    """VirtualBox's layout of the NAT network (DrvNAT.cpp: host .2, name server .3, guest .15)."""
    text = cfg.network or f"10.0.{cfg.slot + 2}.0/24"
    try:
        net = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise NatError(f"NAT network '{text}' is not a valid IPv4 network (use a.b.c.d/len)") from None
    if net.prefixlen > 28:
        raise NatError(f"NAT network '{text}' is too small (the prefix must be /28 or shorter)")
    base = net.network_address
    return NatAddresses(str(base), str(net.netmask), str(base + 2), str(base + 3), str(base + 15))


class NatBackend:
    """The NAT attachment of one NIC: `send` a guest frame, frames for the guest go to the sink.

    libslirp takes IP packets of any size from the guest side, so a NIC may hand it a TCP
    segmentation offload packet whole (`accepts_large_frames`) instead of cutting it up."""

    accepts_large_frames = True

    def __init__(self, cfg: NatConfig, clock_ns: Callable[[], int] | None = None):
        self.cfg = cfg
        self.addr = addresses(cfg)
        self.description = f"NAT {self.addr.network}/{self.addr.netmask}"
        self._sink: Callable[[bytes], None] | None = None
        self._lock = threading.Lock()
        self._rules: dict[str, NatRule] = {}
        self._stop = False
        self._sleeping = False
        self._cycle = 0                        # poll() calls completed (see _sync_poller)
        self._cycle_cond = threading.Condition()
        self._rfd, self._wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self.slirp = Slirp(self.addr.network, self.addr.netmask, self.addr.gateway, self.addr.guest,
                               self.addr.dns, self._from_slirp,
                               disable_host_loopback=not cfg.localhost_reachable,
                               tftp_prefix=cfg.tftp_prefix, bootfile=cfg.tftp_boot_file,
                               tftp_server=cfg.tftp_next_server, mtu=cfg.mtu or 1500,
                               on_guest_error=lambda m: log.warning("NAT: guest error: %s", m),
                               clock_ns=clock_ns, on_timer_change=self._wake)
        except SlirpError as e:
            self._close_pipe()
            raise NatError(str(e)) from None
        self.hostres = None
        if cfg.dns_host_resolver:
            from vmm.net.hostres import HostResolver
            self.hostres = HostResolver(self.addr.dns, self.addr.gateway, self._from_slirp)
        for rule in cfg.rules:
            try:
                self.add_rule(rule)
            except NatError as e:      # VirtualBox logs a rule it cannot bind and runs on
                log.error("NAT: %s", e)
        self._thread = threading.Thread(target=self._poll_loop, name=f"NAT#{cfg.slot}", daemon=True)
        self._thread.start()

    # -- the frame interface --------------------------------------------------------------------------
    def attach(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink

    def send(self, frame: bytes) -> None:
        if self.hostres is not None and self.hostres.handle(frame):
            return
        with self._lock:
            if self.slirp is None:
                return
            self.slirp.input(frame)
        self._wake()

    def _from_slirp(self, frame: bytes) -> None:
        if self._sink is not None:
            self._sink(frame)

    # -- port forwarding ---------------------------------------------------------------------------------
    def add_rule(self, rule: NatRule) -> None:
        host_ip = rule.host_ip or self.cfg.bind_ip
        guest_ip = rule.guest_ip or self.addr.guest
        try:
            ipaddress.IPv4Address(host_ip or "0.0.0.0")
            ipaddress.IPv4Address(guest_ip)
        except ValueError:
            raise NatError(f"rule '{rule.name}': invalid IPv4 address") from None
        with self._lock:
            if rule.name in self._rules:
                raise NatError(f"rule '{rule.name}' already exists")
            ok = self.slirp.add_hostfwd(rule.udp, host_ip, rule.host_port, guest_ip, rule.guest_port)
            if not ok:
                raise NatError(f"rule '{rule.name}': cannot bind {'UDP' if rule.udp else 'TCP'} "
                               f"{host_ip or '0.0.0.0'}:{rule.host_port} (port in use or not allowed)")
            self._rules[rule.name] = rule
        log.info("NAT: redirect %s %s %s:%d -> %s:%d", rule.name, "UDP" if rule.udp else "TCP",
                 host_ip or "*", rule.host_port, guest_ip, rule.guest_port)
        self._wake()

    def remove_rule(self, name: str) -> None:
        with self._lock:
            rule = self._rules.pop(name, None)
            if rule is None:
                raise NatError(f"no rule named '{name}'")
            # libslirp removes the first socket bound to that address: an accepted connection of the
            # rule may come before the listener, so repeat until none is left
            for _ in range(256):
                if not self.slirp.remove_hostfwd(rule.udp, rule.host_ip or self.cfg.bind_ip, rule.host_port):
                    break
        log.info("NAT: removed redirect %s", name)
        self._sync_poller()

    def _sync_poller(self) -> None:
        """Wait until the poll thread has left a poll() that started before now: a closed listener
        stays alive (and accepts connections) while a poll() still holds it."""
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            return
        with self._cycle_cond:
            start = self._cycle
            self._wake()
            self._cycle_cond.wait_for(lambda: self._cycle != start or self._stop, timeout=2)

    @property
    def rules(self) -> list[NatRule]:
        with self._lock:
            return list(self._rules.values())

    # -- poll thread -------------------------------------------------------------------------------------
    def _wake(self) -> None:
        if self._sleeping:
            try:
                os.write(self._wfd, b"x")
            except (BlockingIOError, OSError):
                pass

    def _poll_loop(self) -> None:
        poller_flags = _TO_POLL
        while not self._stop:
            with self._lock:
                if self.slirp is None:
                    return
                fds, timeout_ms = self.slirp.pollfds_fill()
                next_timer = self.slirp.next_timer_ms()
            sleep = min(timeout_ms, MAX_SLEEP_MS)
            if next_timer is not None:
                sleep = max(0, min(sleep, next_timer - time.monotonic_ns() // 1_000_000))
            poller = select.poll()
            poller.register(self._rfd, select.POLLIN)
            for fd, ev in fds:
                poller.register(fd, sum(p for s, p in poller_flags if ev & s))
            self._sleeping = True
            try:
                ready = dict(poller.poll(sleep))
            except OSError:
                ready, error = {}, True
            else:
                error = False
            self._sleeping = False
            with self._cycle_cond:
                self._cycle += 1
                self._cycle_cond.notify_all()
            if ready.pop(self._rfd, 0):
                try:
                    os.read(self._rfd, 4096)
                except BlockingIOError:
                    pass
            revents = [sum(s for s, p in poller_flags if ready.get(fd, 0) & p) for fd, _ in fds]
            with self._lock:
                if self.slirp is None:
                    return
                self.slirp.pollfds_poll(revents, error)
                self.slirp.run_timers()

    def connection_info(self) -> str:
        with self._lock:
            return self.slirp.connection_info() if self.slirp else ""

    def close(self) -> None:
        self._stop = True
        self._sleeping = True
        self._wake()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(2)
        with self._lock:
            if self.slirp is not None:
                self.slirp.close()
                self.slirp = None
        self._close_pipe()

    def _close_pipe(self) -> None:
        for fd in (self._rfd, self._wfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._rfd = self._wfd = -1
