"""The NAT engine's host resolver (`--natdnshostresolver<N> on`): DNS queries the guest sends to the
NAT's name server are answered from the host's own resolver (getaddrinfo: /etc/hosts, then the
host's DNS), as VirtualBox's NAT does, instead of being forwarded to the host's name servers.

Only A queries get answers (other types an empty NOERROR); loopback addresses are rewritten to
the NAT gateway, the guest's way to the host.  Malformed queries are dropped.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
from collections.abc import Callable

from vmm.devices.net.offload import checksum

DNS_PORT = 53
TYPE_A, CLASS_IN = 1, 1
FLAGS_OK, FLAGS_NXDOMAIN, FLAGS_FORMERR = 0x8180, 0x8183, 0x8181
MAX_NAME = 255


def parse_query(frame: bytes, dns_ip: str) -> tuple[bytes, bytes, bytes, int, bytes] | None:
    """(guest MAC, our MAC, guest IP, guest port, DNS message) of a UDP query to dns_ip:53, else None."""
    if len(frame) < 14 + 20 + 8 + 12 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14 + 9] != 17 or frame[14 + 16:14 + 20] != ipaddress.IPv4Address(dns_ip).packed:
        return None
    udp = 14 + ihl
    if len(frame) < udp + 8:
        return None
    sport, dport, ulen = struct.unpack_from("!HHH", frame, udp)
    if dport != DNS_PORT or ulen < 8 + 12 or udp + ulen > len(frame):
        return None
    return frame[6:12], frame[0:6], frame[14 + 12:14 + 16], sport, frame[udp + 8:udp + ulen]


def _question(msg: bytes) -> tuple[str, int, int, int] | None:
    """(name, qtype, qclass, end offset) of the single question."""
    if len(msg) < 12 or struct.unpack_from("!H", msg, 4)[0] != 1:
        return None
    pos, labels = 12, []
    while True:
        if pos >= len(msg):
            return None
        n = msg[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0 or pos + 1 + n > len(msg):
            return None
        labels.append(msg[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
        if pos > 12 + MAX_NAME:
            return None
    if pos + 4 > len(msg):
        return None
    qtype, qclass = struct.unpack_from("!HH", msg, pos)
    return ".".join(labels), qtype, qclass, pos + 4


def answer(msg: bytes, resolve: Callable[[str], list[str]], gateway: str) -> bytes | None:
    q = _question(msg)
    if q is None:
        return None
    name, qtype, qclass, end = q
    header_id, flags = struct.unpack_from("!HH", msg, 0)
    rd = flags & 0x0100
    answers = []
    status = FLAGS_OK
    if qtype == TYPE_A and qclass == CLASS_IN:
        try:
            addrs = resolve(name)
        except OSError:
            addrs = []
        if not addrs:
            status = FLAGS_NXDOMAIN
        for a in addrs:
            ip = ipaddress.IPv4Address(a)
            if ip.is_loopback:
                ip = ipaddress.IPv4Address(gateway)
            answers.append(struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, 300, 4) + ip.packed)
    out_flags = (status & ~0x0100) | rd
    return (struct.pack("!HHHHHH", header_id, out_flags, 1, len(answers), 0, 0) + msg[12:end]
            + b"".join(answers))


def host_lookup(name: str) -> list[str]:
    seen: list[str] = []
    for *_, addr in socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_DGRAM):
        if addr[0] not in seen:
            seen.append(addr[0])
    return seen


def reply_frame(guest_mac: bytes, our_mac: bytes, guest_ip: bytes, guest_port: int, dns_ip: str,
                payload: bytes) -> bytes:
    src = ipaddress.IPv4Address(dns_ip).packed
    udp_len = 8 + len(payload)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, 64, 17, 0, src, guest_ip))
    struct.pack_into("!H", ip, 10, checksum(ip))
    pseudo = src + guest_ip + struct.pack("!BBH", 0, 17, udp_len)
    udp = bytearray(struct.pack("!HHHH", DNS_PORT, guest_port, udp_len, 0) + payload)
    struct.pack_into("!H", udp, 6, checksum(pseudo + udp))
    return guest_mac + our_mac + b"\x08\x00" + bytes(ip) + bytes(udp)


class HostResolver:
    """Answers the guest's queries on worker threads (getaddrinfo blocks) and hands back frames."""

    def __init__(self, dns_ip: str, gateway: str, deliver: Callable[[bytes], None],
                 resolve: Callable[[str], list[str]] = host_lookup, max_pending: int = 16):
        self.dns_ip = dns_ip
        self.gateway = gateway
        self.deliver = deliver
        self.resolve = resolve
        self._slots = threading.Semaphore(max_pending)

    def handle(self, frame: bytes) -> bool:
        """True if the frame was a DNS query for us (answered or dropped), False to pass it on."""
        q = parse_query(frame, self.dns_ip)
        if q is None:
            return False
        if not self._slots.acquire(blocking=False):
            return True                        # too many lookups in flight: drop, the guest retries
        threading.Thread(target=self._work, args=(q,), daemon=True, name="NAT-hostres").start()
        return True

    def _work(self, q) -> None:
        try:
            guest_mac, our_mac, guest_ip, guest_port, msg = q
            payload = answer(msg, self.resolve, self.gateway)
            if payload is not None:
                self.deliver(reply_frame(guest_mac, our_mac, guest_ip, guest_port, self.dns_ip, payload))
        finally:
            self._slots.release()
