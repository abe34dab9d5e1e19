"""VMDK images: the byte layout of each variant, random I/O against an in-memory model, reopening,
opening by content, crash ordering, and hostile files (bad descriptors, tables pointing outside the
file, absurd sizes) rejected with clear errors."""

import os
import random
import struct
import zlib

import pytest

from vmm.storage import DiskImageError, clone_image, create_vmdk, image_info, open_image, vmdk_create
from vmm.storage.vmdk import VmdkImage
from vmm.storage.vmdk_header import (
    FLAG_COMPRESSED,
    FLAG_MARKERS,
    FLAG_REDUNDANT_GT,
    FLAG_VALID_NEWLINE,
    GD_AT_END,
    MARKER_EOS,
    MARKER_FOOTER,
    MARKER_GD,
    MARKER_GT,
    parse_header,
)

MiB = 1 << 20
VARIANTS = ["standard", "fixed", "split2g", "split2g-fixed"]


@pytest.fixture
def small_split(monkeypatch):
    """Split variants with 3 MiB extents, so a small disk spans several files."""
    monkeypatch.setattr(vmdk_create, "SPLIT_SIZE", 3 * MiB)


def _scribble(img, ref, rnd, count, max_len=300_000):
    for _ in range(count):
        off = rnd.randrange(0, len(ref) - 1)
        n = min(rnd.randrange(1, max_len), len(ref) - off)
        r = rnd.random()
        if r < 0.15:
            img.discard(off, n)
            ref[off:off + n] = bytes(n)
            continue
        data = rnd.randbytes(n) if r < 0.85 else bytes(n)
        img.write_at(off, data)
        ref[off:off + n] = data


@pytest.mark.parametrize("variant", VARIANTS)
def test_random_io_matches_a_model_and_survives_reopen(tmp_path, variant, small_split):
    path = str(tmp_path / "d.vmdk")
    size = 10 * MiB
    ref = bytearray(size)
    rnd = random.Random(variant)
    with create_vmdk(path, size, variant) as img:
        assert img.size == size
        _scribble(img, ref, rnd, 60)
        for _ in range(40):
            off = rnd.randrange(0, size - 1)
            n = min(rnd.randrange(1, 200_000), size - off)
            assert img.read_at(off, n) == ref[off:off + n]
    with open_image(path) as img:
        assert isinstance(img, VmdkImage)
        assert img.read_at(0, size) == ref
        _scribble(img, ref, rnd, 20)
    with open_image(path, read_only=True) as img:
        assert img.read_at(0, size) == ref
        with pytest.raises(DiskImageError, match="read-only"):
            img.write_at(0, b"x")


def test_monolithic_sparse_layout(tmp_path):
    path = str(tmp_path / "s.vmdk")
    create_vmdk(path, 100 * MiB, uuid="12345678-1234-1234-1234-123456789abc").close()
    raw = open(path, "rb").read()
    h = parse_header(raw[:512], path)
    assert raw[:4] == b"KDMV" and h.version == 1
    assert h.flags == FLAG_VALID_NEWLINE | FLAG_REDUNDANT_GT
    assert h.capacity == 100 * MiB // 512 and h.grain_size == 128 and h.gtes_per_gt == 512
    assert (h.descriptor_offset, h.descriptor_size) == (1, 20)
    assert h.rgd_offset == 21 and h.gd_offset > h.rgd_offset
    assert h.overhead % 128 == 0 and len(raw) == h.overhead * 512
    assert h.unclean_shutdown == 0 and h.newline_chars == b"\n \r\n"
    text = raw[512:512 * 21].rstrip(b"\0").decode()
    assert text.startswith("# Disk DescriptorFile\n")
    assert 'createType="monolithicSparse"' in text
    assert f'RW {100 * MiB // 512} SPARSE "s.vmdk"' in text
    assert 'ddb.uuid.image = "12345678-1234-1234-1234-123456789abc"' in text
    assert 'ddb.geometry.heads = "16"' in text and 'ddb.geometry.sectors = "63"' in text
    # 100 MiB = 3.125 tables of 32 MiB: 4 preallocated tables, one after the other, in both directories
    for gd_at in (h.rgd_offset, h.gd_offset):
        gd = struct.unpack_from("<4I", raw, gd_at * 512)
        assert [b - a for a, b in zip(gd, gd[1:], strict=False)] == [4, 4, 4]
        assert all(gd_at + h.gd_sectors <= e and e + 4 <= h.overhead for e in gd)


def test_write_allocates_whole_grains_at_the_end_and_updates_both_tables(tmp_path):
    path = str(tmp_path / "s.vmdk")
    with create_vmdk(path, 8 * MiB) as img:
        end = os.path.getsize(path)
        img.write_at(70000, b"abc")            # inside grain 1
        assert os.path.getsize(path) == end + 65536
    raw = open(path, "rb").read()
    h = parse_header(raw[:512], path)
    gt = struct.unpack_from("<I", raw, h.gd_offset * 512)[0]
    rgt = struct.unpack_from("<I", raw, h.rgd_offset * 512)[0]
    e = struct.unpack_from("<2I", raw, gt * 512)
    assert e == struct.unpack_from("<2I", raw, rgt * 512)
    assert e[0] == 0 and e[1] * 512 == end
    assert raw[end + 70000 - 65536:end + 70000 - 65536 + 3] == b"abc"
    assert raw[end:end + 100] == bytes(100)     # the rest of the grain is zeros


def test_all_zero_writes_allocate_nothing(tmp_path):
    path = str(tmp_path / "s.vmdk")
    with create_vmdk(path, 8 * MiB) as img:
        end = os.path.getsize(path)
        img.write_at(0, bytes(MiB))
        assert os.path.getsize(path) == end
        assert img.allocated_grains() == 0


def test_modification_uuid_changes_at_first_write_and_unclean_flag_clears(tmp_path):
    path = str(tmp_path / "s.vmdk")
    create_vmdk(path, 4 * MiB).close()
    before = image_info(path).modify_uuid
    with VmdkImage.open(path, read_only=True) as img:
        cid_before = img.descriptor.cid
    img = open_image(path)
    img.write_at(0, b"x" * 512)
    assert parse_header(open(path, "rb").read(512), path).unclean_shutdown == 1
    img.close()
    assert parse_header(open(path, "rb").read(512), path).unclean_shutdown == 0
    info = image_info(path)
    assert info.modify_uuid != before and info.uuid is not None
    with VmdkImage.open(path, read_only=True) as img:
        assert img.descriptor.cid != cid_before
    assert (info.format, info.variant, info.subformat) == ("VMDK", "dynamic", "default")


def test_stream_optimized_layout(tmp_path):
    src = str(tmp_path / "src.vmdk")
    with create_vmdk(src, 3 * MiB) as img:
        img.write_at(MiB + 5, b"hello stream")
        img.write_at(3 * MiB - 512, b"\xff" * 512)
    dst = str(tmp_path / "st.vmdk")
    clone_image(src, dst, fmt="VMDK", variant="stream")
    raw = open(dst, "rb").read()
    h = parse_header(raw[:512], dst)
    assert h.gd_offset == GD_AT_END and h.version == 3
    assert h.flags & (FLAG_COMPRESSED | FLAG_MARKERS) == FLAG_COMPRESSED | FLAG_MARKERS
    assert 'createType="streamOptimized"' in raw[512:512 * 21].decode(errors="replace")
    assert len(raw) % 512 == 0
    # the end: footer marker, footer (a header with the directory's place), end-of-stream marker
    assert struct.unpack_from("<QII", raw, len(raw) - 1536) == (1, 0, MARKER_FOOTER)
    footer = parse_header(raw[len(raw) - 1024:len(raw) - 512], dst)
    assert raw[-512:] == bytes(512) and struct.unpack_from("<QII", raw, len(raw) - 512)[2] == MARKER_EOS
    n_sec, size, mtype = struct.unpack_from("<QII", raw, (footer.gd_offset - 1) * 512)
    assert (size, mtype) == (0, MARKER_GD) and n_sec == footer.gd_sectors
    gt_sector = struct.unpack_from("<I", raw, footer.gd_offset * 512)[0]
    assert struct.unpack_from("<QII", raw, (gt_sector - 1) * 512)[1:] == (0, MARKER_GT)
    entries = struct.unpack_from("<48I", raw, gt_sector * 512)
    used = [i for i, e in enumerate(entries) if e]
    assert used == [16, 47]                     # the two grains with data, nothing else
    lba, csize = struct.unpack_from("<QI", raw, entries[16] * 512)
    assert lba == 16 * 128
    grain = zlib.decompress(raw[entries[16] * 512 + 12:entries[16] * 512 + 12 + csize])
    assert grain[5:17] == b"hello stream" and len(grain) == 65536
    with open_image(dst) as img:
        assert img.read_at(MiB, 17)[5:] == b"hello stream"
        assert img.read_at(3 * MiB - 512, 512) == b"\xff" * 512
        with pytest.raises(DiskImageError, match="streamOptimized"):
            img.write_at(0, b"x")
    assert open(dst, "rb").read() == raw          # a refused write changed nothing, not even the descriptor
    info = image_info(dst)
    assert (info.variant, info.subformat, info.allocated_blocks) == ("dynamic", "streamOptimized", 2)


def test_split_variants_make_one_file_per_extent(tmp_path, small_split):
    path = str(tmp_path / "sp.vmdk")
    create_vmdk(path, 7 * MiB, "split2g").close()
    assert sorted(os.listdir(tmp_path)) == ["sp-s001.vmdk", "sp-s002.vmdk", "sp-s003.vmdk", "sp.vmdk"]
    text = open(path).read()
    assert 'createType="twoGbMaxExtentSparse"' in text
    assert 'RW 6144 SPARSE "sp-s001.vmdk"' in text and 'RW 2048 SPARSE "sp-s003.vmdk"' in text
    info = image_info(path)
    assert (info.variant, info.subformat) == ("dynamic", "split2G")
    flat = str(tmp_path / "f.vmdk")
    create_vmdk(flat, 5 * MiB, "fixed").close()
    assert os.path.getsize(tmp_path / "f-flat.vmdk") == 5 * MiB
    assert 'RW 10240 FLAT "f-flat.vmdk" 0' in open(flat).read()
    assert image_info(flat).variant == "fixed"


def test_create_refuses_existing_files(tmp_path):
    path = str(tmp_path / "s.vmdk")
    create_vmdk(path, MiB).close()
    with pytest.raises(DiskImageError, match="already exists"):
        create_vmdk(path, MiB)
    assert sorted(os.listdir(tmp_path)) == ["s.vmdk"]


def test_a_death_between_data_and_table_leaves_the_old_content(tmp_path, monkeypatch):
    """The grain goes to the file before the tables point at it: dying in between loses the
    write, never the image."""
    from vmm.storage import vmdk_sparse

    path = str(tmp_path / "s.vmdk")
    with create_vmdk(path, 4 * MiB) as img:
        img.write_at(0, b"A" * 65536)

    def die(self, writes):
        raise KeyboardInterrupt("killed")
    monkeypatch.setattr(vmdk_sparse.SparseExtent, "_commit", die)
    img = open_image(path)
    with pytest.raises(KeyboardInterrupt):
        img.write_at(MiB, b"B" * 4096)
    monkeypatch.undo()
    img.close()
    with open_image(path, read_only=True) as img:
        assert img.read_at(0, 65536) == b"A" * 65536
        assert img.read_at(MiB, 4096) == bytes(4096)
    with open_image(path) as img:                 # and it keeps working: the orphan grain is just space
        img.write_at(MiB, b"C" * 4096)
    with open_image(path, read_only=True) as img:
        assert img.read_at(MiB, 4096) == b"C" * 4096


def test_clone_between_formats(tmp_path):
    src = str(tmp_path / "a.vmdk")
    rnd = random.Random(3)
    ref = bytearray(6 * MiB)
    with create_vmdk(src, len(ref)) as img:
        _scribble(img, ref, rnd, 20)
    for fmt, variant, name in (("VDI", None, "b.vdi"), ("RAW", None, "c.raw"), ("VMDK", "fixed", "d.vmdk"),
                               ("VMDK", "stream", "e.vmdk")):
        info = clone_image(src, str(tmp_path / name), fmt=fmt, variant=variant)
        assert info.format == fmt
        with open_image(str(tmp_path / name), read_only=True) as img:
            assert img.read_at(0, len(ref)) == ref
    back = str(tmp_path / "f.vmdk")
    clone_image(str(tmp_path / "e.vmdk"), back, fmt="VMDK", uuid="0b9f4cc0-5bd4-4c38-8a3e-4b0e4f7e7d11")
    assert image_info(back).uuid == "0b9f4cc0-5bd4-4c38-8a3e-4b0e4f7e7d11"
    with open_image(back, read_only=True) as img:
        assert img.read_at(0, len(ref)) == ref


# ---- hostile files ------------------------------------------------------------------------------


def _descriptor_file(tmp_path, body: str, name="h.vmdk"):
    p = tmp_path / name
    p.write_text("# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n" + body)
    return str(p)


@pytest.mark.parametrize("body, message", [
    ('createType="bogus"\nRW 2048 FLAT "x.raw" 0\n', "unsupported createType"),
    ('createType="monolithicFlat"\n', "lists no extents"),
    ('createType="monolithicFlat"\nRW 2048 FLAT "../../etc/passwd" 0\n', "leaves the image's folder"),
    ('createType="monolithicFlat"\nRW 2048 WEIRD "x.raw" 0\n', "unsupported extent type"),
    ('createType="monolithicFlat"\nRW 0 FLAT "x.raw" 0\n', "invalid extent size"),
    ('createType="monolithicFlat"\nRW 99999999999999999 FLAT "x.raw" 0\n', "invalid extent size"),
    ('createType="monolithicFlat"\nRW 2048 FLAT "x.raw" 0\nthis is not a line\n', "not understood"),
    ('createType="monolithicFlat"\nparentFileNameHint="p.vmdk"\nRW 2048 FLAT "x.raw" 0\n', "differencing"),
    ('createType="monolithicFlat"\nRW 2048 SPARSE "x.raw" 7\n', "only flat extents have an offset"),
    ('createType="monolithicFlat"\nRW 2048 FLAT "missing.raw" 0\n', "cannot open"),
])
def test_hostile_descriptors_are_clear_errors(tmp_path, body, message):
    (tmp_path / "x.raw").write_bytes(bytes(2048 * 512))
    path = _descriptor_file(tmp_path, body)
    with pytest.raises(DiskImageError, match=message):
        open_image(path)
    with pytest.raises(DiskImageError):
        image_info(path)


def test_parent_cid_is_refused(tmp_path):
    p = tmp_path / "h.vmdk"
    p.write_text('# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=12345678\ncreateType="monolithicFlat"\n'
                 'RW 8 FLAT "x.raw" 0\n')
    (tmp_path / "x.raw").write_bytes(bytes(4096))
    with pytest.raises(DiskImageError, match="differencing"):
        open_image(str(p))


def _patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _sparse(tmp_path, size=4 * MiB):
    path = str(tmp_path / "s.vmdk")
    with create_vmdk(path, size) as img:
        img.write_at(0, b"data" * 1000)
    return path, parse_header(open(path, "rb").read(512), path)


def test_grain_table_entry_outside_the_file(tmp_path):
    path, h = _sparse(tmp_path)
    gt = struct.unpack_from("<I", open(path, "rb").read(), h.gd_offset * 512)[0]
    _patch(path, gt * 512 + 4, struct.pack("<I", 0x7FFFFFF0))
    with open_image(path, read_only=True) as img:
        with pytest.raises(DiskImageError, match="grain table 0 entry 1 points outside the file"):
            img.read_at(65536, 10)


def test_grain_table_entry_into_the_metadata(tmp_path):
    path, h = _sparse(tmp_path)
    gt = struct.unpack_from("<I", open(path, "rb").read(), h.gd_offset * 512)[0]
    _patch(path, gt * 512 + 4, struct.pack("<I", 2))
    with open_image(path, read_only=True) as img, pytest.raises(DiskImageError, match="outside the file"):
        img.read_at(65536, 10)


def test_grain_directory_entry_outside_the_file(tmp_path):
    path, h = _sparse(tmp_path)
    _patch(path, h.gd_offset * 512, struct.pack("<I", 0x10000000))
    with pytest.raises(DiskImageError, match="grain directory entry 0 points outside the file"):
        open_image(path)


@pytest.mark.parametrize("field_off, value, message", [
    (4, struct.pack("<I", 9), "unsupported sparse extent version"),
    (12, struct.pack("<Q", 1 << 60), "invalid capacity"),
    (12, struct.pack("<Q", 0), "invalid capacity"),
    (20, struct.pack("<Q", 100), "invalid grain size"),
    (44, struct.pack("<I", 4096), "grain table size"),
    (73, b"\r\n\n\n", "newline test characters"),
    (56, struct.pack("<Q", 1 << 40), "lies outside the file"),
])
def test_hostile_headers(tmp_path, field_off, value, message):
    path, _h = _sparse(tmp_path)
    _patch(path, field_off, value)
    with pytest.raises(DiskImageError, match=message):
        open_image(path)


def test_truncated_stream_and_corrupt_grain(tmp_path):
    src, _h = _sparse(tmp_path)
    st = str(tmp_path / "st.vmdk")
    clone_image(src, st, fmt="VMDK", variant="stream")
    raw = open(st, "rb").read()
    cut = tmp_path / "cut.vmdk"
    cut.write_bytes(raw[:-1024])
    with pytest.raises(DiskImageError, match="footer"):
        open_image(str(cut))
    h = parse_header(raw[:512], st)
    bad = bytearray(raw)
    first = h.overhead * 512
    bad[first + 12:first + 40] = b"\x00" * 28          # break the deflate stream of grain 0
    (tmp_path / "bad.vmdk").write_bytes(bad)
    with open_image(str(tmp_path / "bad.vmdk")) as img, pytest.raises(DiskImageError,
                                                                      match="corrupt|invalid"):
        img.read_at(0, 10)
    bad = bytearray(raw)
    bad[first:first + 8] = struct.pack("<Q", 128)      # a grain claiming to be another one
    (tmp_path / "lba.vmdk").write_bytes(bad)
    with open_image(str(tmp_path / "lba.vmdk")) as img, pytest.raises(DiskImageError, match="is for sector"):
        img.read_at(0, 10)


def test_descriptor_extent_bigger_than_the_sparse_file_holds(tmp_path):
    path, h = _sparse(tmp_path)
    raw = open(path, "rb").read(512 * 21)
    text = raw[512:].rstrip(b"\0").decode().replace("RW 8192 SPARSE", "RW 8200 SPARSE")
    _patch(path, 512, text.encode().ljust(20 * 512, b"\0"))
    with pytest.raises(DiskImageError, match="descriptor says 8200 sectors"):
        open_image(path)


def test_content_detection(tmp_path):
    path, _h = _sparse(tmp_path)
    assert image_info(path).format == "VMDK"
    flat = str(tmp_path / "f.vmdk")
    create_vmdk(flat, MiB, "fixed").close()
    assert image_info(flat).format == "VMDK"
    # a raw disk that merely mentions a descriptor later on stays raw
    raw = tmp_path / "r.img"
    raw.write_bytes(b"\xeb\x3c\x90" + bytes(509) + b"# Disk DescriptorFile\n" + bytes(4096))
    assert image_info(str(raw)).format == "RAW"


# ---- a VDI differencing image on a VMDK base (a snapshot of an imported machine) -----------------


def _base_and_diff(tmp_path):
    from vmm.storage import create_diff_vdi

    base = str(tmp_path / "base.vmdk")
    ref = bytearray(4 * MiB)
    with create_vmdk(base, len(ref)) as img:
        img.write_at(0, b"B" * MiB)
        ref[0:MiB] = b"B" * MiB
    diff = str(tmp_path / "{11111111-2222-3333-4444-555555555555}.vdi")
    with create_diff_vdi(diff, base, uuid="11111111-2222-3333-4444-555555555555") as child:
        child.write_at(512 * 1024, b"D" * MiB)
        ref[512 * 1024:512 * 1024 + MiB] = b"D" * MiB
    return base, diff, ref


def test_vdi_diff_over_a_vmdk_base(tmp_path):
    base, diff, ref = _base_and_diff(tmp_path)
    info = image_info(diff)
    assert info.parent_uuid == image_info(base).uuid
    with open_image(diff, read_only=True) as img:          # the parent is found by its ddb.uuid.image
        assert img.read_at(0, len(ref)) == ref
    with open_image(base) as img:                           # changing the base breaks the link
        img.write_at(3 * MiB, b"x")
    with pytest.raises(DiskImageError, match="modification UUID mismatch"):
        open_image(diff, read_only=True)


def test_merging_a_vdi_diff_into_its_vmdk_base_and_back(tmp_path):
    from vmm.storage import merge_into_child, merge_into_parent

    base, diff, ref = _base_and_diff(tmp_path)
    merge_into_parent(diff, base)
    assert not os.path.exists(diff)
    with open_image(base, read_only=True) as img:
        assert img.read_at(0, len(ref)) == ref
    (tmp_path / "again").mkdir()
    base, diff, ref = _base_and_diff(tmp_path / "again")
    merge_into_child(base, diff)
    assert not os.path.exists(base)
    info = image_info(diff)
    assert info.parent_uuid is None and info.variant == "dynamic"
    with open_image(diff, read_only=True) as img:
        assert img.read_at(0, len(ref)) == ref


def test_image_files_lists_the_extents(tmp_path, small_split):
    from vmm.storage import image_files

    path = str(tmp_path / "sp.vmdk")
    create_vmdk(path, 7 * MiB, "split2g").close()
    assert image_files(path) == [path] + [str(tmp_path / f"sp-s00{i}.vmdk") for i in (1, 2, 3)]
    mono = str(tmp_path / "m.vmdk")
    create_vmdk(mono, MiB).close()
    assert image_files(mono) == [mono]


def test_resize_and_compact_are_clear_errors(tmp_path):
    from vmm.storage import compact, resize

    path = str(tmp_path / "s.vmdk")
    create_vmdk(path, MiB).close()
    with pytest.raises(DiskImageError, match="resizing a monolithicSparse image is not supported"):
        resize(path, 2 * MiB)
    with pytest.raises(DiskImageError, match="only VDI images can be compacted"):
        compact(path)
    assert image_info(path).size == MiB


def test_reading_a_vmdk_stored_inside_another_file(tmp_path):
    """An OVA member is read in place: the stream image at an offset of a bigger file."""
    src, _h = _sparse(tmp_path)
    st = str(tmp_path / "st.vmdk")
    clone_image(src, st, fmt="VMDK", variant="stream")
    blob = open(st, "rb").read()
    container = tmp_path / "box.ova"
    container.write_bytes(b"x" * 1536 + blob + b"y" * 700)
    with (
        VmdkImage.open_in_file(str(container), 1536, len(blob)) as img, open_image(st, read_only=True) as ref
    ):
        assert img.read_at(0, img.size) == ref.read_at(0, ref.size)
        assert img.read_only and img.create_type == "streamOptimized"
    with pytest.raises(DiskImageError, match="not inside the file"):
        VmdkImage.open_in_file(str(container), 1536, len(blob) + 10_000)
    with pytest.raises(DiskImageError, match="no sparse extent header"):
        VmdkImage.open_in_file(str(container), 512, len(blob))
