"""Raw images, format detection by content, and the all-or-nothing metadata commit helper."""

import os
import struct

import pytest

from vmm.storage import DiskImageError, create_raw, image_info, open_image
from vmm.storage.committer import _HELPER, Committer

MiB = 1 << 20


def test_raw_image_read_write_discard(tmp_path):
    p = str(tmp_path / "disk.img")
    img = create_raw(p, 2 * MiB)
    img.write_at(1000, b"hello")
    img.discard(1002, 10)
    assert img.read_at(998, 10) == b"\0\0he" + bytes(6)
    with pytest.raises(DiskImageError):
        img.write_at(2 * MiB - 1, b"xx")
    img.close()
    img = open_image(p, read_only=True)
    assert img.format == "RAW" and img.size == 2 * MiB
    with pytest.raises(DiskImageError, match="read-only"):
        img.write_at(0, b"x")
    img.close()
    info = image_info(p)
    assert info.format == "RAW" and info.uuid is None and info.size == 2 * MiB


def test_a_file_that_merely_mentions_vdi_is_raw(tmp_path):
    p = tmp_path / "text.img"
    p.write_bytes(b"<<< Oracle VirtualBox Disk Image >>>\n".ljust(512, b"\0"))
    img = open_image(str(p))
    assert img.format == "RAW"
    img.close()


def test_create_raw_refuses_bad_size_and_existing(tmp_path):
    with pytest.raises(DiskImageError):
        create_raw(str(tmp_path / "a.img"), 0)
    (tmp_path / "b.img").write_bytes(b"x")
    with pytest.raises(DiskImageError, match="exists"):
        create_raw(str(tmp_path / "b.img"), MiB)


def test_committer_applies_writes_in_order(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(bytes(8192))
    fd = os.open(p, os.O_RDWR)
    c = Committer(fd)
    c.commit([(10, b"abc"), (4096, b"xyz"), (11, b"Q")])
    c.close()
    os.close(fd)
    raw = p.read_bytes()
    assert raw[10:13] == b"aQc" and raw[4096:4099] == b"xyz"


def test_helper_ignores_a_message_cut_short_by_the_writers_death(tmp_path):
    """What a kill -9 in the middle of sending a commit leaves: nothing of it is applied."""
    import subprocess
    import sys

    p = tmp_path / "f"
    p.write_bytes(bytes(4096))
    fd = os.open(p, os.O_RDWR)
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _HELPER, str(fd), str(to_r), str(from_w)],
                            pass_fds=(fd, to_r, from_w))
    os.close(to_r)
    os.close(from_w)
    body = struct.pack("<QI", 0, 4) + b"full" + struct.pack("<QI", 100, 4) + b"part"
    os.write(to_w, struct.pack("<I", len(body)) + body)
    assert struct.unpack("<I", os.read(from_r, 4))[0] == 0
    body2 = struct.pack("<QI", 200, 4) + b"lost"
    os.write(to_w, struct.pack("<I", len(body2)) + body2[:-2])   # the writer dies here
    os.close(to_w)
    assert proc.wait(timeout=30) == 0
    os.close(from_r)
    os.close(fd)
    raw = p.read_bytes()
    assert raw[0:4] == b"full" and raw[100:104] == b"part" and raw[200:204] == bytes(4)


def test_committer_survives_its_helper_being_killed(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(bytes(4096))
    fd = os.open(p, os.O_RDWR)
    c = Committer(fd)
    c.commit([(0, b"one")])
    c._proc.kill()
    c._proc.wait()
    c.commit([(8, b"two")])                 # falls back to writing in-process
    c.commit([(16, b"three")])
    c.close()
    os.close(fd)
    raw = p.read_bytes()
    assert raw[0:3] == b"one" and raw[8:11] == b"two" and raw[16:21] == b"three"
