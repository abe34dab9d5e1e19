"""Byte layout of the VDI files we create and the header shapes we read (v1.1+, QEMU's 384, v0)."""

import os
import struct
import uuid

import pytest

from vmm.storage import DiskImageError, create_diff_vdi, create_vdi, image_info, open_image
from vmm.storage.vdi_header import (
    HEADER_V0_SIZE,
    NULL_UUID,
    SIGNATURE,
    VERSION_1_1,
    VdiHeader,
    new_header,
    parse_header,
)


def _u32(raw, off):
    return struct.unpack_from("<I", raw, off)[0]


def test_dynamic_image_layout_is_virtualbox_byte_for_byte(tmp_path):
    p = tmp_path / "d.vdi"
    u = uuid.UUID("12345678-9abc-def0-1122-334455667788")
    create_vdi(str(p), 10 << 30, uuid=u).close()
    raw = p.read_bytes()
    assert raw[:64].rstrip(b"\0") == b"<<< Oracle VirtualBox Disk Image >>>\n"
    assert raw[0x40:0x44] == b"\x7f\x10\xda\xbe"
    assert _u32(raw, 0x44) == 0x00010001
    assert _u32(raw, 0x48) == 400
    assert _u32(raw, 0x4C) == 1                      # normal (dynamic)
    assert _u32(raw, 0x50) == 0
    assert raw[0x54:0x154] == bytes(256)             # no comment
    assert _u32(raw, 0x154) == 0x100000              # offBlocks
    assert _u32(raw, 0x158) == 0x200000              # offData: map of 40 KiB rounded to 1 MiB
    assert struct.unpack_from("<4I", raw, 0x15C) == (0, 0, 0, 512)
    assert struct.unpack_from("<Q", raw, 0x170)[0] == 10 << 30
    assert _u32(raw, 0x178) == 1 << 20
    assert _u32(raw, 0x17C) == 0
    assert _u32(raw, 0x180) == 10240
    assert _u32(raw, 0x184) == 0
    assert raw[0x188:0x198] == u.bytes_le            # UUIDs little-endian (RTUUID)
    assert raw[0x198:0x1A8] != bytes(16)
    assert raw[0x1A8:0x1C8] == bytes(32)             # no parent
    assert struct.unpack_from("<4I", raw, 0x1C8) == (0, 0, 0, 512)
    assert raw[0x1D8:0x100000] == bytes(0x100000 - 0x1D8)
    assert raw[0x100000:0x100000 + 4 * 10240] == b"\xff" * 4 * 10240
    assert len(raw) == 0x200000                      # "Size on disk: 2 MBytes"


def test_fixed_image_is_preallocated_with_identity_map(tmp_path):
    p = tmp_path / "f.vdi"
    img = create_vdi(str(p), 3 << 20, fixed=True)
    assert img.variant == "fixed" and img.allocated_blocks == 3
    img.close()
    raw = p.read_bytes()
    assert _u32(raw, 0x4C) == 2
    assert struct.unpack_from("<3I", raw, 0x100000) == (0, 1, 2)
    assert len(raw) == 0x200000 + 3 * (1 << 20)


def test_diff_image_records_parent_uuid_and_modify_uuid(tmp_path):
    base = create_vdi(str(tmp_path / "base.vdi"), 4 << 20)
    base.write_at(0, b"x" * 512)
    base.close()
    info = image_info(str(tmp_path / "base.vdi"))
    create_diff_vdi(str(tmp_path / "child.vdi"), str(tmp_path / "base.vdi")).close()
    raw = (tmp_path / "child.vdi").read_bytes()
    assert _u32(raw, 0x4C) == 4
    assert uuid.UUID(bytes_le=raw[0x1A8:0x1B8]) == uuid.UUID(info.uuid)
    assert uuid.UUID(bytes_le=raw[0x1B8:0x1C8]) == uuid.UUID(info.modify_uuid)
    child = image_info(str(tmp_path / "child.vdi"))
    assert child.variant == "differencing" and child["parent_uuid"] == info.uuid
    assert child.as_dict()["parent_modify_uuid"] == info.modify_uuid
    assert child["virtual_size"] == 4 << 20 and child["actual_size"] == 2 << 20
    with pytest.raises(KeyError):
        child["as_dict"]


def test_header_pack_parse_roundtrip():
    h = new_header(64 << 20, fixed=False, diff=False)
    raw = h.pack_pre_header() + h.pack()
    raw += bytes(0x100000 + 4 * h.c_blocks - len(raw))
    back = parse_header(raw, len(raw), "mem")
    assert back == h


def _qemu_style_image(path, size=4 << 20):
    """A VDI as QEMU writes it: 384-byte header, map at 0x200, data right after the map."""
    blocks = size >> 20
    off_data = 0x200 + ((4 * blocks + 511) // 512) * 512
    pre = struct.pack("<64sII", b"<<< QEMU VM Virtual Disk Image >>>\n", SIGNATURE, VERSION_1_1)
    u1, u2 = uuid.uuid4(), uuid.uuid4()
    hdr = struct.pack("<III256sII4IIQIIII16s16s16s16s", 384, 1, 0, bytes(256), 0x200, off_data, 0, 0, 0, 512,
                      0, size, 1 << 20, 0, blocks, 1, u1.bytes_le, u2.bytes_le, bytes(16), bytes(16))
    bmap = struct.pack("<I", 0) + b"\xff" * 4 * (blocks - 1)
    body = pre + hdr
    body += bytes(0x200 - len(body)) + bmap
    body += bytes(off_data - len(body)) + b"Q" * (1 << 20)
    path.write_bytes(body)
    return u1


def test_reads_qemu_384_byte_header_and_upgrades_it_when_written(tmp_path):
    p = tmp_path / "q.vdi"
    u1 = _qemu_style_image(p)
    img = open_image(str(p), read_only=True)
    assert img.header.cb_header == 384 and img.uuid == str(u1)
    assert img.read_at(0, 4) == b"QQQQ" and img.read_at(1 << 20, 4) == bytes(4)
    img.close()
    img = open_image(str(p))
    img.write_at(2 << 20, b"new")
    img.close()
    raw = p.read_bytes()
    assert _u32(raw, 0x48) == 400 and struct.unpack_from("<4I", raw, 0x1C8) == (0, 0, 0, 512)
    img = open_image(str(p), read_only=True)
    assert img.read_at(2 << 20, 3) == b"new" and img.read_at(0, 2) == b"QQ"
    img.close()


def test_reads_v0_header(tmp_path):
    p = tmp_path / "v0.vdi"
    blocks = 2
    pre = struct.pack("<64sII", b"<<< innotek VirtualBox Disk Image >>>\n", SIGNATURE, 0x00000002)
    u = uuid.uuid4()
    hdr = struct.pack("<II256s4IQIII16s16s16s", 1, 0, b"old".ljust(256, b"\0"), 0, 0, 0, 512, blocks << 20,
                      1 << 20, blocks, 1, u.bytes_le, uuid.uuid4().bytes_le, bytes(16))
    assert len(hdr) == HEADER_V0_SIZE
    body = pre + hdr + struct.pack("<II", 0xFFFFFFFF, 0) + b"v0data".ljust(1 << 20, b"\0")
    p.write_bytes(body)
    img = open_image(str(p))
    assert img.header.major == 0 and img.size == 2 << 20
    assert img.read_at((1 << 20), 6) == b"v0data" and img.read_at(0, 6) == bytes(6)
    img.write_at(10, b"abc")                       # allocates the second physical block
    img.close()
    img = open_image(str(p), read_only=True)
    assert img.read_at(10, 3) == b"abc" and img.read_at(1 << 20, 6) == b"v0data"
    assert img.header.c_blocks_allocated == 2
    img.close()
    assert os.path.getsize(p) == 72 + HEADER_V0_SIZE + 8 + (2 << 20)


def test_new_header_rejects_bad_sizes():
    with pytest.raises(DiskImageError):
        new_header(1000, fixed=False, diff=False)
    with pytest.raises(DiskImageError):
        new_header(0, fixed=False, diff=False)
    with pytest.raises(DiskImageError):
        new_header(1 << 20, fixed=False, diff=False, block_size=3000)


def test_null_uuid_constant_and_header_type():
    assert NULL_UUID.int == 0
    assert isinstance(new_header(1 << 20, fixed=True, diff=False), VdiHeader)
