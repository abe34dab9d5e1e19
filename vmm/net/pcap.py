"""The pcap writer behind `--nictrace<N> on --nictracefile<N>`: every frame the NIC sends or
receives, in the classic libpcap format (Ethernet link type) that Wireshark and tcpdump read."""

from __future__ import annotations

import struct
import threading
import time

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
SNAPLEN = 65535
_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")


class PcapWriter:
    def __init__(self, path: str, clock=time.time):
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        # unbuffered, each record in one write, as VirtualBox's trace writer: a capture read while the
        # VM runs (tcpdump -r, Wireshark, a test) has every frame so far
        self._f = open(path, "wb", buffering=0)
        self._f.write(_FILE_HEADER.pack(PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        self.frames = 0

    def write(self, frame: bytes) -> None:
        now = self._clock()
        sec = int(now)
        usec = int((now - sec) * 1_000_000)
        data = bytes(frame[:SNAPLEN])
        with self._lock:
            if self._f is None:
                return
            self._f.write(_RECORD_HEADER.pack(sec, usec, len(data), len(frame)) + data)
            self.frames += 1

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None


def read_pcap(path: str) -> list[tuple[float, bytes]]:
    """(timestamp, frame) of each record: for tests and tools."""
    with open(path, "rb") as f:
        data = f.read()
    magic, major, minor, _tz, _sig, _snap, link = _FILE_HEADER.unpack_from(data)
    if magic != PCAP_MAGIC or link != LINKTYPE_ETHERNET:
        raise ValueError(f"{path} is not an Ethernet pcap file")
    out = []
    pos = _FILE_HEADER.size
    while pos + _RECORD_HEADER.size <= len(data):
        sec, usec, incl, _orig = _RECORD_HEADER.unpack_from(data, pos)
        pos += _RECORD_HEADER.size
        out.append((sec + usec / 1e6, data[pos:pos + incl]))
        pos += incl
    return out
