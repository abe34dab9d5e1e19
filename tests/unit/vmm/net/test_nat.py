"""The NAT backend on the real libslirp: DHCP hands out VirtualBox's addresses, port forwards are
added and removed at run time, a port in use is refused, the host resolver answers from the host."""

import socket
import struct
import time

import pytest

from vmm.net import slirp
from vmm.net.hostres import answer, parse_query, reply_frame
from vmm.net.nat import NatBackend, NatConfig, NatError, NatRule, addresses

try:
    slirp.library()
except slirp.SlirpError as e:        # pragma: no cover - install.sh installs libslirp0
    pytest.skip(str(e), allow_module_level=True)

MAC = bytes.fromhex("080027123456")


def csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def dhcp_discover() -> bytes:
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, 0x1234, 0, 0x8000, bytes(4), bytes(4),
                        bytes(4), bytes(4), MAC + bytes(10), bytes(64), bytes(128))
    bootp += bytes([99, 130, 83, 99, 53, 1, 1, 255])
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4),
                               b"\xff" * 4))
    struct.pack_into("!H", ip, 10, csum(bytes(ip)))
    return b"\xff" * 6 + MAC + b"\x08\x00" + bytes(ip) + udp


def wait(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_addresses_follow_virtualbox():
    a = addresses(NatConfig(slot=0))
    assert (a.network, a.gateway, a.dns, a.guest) == ("10.0.2.0", "10.0.2.2", "10.0.2.3", "10.0.2.15")
    assert addresses(NatConfig(slot=2)).guest == "10.0.4.15"
    assert addresses(NatConfig(network="192.168.77.0/24")).gateway == "192.168.77.2"
    with pytest.raises(NatError):
        addresses(NatConfig(network="10.0.2.0/30"))
    with pytest.raises(NatError):
        addresses(NatConfig(network="bogus"))


def test_dhcp_and_runtime_port_forwards():
    got = []
    nat = NatBackend(NatConfig(slot=0))
    try:
        nat.attach(got.append)
        nat.send(dhcp_discover())
        wait(lambda: got)
        offer = got[0]
        assert socket.inet_ntoa(offer[14 + 20 + 8 + 16:14 + 20 + 8 + 20]) == "10.0.2.15"
        port = free_port()
        nat.add_rule(NatRule("web", False, "127.0.0.1", port, "", 80))
        with pytest.raises(NatError, match="already exists"):
            nat.add_rule(NatRule("web", False, "127.0.0.1", free_port(), "", 81))
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            with pytest.raises(NatError, match="cannot bind"):
                nat.add_rule(NatRule("busy", False, "127.0.0.1", busy.getsockname()[1], "", 22))
        before = len(got)
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        wait(lambda: len(got) > before)                     # slirp looks for the guest (ARP)
        c.close()
        nat.remove_rule("web")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        with pytest.raises(NatError):
            nat.remove_rule("web")
    finally:
        nat.close()


def test_host_resolver_answers_a_queries():
    q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + b"\x09localhost\x00" + struct.pack("!HH", 1, 1)
    udp = struct.pack("!HHHH", 3333, 53, 8 + len(q), 0) + q
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([10, 0, 2, 15]),
                     bytes([10, 0, 2, 3]))
    frame = bytes.fromhex("52550a000203") + MAC + b"\x08\x00" + ip + udp
    parsed = parse_query(frame, "10.0.2.3")
    assert parsed is not None and parsed[3] == 3333
    resp = answer(parsed[4], lambda name: ["127.0.0.1"] if name == "localhost" else [], "10.0.2.2")
    hid, flags, qd, an = struct.unpack_from("!HHHH", resp)
    assert (hid, flags & 0x800F, qd, an) == (0x4242, 0x8000, 1, 1)
    assert resp[-4:] == bytes([10, 0, 2, 2])                  # loopback becomes the NAT gateway
    nx = answer(parsed[4], lambda name: [], "10.0.2.2")
    assert struct.unpack_from("!H", nx, 2)[0] & 0x000F == 3
    out = reply_frame(MAC, bytes.fromhex("52550a000203"), bytes([10, 0, 2, 15]), 3333, "10.0.2.3", resp)
    assert out[:6] == MAC and csum(out[14:34]) == 0
    assert answer(b"\x00" * 5, lambda n: [], "10.0.2.2") is None
    assert parse_query(frame[:40], "10.0.2.3") is None
