"""Raw images, format detection by content, and the crash-safe metadata committer."""

import os
import struct
import zlib

import pytest

from vmm.storage import DiskImageError, create_raw, image_info, open_image
from vmm.storage.committer import Committer, journal_path, replay

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
    c = Committer(fd, str(p))
    c.ordered([("t.a", 10, b"abc"), ("t.b", 4096, b"xyz"), ("t.c", 11, b"Q")])
    c.atomic([(20, b"one"), (5000, b"two")])
    c.close()
    os.close(fd)
    raw = p.read_bytes()
    assert raw[10:13] == b"aQc" and raw[4096:4099] == b"xyz"
    assert raw[20:23] == b"one" and raw[5000:5003] == b"two"
    assert not os.path.exists(journal_path(str(p)))


def test_a_complete_journal_is_replayed_and_a_torn_one_dropped(tmp_path):
    """What a kill after the record's fsync (or in the middle of writing it) leaves behind."""
    p = tmp_path / "f"
    p.write_bytes(bytes(4096))
    body = struct.pack("<QI", 0, 4) + b"full" + struct.pack("<QI", 100, 4) + b"part"
    record = struct.pack("<8sQI", b"VBPYJRN1", len(body), zlib.crc32(body)) + body
    jpath = journal_path(str(p))
    with open(jpath, "wb") as f:
        f.write(record)
    fd = os.open(p, os.O_RDWR)
    assert replay(str(p), fd)
    raw = p.read_bytes()
    assert raw[0:4] == b"full" and raw[100:104] == b"part"
    assert not os.path.exists(jpath)
    p.write_bytes(bytes(4096))
    with open(jpath, "wb") as f:
        f.write(record[:-3])                    # the writer died while writing the record
    assert replay(str(p), fd)
    os.close(fd)
    assert p.read_bytes() == bytes(4096) and not os.path.exists(jpath)
