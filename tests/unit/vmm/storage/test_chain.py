"""Differencing chains: read-through of FREE blocks, ZERO blocks, linkage checks, parent lookup."""

import os
import shutil

import pytest

from vmm.storage import DiskImageError, create_diff_vdi, create_vdi, image_info, open_image
from vmm.storage.opener import default_parent_resolver

MiB = 1 << 20


def _base(tmp_path, name="base.vdi", size=4 * MiB):
    p = str(tmp_path / name)
    img = create_vdi(p, size)
    img.write_at(0, b"B" * size)
    img.close()
    return p


def test_three_level_chain_reads_through_free_not_zero(tmp_path):
    base = _base(tmp_path)
    mid = str(tmp_path / "mid.vdi")
    create_diff_vdi(mid, base).close()
    m = open_image(mid)
    m.write_at(MiB + 10, b"M" * 10)                   # partial write: rest of the block from the parent
    m.discard(2 * MiB, MiB)                            # ZERO: does not fall through
    m.close()
    top = str(tmp_path / "top.vdi")
    t = create_diff_vdi(top, mid)
    t.write_at(3 * MiB, b"T")
    t.close()
    t = open_image(top, read_only=True)
    assert t.parent is not None and t.parent.parent is not None
    assert t.read_at(0, 4) == b"BBBB"
    assert t.read_at(MiB + 8, 14) == b"BB" + b"M" * 10 + b"BB"
    assert t.read_at(2 * MiB, MiB) == bytes(MiB)
    assert t.read_at(3 * MiB, 3) == b"TBB"
    t.close()
    assert open_image(base, read_only=True).read_at(MiB + 10, 2) == b"BB"


def test_parent_modified_after_child_creation_is_a_clear_error(tmp_path):
    base = _base(tmp_path)
    child = str(tmp_path / "child.vdi")
    create_diff_vdi(child, base).close()
    img = open_image(base)
    img.write_at(0, b"changed")
    img.close()
    with pytest.raises(DiskImageError, match="modification UUID mismatch"):
        open_image(child)


def test_wrong_parent_from_resolver_is_rejected(tmp_path):
    base = _base(tmp_path)
    other = _base(tmp_path, "other.vdi")
    child = str(tmp_path / "child.vdi")
    create_diff_vdi(child, base).close()
    with pytest.raises(DiskImageError, match="parent UUID mismatch"):
        open_image(child, parent_resolver=lambda u: other)
    img = open_image(child, parent_resolver=lambda u: base)
    assert img.read_at(0, 1) == b"B"
    img.close()


def test_missing_parent_is_reported(tmp_path):
    base = _base(tmp_path)
    child = str(tmp_path / "child.vdi")
    create_diff_vdi(child, base).close()
    os.unlink(base)
    with pytest.raises(DiskImageError, match="not found"):
        open_image(child)


def test_default_resolver_finds_base_one_directory_up(tmp_path):
    base = _base(tmp_path)
    snaps = tmp_path / "Snapshots"
    snaps.mkdir()
    child = create_diff_vdi(str(snaps / "child.vdi"), base)
    name = "{" + child.uuid + "}.vdi"
    child.close()
    os.rename(snaps / "child.vdi", snaps / name)
    resolve = default_parent_resolver(str(snaps / name))
    assert resolve(image_info(base).uuid) == base
    img = open_image(str(snaps / name), read_only=True)
    assert img.read_at(0, 2) == b"BB"
    img.close()


def test_copied_image_with_same_uuid_cannot_form_a_loop(tmp_path):
    base = _base(tmp_path)
    child = str(tmp_path / "child.vdi")
    create_diff_vdi(child, base).close()
    # a resolver that hands back the child itself as its parent: child -> child -> ...
    with pytest.raises(DiskImageError, match="loops back"):
        open_image(child, read_only=True, parent_resolver=lambda u: child)
    # two diffs naming each other as parent (a hand-edited pair)
    other = str(tmp_path / "other.vdi")
    shutil.copy(child, other)
    with pytest.raises(DiskImageError):
        open_image(child, read_only=True, parent_resolver=lambda u: other)


def test_diff_of_raw_image_is_refused(tmp_path):
    raw = tmp_path / "disk.img"
    raw.write_bytes(bytes(MiB))
    with pytest.raises(DiskImageError, match="must be a VDI"):
        create_diff_vdi(str(tmp_path / "c.vdi"), str(raw))
    assert not (tmp_path / "c.vdi").exists()


def test_child_of_open_writable_parent_sees_flushed_state(tmp_path):
    p = str(tmp_path / "base.vdi")
    base = create_vdi(p, 2 * MiB)
    base.write_at(0, b"one")
    base.write_at(10, b"two")                          # pending modify-UUID change until flush
    child = create_diff_vdi(str(tmp_path / "c.vdi"), base)
    assert child.read_at(10, 3) == b"two"
    assert child.parent_modify_uuid == image_info(p).modify_uuid
    child.close()
    base.close()


def test_a_writer_excludes_other_writers_and_readers(tmp_path):
    base = _base(tmp_path)
    w = open_image(base)
    with pytest.raises(DiskImageError, match="in use"):
        open_image(base)
    with pytest.raises(DiskImageError, match="in use"):
        open_image(base, read_only=True)
    w.close()
    r1, r2 = open_image(base, read_only=True), open_image(base, read_only=True)
    with pytest.raises(DiskImageError, match="in use"):
        open_image(base)
    r1.close()
    r2.close()
    open_image(base).close()
