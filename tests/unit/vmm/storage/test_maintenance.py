"""Clone, resize, compact and both merge directions, checked against byte-array models."""

import os
import random

import pytest

from vmm.storage import (
    DiskImageError,
    clone_image,
    compact,
    create_diff_vdi,
    create_raw,
    create_vdi,
    delete_image,
    image_info,
    merge_into_child,
    merge_into_parent,
    open_image,
    resize,
)
from vmm.storage.vdi_header import BLOCK_ZERO

MiB = 1 << 20
SIZE = 8 * MiB


def _fill(path_or_img, ref, rnd, count):
    img = open_image(path_or_img) if isinstance(path_or_img, str) else path_or_img
    for _ in range(count):
        off = rnd.randrange(0, len(ref))
        n = min(rnd.randrange(1, 2 * MiB), len(ref) - off)
        data = rnd.randbytes(n)
        img.write_at(off, data)
        ref[off:off + n] = data
    img.close()


def _content(path):
    img = open_image(path, read_only=True)
    try:
        return img.read_at(0, img.size)
    finally:
        img.close()


def _chain(tmp_path, rnd):
    """base <- mid <- top with random data, a ZERO block in mid; returns paths and models."""
    base, mid, top = (str(tmp_path / n) for n in ("base.vdi", "mid.vdi", "top.vdi"))
    rb = bytearray(SIZE)
    _fill(create_vdi(base, SIZE), rb, rnd, 6)
    rm = bytearray(rb)
    m = create_diff_vdi(mid, base)
    m.discard(MiB, MiB)
    rm[MiB:2 * MiB] = bytes(MiB)
    _fill(m, rm, rnd, 4)
    rt = bytearray(rm)
    _fill(create_diff_vdi(top, mid), rt, rnd, 3)
    return (base, mid, top), (rb, rm, rt)


def test_clone_flattens_chain_to_vdi_fixed_vdi_and_raw(tmp_path):
    rnd = random.Random(3)
    (_, _, top), (_, _, rt) = _chain(tmp_path, rnd)
    seen = []
    info = clone_image(top, str(tmp_path / "flat.vdi"), progress=seen.append)
    assert info.variant == "dynamic" and info.parent_uuid is None and info.uuid != image_info(top).uuid
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert _content(str(tmp_path / "flat.vdi")) == rt
    fixed = clone_image(top, str(tmp_path / "fixed.vdi"), fixed=True)
    assert fixed.variant == "fixed" and fixed.allocated_blocks == SIZE // MiB
    assert _content(str(tmp_path / "fixed.vdi")) == rt
    raw = clone_image(top, str(tmp_path / "flat.img"), fmt="RAW")
    assert raw.format == "RAW" and (tmp_path / "flat.img").read_bytes() == rt
    with pytest.raises(DiskImageError, match="already exists"):
        clone_image(top, str(tmp_path / "flat.img"), fmt="RAW")


def test_unflattened_clone_of_diff_keeps_parent_and_own_blocks(tmp_path):
    rnd = random.Random(4)
    (_, mid, top), (_, _, rt) = _chain(tmp_path, rnd)
    info = clone_image(top, str(tmp_path / "copy.vdi"), flatten=False)
    src = image_info(top)
    assert info.variant == "differencing" and info.parent_uuid == src.parent_uuid
    assert info.parent_modify_uuid == src.parent_modify_uuid
    assert info.allocated_blocks == src.allocated_blocks
    assert _content(str(tmp_path / "copy.vdi")) == rt
    with pytest.raises(DiskImageError):
        clone_image(top, str(tmp_path / "x.img"), fmt="RAW", flatten=False)


def test_clone_of_raw_source_with_odd_size(tmp_path):
    src = tmp_path / "odd.img"
    data = os.urandom(MiB + 700)
    src.write_bytes(data)
    clone_image(str(src), str(tmp_path / "odd.vdi"))
    img = open_image(str(tmp_path / "odd.vdi"), read_only=True)
    assert img.size == MiB + 1024 and img.read_at(0, len(data)) == data
    img.close()


def test_resize_grows_and_relocates_blocks_when_the_map_outgrows_its_space(tmp_path):
    p = str(tmp_path / "small_blocks.vdi")
    img = create_vdi(p, 1000 * MiB, block_size=4096)      # map of 1 MB fits in the 1 MiB slot
    rnd = random.Random(5)
    model = {}
    for _ in range(40):
        off = rnd.randrange(0, 1000 * MiB - 8192)
        data = rnd.randbytes(rnd.randrange(1, 8192))
        img.write_at(off, data)
        model[off] = data
    img.write_at(1000 * MiB - 3, b"end")
    img.close()
    before = image_info(p)
    resize(p, 3000 * MiB)                                 # map now needs 3 MB: data must move
    after = image_info(p)
    assert after.size == 3000 * MiB and after.allocated_blocks == before.allocated_blocks
    assert after.uuid == before.uuid
    img = open_image(p, read_only=True)
    assert img.header.off_data > 0x200000
    for off, data in model.items():
        if img.read_at(off, len(data)) != data:
            later = [o for o in model if o > off and o < off + len(data)]
            assert later, f"data at {off} lost"
    assert img.read_at(1000 * MiB - 3, 3) == b"end"
    assert img.read_at(2000 * MiB, 4096) == bytes(4096)
    img.close()
    img = open_image(p)
    img.write_at(2999 * MiB, b"tail")
    img.close()
    img = open_image(p, read_only=True)
    assert img.read_at(2999 * MiB - 2, 8) == b"\0\0tail\0\0"
    img.close()


def test_resize_fixed_preallocates_and_refuses_shrink(tmp_path):
    p = str(tmp_path / "f.vdi")
    img = create_vdi(p, 2 * MiB + 512, fixed=True)
    img.write_at(2 * MiB, b"x" * 512)
    img.close()
    resize(p, 4 * MiB)
    info = image_info(p)
    assert info.variant == "fixed" and info.allocated_blocks == 4
    content = _content(p)
    assert content[2 * MiB:2 * MiB + 512] == b"x" * 512 and content[2 * MiB + 512:] == bytes(2 * MiB - 512)
    with pytest.raises(DiskImageError, match="shrink"):
        resize(p, MiB)


def test_resize_raw(tmp_path):
    create_raw(str(tmp_path / "r.img"), MiB).close()
    resize(str(tmp_path / "r.img"), 3 * MiB)
    assert os.path.getsize(tmp_path / "r.img") == 3 * MiB


def test_compact_releases_zero_blocks_and_shrinks_the_file(tmp_path):
    p = str(tmp_path / "c.vdi")
    img = create_vdi(p, SIZE)
    ref = bytearray(SIZE)
    for blk in range(8):
        img.write_at(blk * MiB, b"\x09" * MiB)
        ref[blk * MiB:(blk + 1) * MiB] = b"\x09" * MiB
    for blk in (1, 4, 5):                                  # the guest zeroes these blocks
        img.write_at(blk * MiB, bytes(MiB))
        ref[blk * MiB:(blk + 1) * MiB] = bytes(MiB)
    img.close()
    assert image_info(p).allocated_blocks == 8
    seen = []
    assert compact(p, progress=seen.append) == 3
    info = image_info(p)
    assert info.allocated_blocks == 5 and info.file_size == 2 * MiB + 5 * MiB
    assert seen[-1] == 1.0
    assert _content(p) == ref
    img = open_image(p, read_only=True)
    assert [img.block_entry(b) for b in (1, 4, 5)] == [BLOCK_ZERO] * 3
    assert sorted(img.block_entry(b) for b in (0, 2, 3, 6, 7)) == [0, 1, 2, 3, 4]
    img.close()
    fixed = str(tmp_path / "f.vdi")
    create_vdi(fixed, MiB, fixed=True).close()
    with pytest.raises(DiskImageError, match="fixed"):
        compact(fixed)


def test_merge_into_parent_then_relinked_grandchild_reads_the_same(tmp_path):
    rnd = random.Random(6)
    (base, mid, top), (_, rm, rt) = _chain(tmp_path, rnd)
    seen = []
    info = merge_into_parent(mid, base, relink=[top], progress=seen.append)
    assert not os.path.exists(mid)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert _content(base) == rm
    top_info = image_info(top)
    assert top_info.parent_uuid == info.uuid and top_info.parent_modify_uuid == info.modify_uuid
    assert _content(top) == rt


def test_merge_into_child_keeps_child_content_and_modify_uuid(tmp_path):
    rnd = random.Random(8)
    (base, mid, top), (_, _, rt) = _chain(tmp_path, rnd)
    before = image_info(top)
    info = merge_into_child(mid, top)
    assert not os.path.exists(mid)
    assert info.parent_uuid == image_info(base).uuid and info.modify_uuid == before.modify_uuid
    assert _content(top) == rt
    info = merge_into_child(base, top)                      # now the child becomes a base image
    assert info.variant == "dynamic" and info.parent_uuid is None
    assert _content(top) == rt


def test_merge_checks_linkage_and_relink_list(tmp_path):
    rnd = random.Random(9)
    (base, mid, top), _ = _chain(tmp_path, rnd)
    with pytest.raises(DiskImageError, match="parent UUID mismatch"):
        merge_into_parent(top, base)
    with pytest.raises(DiskImageError, match="not a child"):
        merge_into_parent(mid, base, relink=[base])
    assert os.path.exists(mid) and os.path.exists(top)


def test_clone_of_a_huge_sparse_chain_skips_unallocated_space(tmp_path):
    big = 1 << 40
    base = str(tmp_path / "huge.vdi")
    img = create_vdi(base, big)
    img.write_at(big // 2, b"middle")
    img.close()
    child = create_diff_vdi(str(tmp_path / "huge_child.vdi"), base)
    child.write_at(big - 3, b"end")
    child.close()
    seen = []
    info = clone_image(str(tmp_path / "huge_child.vdi"), str(tmp_path / "copy.vdi"), progress=seen.append)
    assert info.size == big and info.allocated_blocks == 2
    assert seen == sorted(set(seen)) and seen[-1] == 1.0 and len(seen) <= 258
    img = open_image(str(tmp_path / "copy.vdi"), read_only=True)
    assert img.read_at(big // 2, 6) == b"middle" and img.read_at(big - 3, 3) == b"end"
    assert img.next_allocated(0) == big // 2 and img.next_allocated(big // 2 + MiB) == big - MiB
    img.close()


def test_delete_refuses_an_image_in_use(tmp_path):
    p = str(tmp_path / "d.vdi")
    img = create_vdi(p, MiB)
    with pytest.raises(DiskImageError, match="in use"):
        delete_image(p)
    img.close()
    delete_image(p)
    assert not os.path.exists(p)
    with pytest.raises(DiskImageError, match="cannot open"):
        delete_image(p)
