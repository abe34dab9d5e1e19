"""The pcap writer: libpcap's classic format, readable back (and by tcpdump when installed)."""

import shutil
import struct
import subprocess

from vmm.net.pcap import PCAP_MAGIC, PcapWriter, read_pcap


def test_header_and_records(tmp_path):
    path = tmp_path / "t.pcap"
    times = iter([1000.25, 1001.5, 1002.0])
    w = PcapWriter(str(path), clock=lambda: next(times))
    frames = [bytes.fromhex("ffffffffffff080027aabbcc0806") + bytes(46), b"\x01" * 1514]
    for f in frames:
        w.write(f)
    w.close()
    w.write(b"after close is ignored")
    data = path.read_bytes()
    magic, major, minor, _, _, snaplen, link = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor, snaplen, link) == (PCAP_MAGIC, 2, 4, 65535, 1)
    assert read_pcap(str(path)) == [(1000.25, frames[0]), (1001.5, frames[1])]
    if shutil.which("tcpdump"):
        out = subprocess.run(["tcpdump", "-nr", str(path)], capture_output=True, text=True)
        assert out.returncode == 0 and "ARP" in out.stdout
