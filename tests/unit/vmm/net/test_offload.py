"""Checksum and segmentation helpers shared by the NICs."""

import os
import struct

from vmm.devices.net.offload import checksum, insert_checksum, ones_sum, segment_tcp


def reference_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_ones_sum_matches_the_definition():
    for n in (0, 1, 2, 3, 64, 65, 66, 1500, 9001):
        d = os.urandom(n)
        assert ones_sum(d) % 0xFFFF == reference_sum(d) % 0xFFFF
    assert ones_sum(b"\xff\xff" * 100) == 0xFFFF and ones_sum(bytes(100)) == 0
    assert checksum(bytes(20)) == 0xFFFF


def test_insert_checksum_refuses_offsets_outside_the_frame():
    f = bytearray(os.urandom(60))
    before = bytes(f)
    assert not insert_checksum(f, 70, 10)
    assert not insert_checksum(f, 10, 59)
    assert bytes(f) == before
    f[30:32] = b"\0\0"                       # no pseudo-header part in the field
    assert insert_checksum(f, 20, 30)
    assert ones_sum(f[20:]) in (0, 0xFFFF)


def test_segment_rejects_nonsense_descriptions():
    frame = bytes(200)
    assert segment_tcp(frame, hdr_len=500, mss=100) == [frame]
    assert segment_tcp(frame, hdr_len=54, mss=0) == [frame]
