"""Hostile images: every header field and the block map are validated; corruption is a clear
DiskImageError at open, never a crash, a huge allocation or a read outside the file."""

import os
import random
import struct
import uuid

import pytest

from vmm.storage import DiskImageError, create_vdi, open_image

MiB = 1 << 20


@pytest.fixture
def good(tmp_path):
    p = tmp_path / "good.vdi"
    img = create_vdi(str(p), 4 * MiB)
    img.write_at(0, b"\x01" * 100)
    img.write_at(2 * MiB, b"\x02" * 100)
    img.close()
    return p.read_bytes()


def _put(raw: bytes, off: int, fmt: str, value) -> bytes:
    b = bytearray(raw)
    struct.pack_into(fmt, b, off, value)
    return bytes(b)


CORRUPTIONS = {
    "signature": (0x40, "<I", 0xDEADBEEF, None),     # not a VDI any more: opens as raw
    "version": (0x44, "<I", 0x00020000, "unsupported version"),
    "header size small": (0x48, "<I", 100, "header size"),
    "header size huge": (0x48, "<I", 0xFFFFFFFF, "header size|geometry|map"),
    "type zero": (0x4C, "<I", 0, "image type"),
    "type unknown": (0x4C, "<I", 9, "image type"),
    "flags": (0x50, "<I", 0x80, "flags"),
    "map offset zero": (0x154, "<I", 0, "overlaps the header"),
    "map offset beyond file": (0x154, "<I", 0xFFFFF000, "beyond the end|overlaps the block map"),
    "data offset inside map": (0x158, "<I", 0x100000, "overlaps the block map"),
    "data offset beyond file": (0x158, "<I", 0x7FFFFF00, "beyond the end"),
    "disk size zero": (0x170, "<Q", 0, "disk size"),
    "disk size larger than blocks": (0x170, "<Q", 1 << 40, "cannot hold"),
    "block size zero": (0x178, "<I", 0, "block size"),
    "block size not power of two": (0x178, "<I", 3 * MiB, "block size"),
    "block size huge": (0x178, "<I", 1 << 31, "block size"),
    "block extra odd": (0x17C, "<I", 3, "extra"),
    "block count zero": (0x180, "<I", 0, "block count"),
    "block count huge": (0x180, "<I", 0xFFFFFFF0, "block count"),
    "block count beyond file": (0x180, "<I", 1 << 25, "beyond the end|overlaps"),
    "allocated > blocks": (0x184, "<I", 5, "exceeds block count"),
    "allocated too small for map": (0x184, "<I", 1, "beyond the"),
    "lchs sector size": (0x1D4, "<I", 4096, "sector size"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupted_header_field(tmp_path, good, name):
    off, fmt, value, match = CORRUPTIONS[name]
    p = tmp_path / "bad.vdi"
    p.write_bytes(_put(good, off, fmt, value))
    if match is None:
        img = open_image(str(p), read_only=True)
        assert img.format == "RAW"
        img.close()
        return
    with pytest.raises(DiskImageError, match=match):
        open_image(str(p), read_only=True)


def test_null_uuids_and_bad_linkage(tmp_path, good):
    p = tmp_path / "bad.vdi"
    cases = [
        (0x188, bytes(16), "image UUID is null"),
        (0x198, bytes(16), "modification UUID is null"),
        (0x1A8, uuid.uuid4().bytes_le, "non-differencing image with a parent"),
    ]
    for off, value, match in cases:
        raw = bytearray(good)
        raw[off:off + 16] = value
        p.write_bytes(raw)
        with pytest.raises(DiskImageError, match=match):
            open_image(str(p), read_only=True)
    p.write_bytes(_put(good, 0x4C, "<I", 4))            # diff without a parent UUID
    with pytest.raises(DiskImageError, match="without a parent"):
        open_image(str(p), read_only=True)


def test_bad_map_entries(tmp_path, good):
    p = tmp_path / "bad.vdi"
    p.write_bytes(_put(good, 0x100000 + 4, "<I", 0))     # block 1 reuses physical block 0
    with pytest.raises(DiskImageError, match="used twice"):
        open_image(str(p), read_only=True)
    p.write_bytes(_put(good, 0x100000 + 4, "<I", 2))     # beyond cBlocksAllocated (2)
    with pytest.raises(DiskImageError, match="beyond the 2 allocated"):
        open_image(str(p), read_only=True)
    p.write_bytes(good[: 0x200000 + MiB + 10])           # second data block cut off
    with pytest.raises(DiskImageError, match="beyond the end of the file"):
        open_image(str(p), read_only=True)
    p.write_bytes(good[:0x100002])                       # map cut off
    with pytest.raises(DiskImageError, match="block map"):
        open_image(str(p), read_only=True)
    p.write_bytes(good[:100])                            # header cut off
    with pytest.raises(DiskImageError, match="too short"):
        open_image(str(p), read_only=True)


def test_random_header_and_map_corruption_never_escapes(tmp_path, good):
    """Fuzz: open either fails with DiskImageError or yields an image whose reads stay consistent."""
    rnd = random.Random(1234)
    p = tmp_path / "fuzz.vdi"
    hot = list(range(0x40, 0x1D8)) + list(range(0x100000, 0x100010))
    outcomes = {"error": 0, "opened": 0}
    for _ in range(300):
        raw = bytearray(good)
        for _ in range(rnd.randrange(1, 4)):
            pos = rnd.choice(hot)
            raw[pos] = rnd.randrange(256) if rnd.random() < 0.7 else raw[pos] ^ (1 << rnd.randrange(8))
        p.write_bytes(raw)
        try:
            img = open_image(str(p), read_only=True, parent_resolver=lambda u: str(p))
        except DiskImageError:
            outcomes["error"] += 1
            continue
        outcomes["opened"] += 1
        try:
            for off in (0, img.size // 2, max(0, img.size - 4096)):
                n = min(4096, img.size - off)
                img.read_at(off, n)
        except DiskImageError:
            pass
        finally:
            img.close()
    assert outcomes["error"] > 50 and outcomes["opened"] > 10


def test_opening_a_directory_or_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DiskImageError, match="cannot open"):
        open_image(str(tmp_path / "nope.vdi"))
    with pytest.raises(DiskImageError, match="cannot open"):
        open_image(str(tmp_path))
    assert not os.path.exists(tmp_path / "nope.vdi")
