"""Checksum and TCP segmentation offload shared by the NIC models.

Both the e1000 (context descriptors) and virtio-net (the virtio_net_hdr) let the guest leave
checksums and segmentation to the device.  The NIC parses the guest's description; these
helpers do the arithmetic.  Every offset is checked against the frame: a description that
points outside it leaves the frame unchanged.
"""

from __future__ import annotations

import struct

ETH_HLEN = 14
ETH_P_IP = 0x0800
IPPROTO_TCP = 6
IPPROTO_UDP = 17
TCP_FIN, TCP_PSH = 0x01, 0x08


def ones_sum(data, start: int = 0) -> int:
    """The 16-bit ones' complement sum (not complemented) of data, folded, plus start."""
    mv = memoryview(data)
    n = len(mv)
    total = start
    if n & 1:
        total += mv[n - 1] << 8
        n -= 1
    if n > 64:
        value = int.from_bytes(mv[:n], "big")
        folded = value % 0xFFFF              # 2**16 == 1 (mod 0xFFFF): the word sum, folded
        total += folded if folded or not value else 0xFFFF
    elif n:
        total += sum(struct.unpack(f"!{n // 2}H", mv[:n]))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(data, start: int = 0) -> int:
    """The Internet checksum (RFC 1071) of data with a partial sum start."""
    return (~ones_sum(data, start) & 0xFFFF) or 0xFFFF      # 0 and 0xFFFF are both zero; UDP needs the latter


def insert_checksum(frame: bytearray, start: int, offset: int, end: int = 0) -> bool:
    """Sum frame[start:end or len] (the field already holds the pseudo-header part) and store the
    complement at offset.  False (frame untouched) if the offsets do not fit the frame."""
    stop = end + 1 if end else len(frame)
    if not 0 <= start < stop <= len(frame) or not 0 <= offset <= len(frame) - 2:
        return False
    c = checksum(memoryview(frame)[start:stop])
    struct.pack_into("!H", frame, offset, c)
    return True


def _pseudo_add(partial: int, length: int) -> int:
    s = partial + length
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def segment_tcp(frame: bytes, hdr_len: int, mss: int, ip_off: int = ETH_HLEN,
                l4_off: int | None = None, ipv4: bool = True, udp: bool = False) -> list[bytes]:
    """Cut a large TCP (or UDP, as IP fragments are not modelled: one datagram) frame into frames
    carrying at most mss payload bytes each, fixing lengths, IP ids, sequence numbers, flags and
    checksums.  For IPv4 the pseudo-header is computed from the IP header (drivers leave different
    partial sums in the field: e1000's without the length, virtio's with the whole packet's); for
    IPv6 the field must hold the sum without length.  A description that does not fit the frame
    returns the frame as is."""
    if l4_off is None:
        l4_off = ip_off + ((frame[ip_off] & 0x0F) * 4 if ipv4 and len(frame) > ip_off else 40)
    if (mss <= 0 or not ip_off < l4_off < hdr_len <= len(frame) or ip_off + 20 > hdr_len
            or l4_off + (8 if udp else 20) > hdr_len):
        return [frame]
    header = bytearray(frame[:hdr_len])
    payload = memoryview(frame)[hdr_len:]
    if udp:
        out = bytearray(frame)
        _fix_ip(out, ip_off, len(out) - ip_off, ipv4, 0)
        struct.pack_into("!H", out, l4_off + 4, len(out) - l4_off)
        _l4_checksum(out, ip_off, l4_off, l4_off + 6, ipv4, IPPROTO_UDP)
        return [bytes(out)]
    seq = struct.unpack_from("!I", header, l4_off + 4)[0]
    flags = header[l4_off + 13]
    partial = struct.unpack_from("!H", header, l4_off + 16)[0]
    ip_id = struct.unpack_from("!H", header, ip_off + 4)[0] if ipv4 else 0
    frames = []
    total = len(payload)
    pos = 0
    index = 0
    while True:
        chunk = payload[pos:pos + mss]
        last = pos + mss >= total
        seg = bytearray(header)
        seg += chunk
        _fix_ip(seg, ip_off, len(seg) - ip_off, ipv4, (ip_id + index) & 0xFFFF)
        struct.pack_into("!I", seg, l4_off + 4, (seq + pos) & 0xFFFF_FFFF)
        if not last:
            seg[l4_off + 13] = flags & ~(TCP_FIN | TCP_PSH)
        if not ipv4:
            struct.pack_into("!H", seg, l4_off + 16, _pseudo_add(partial, len(seg) - l4_off))
        _l4_checksum(seg, ip_off, l4_off, l4_off + 16, ipv4, IPPROTO_TCP)
        frames.append(bytes(seg))
        pos += mss
        index += 1
        if last:
            return frames


def _l4_checksum(seg: bytearray, ip_off: int, l4_off: int, field: int, ipv4: bool, proto: int) -> None:
    if ipv4:
        struct.pack_into("!H", seg, field, 0)
        pseudo = ones_sum(bytes(seg[ip_off + 12:ip_off + 20]) + struct.pack("!HH", proto, len(seg) - l4_off))
        struct.pack_into("!H", seg, field, checksum(memoryview(seg)[l4_off:], pseudo))
    else:
        insert_checksum(seg, l4_off, field)


def _fix_ip(seg: bytearray, ip_off: int, ip_len: int, ipv4: bool, ip_id: int) -> None:
    if ipv4:
        struct.pack_into("!HH", seg, ip_off + 2, ip_len, ip_id)
        struct.pack_into("!H", seg, ip_off + 10, 0)
        ihl = (seg[ip_off] & 0x0F) * 4
        struct.pack_into("!H", seg, ip_off + 10, checksum(memoryview(seg)[ip_off:ip_off + ihl]))
    else:
        struct.pack_into("!H", seg, ip_off + 4, ip_len - 40)


def l4_kind(frame: bytes) -> tuple[int, int] | None:
    """(IP header offset, protocol) of an IPv4 TCP/UDP frame, else None (for RX checksum flags)."""
    if len(frame) < ETH_HLEN + 20 or frame[12:14] != b"\x08\x00" or frame[ETH_HLEN] >> 4 != 4:
        return None
    proto = frame[ETH_HLEN + 9]
    if proto not in (IPPROTO_TCP, IPPROTO_UDP):
        return None
    if struct.unpack_from("!H", frame, ETH_HLEN + 6)[0] & 0x3FFF:     # a fragment
        return None
    return ETH_HLEN, proto
