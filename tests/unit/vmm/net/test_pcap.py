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


def test_every_frame_is_in_the_file_while_the_vm_runs(tmp_path):
    """A capture read while the VM runs (tcpdump -r, Wireshark) holds every frame written so far."""
    path = tmp_path / "live.pcap"
    w = PcapWriter(str(path), clock=lambda: 5.0)
    try:
        for i in range(3):
            w.write(bytes([i]) * 60)
            assert [f for _, f in read_pcap(str(path))] == [bytes([j]) * 60 for j in range(i + 1)]
    finally:
        w.close()
