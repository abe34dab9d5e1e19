"""VDI reads and writes against a byte-array model: allocation, ZERO marking, discard, modify UUIDs."""

import os
import random

import pytest

from vmm.storage import DiskImageError, create_vdi, image_info, open_image
from vmm.storage.vdi_header import BLOCK_FREE, BLOCK_ZERO

MiB = 1 << 20


def _random_ops(img, ref, rnd, count, max_len=3 * MiB):
    for _ in range(count):
        off = rnd.randrange(0, len(ref))
        n = min(rnd.randrange(1, max_len), len(ref) - off)
        data = rnd.randbytes(n)
        img.write_at(off, data)
        ref[off:off + n] = data


@pytest.mark.parametrize("fixed", [False, True])
def test_random_writes_read_back_and_survive_reopen(tmp_path, fixed):
    rnd = random.Random(7 + fixed)
    p = str(tmp_path / "a.vdi")
    size = 12 * MiB + 512 * 3                          # a partial last block
    img = create_vdi(p, size, fixed=fixed)
    ref = bytearray(size)
    _random_ops(img, ref, rnd, 25)
    for _ in range(40):                                # small, unaligned reads across blocks
        off = rnd.randrange(0, size)
        n = min(rnd.randrange(1, 3 * MiB), size - off)
        assert img.read_at(off, n) == ref[off:off + n]
    img.close()
    img = open_image(p, read_only=True)
    assert img.read_at(0, size) == ref
    buf = bytearray(70000)
    img.readinto_at(MiB - 1000, memoryview(buf))
    assert buf == ref[MiB - 1000:MiB + 69000]
    img.close()


def test_partial_write_allocates_one_block_rest_reads_zero(tmp_path):
    p = str(tmp_path / "a.vdi")
    img = create_vdi(p, 8 * MiB)
    img.write_at(3 * MiB + 100, b"abc")
    assert img.allocated_blocks == 1 and img.block_entry(3) == 0
    assert img.read_at(3 * MiB, MiB) == bytes(100) + b"abc" + bytes(MiB - 103)
    img.write_at(5 * MiB, b"\0" * 4096)                # zeros into an unallocated base block: no-op
    assert img.allocated_blocks == 1 and img.block_entry(5) == BLOCK_FREE
    img.write_at(6 * MiB, bytes(MiB))                  # a whole zero block: only a ZERO entry
    assert img.allocated_blocks == 1 and img.block_entry(6) == BLOCK_ZERO
    img.close()
    assert os.path.getsize(p) == 2 * MiB + MiB


def test_full_zero_block_write_marks_zero_in_diff_and_allocates_nothing(tmp_path):
    base = create_vdi(str(tmp_path / "b.vdi"), 4 * MiB)
    base.write_at(0, b"\x11" * (4 * MiB))
    base.close()
    from vmm.storage import create_diff_vdi
    child = create_diff_vdi(str(tmp_path / "c.vdi"), str(tmp_path / "b.vdi"))
    child.write_at(MiB, bytes(MiB))
    assert child.block_entry(1) == BLOCK_ZERO and child.allocated_blocks == 0
    assert child.read_at(MiB - 2, 4) == b"\x11\x11\0\0"
    assert child.block_entry(0) == BLOCK_FREE
    child.close()


def test_bounds_and_read_only_are_enforced(tmp_path):
    p = str(tmp_path / "a.vdi")
    img = create_vdi(p, 2 * MiB)
    for bad in ((-1, 1), (2 * MiB - 1, 2), (2 * MiB, 1)):
        with pytest.raises(DiskImageError):
            img.read_at(*bad)
        with pytest.raises(DiskImageError):
            img.write_at(bad[0], b"x" * bad[1])
    with pytest.raises(DiskImageError):
        img.discard(MiB, 2 * MiB)
    img.close()
    ro = open_image(p, read_only=True)
    with pytest.raises(DiskImageError, match="read-only"):
        ro.write_at(0, b"x")
    with pytest.raises(DiskImageError, match="read-only"):
        ro.discard(0, 512)
    ro.close()


def test_modification_uuid_changes_when_written_only(tmp_path):
    p = str(tmp_path / "a.vdi")
    create_vdi(p, 2 * MiB).close()
    first = image_info(p).modify_uuid
    open_image(p).close()                             # opened writable, never written
    ro = open_image(p, read_only=True)
    ro.read_at(0, 512)
    ro.close()
    assert image_info(p).modify_uuid == first
    img = open_image(p)
    img.write_at(0, b"data")
    after_write = image_info(p).modify_uuid            # stored at the first write already
    assert after_write != first
    img.write_at(512, b"more")
    img.flush()
    after_flush = image_info(p).modify_uuid
    assert after_flush not in (first, after_write)
    img.close()
    assert image_info(p).modify_uuid == after_flush    # nothing written since the flush


def test_discard_frees_whole_blocks_moves_last_block_and_zeroes_partials(tmp_path):
    p = str(tmp_path / "a.vdi")
    img = create_vdi(p, 6 * MiB)
    ref = bytearray(6 * MiB)
    for blk in range(4):
        data = bytes([blk + 1]) * MiB
        img.write_at(blk * MiB, data)
        ref[blk * MiB:(blk + 1) * MiB] = data
    assert img.allocated_blocks == 4
    img.discard(MiB, MiB)                              # block 1 -> ZERO, block 3 moves to its slot
    ref[MiB:2 * MiB] = bytes(MiB)
    img.discard(100, 1000)                             # partial: zeroed in place
    ref[100:1100] = bytes(1000)
    assert img.allocated_blocks == 3
    assert img.block_entry(1) == BLOCK_ZERO and img.block_entry(3) == 1
    assert img.read_at(0, 6 * MiB) == ref
    img.close()
    assert os.path.getsize(p) == 2 * MiB + 3 * MiB
    img = open_image(p, read_only=True)
    assert img.read_at(0, 6 * MiB) == ref
    img.close()


def test_fixed_image_discard_keeps_allocation(tmp_path):
    img = create_vdi(str(tmp_path / "f.vdi"), 2 * MiB, fixed=True)
    img.write_at(0, b"\x55" * (2 * MiB))
    img.discard(0, MiB)
    assert img.allocated_blocks == 2
    assert img.read_at(0, MiB) == bytes(MiB) and img.read_at(MiB, 4) == b"\x55" * 4
    img.close()


def test_create_refuses_existing_file(tmp_path):
    p = tmp_path / "a.vdi"
    p.write_bytes(b"keep")
    with pytest.raises(DiskImageError, match="already exists"):
        create_vdi(str(p), MiB)
    assert p.read_bytes() == b"keep"
    create_vdi(str(tmp_path / "new.vdi"), MiB, fixed=True).close()
    assert sorted(os.listdir(tmp_path)) == ["a.vdi", "new.vdi"]     # no temporary files left


def test_writes_through_memoryview_of_other_formats(tmp_path):
    img = create_vdi(str(tmp_path / "a.vdi"), 2 * MiB)
    import array
    words = array.array("I", range(1024))
    img.write_at(4096, memoryview(words))
    out = array.array("I", bytes(4096))
    img.readinto_at(4096, memoryview(out))
    assert out == words
    img.close()


def test_concurrent_writers_from_several_threads_allocate_consistently(tmp_path):
    import threading

    p = str(tmp_path / "t.vdi")
    img = create_vdi(p, 16 * MiB)
    errors = []

    def worker(k):
        try:
            for blk in range(k, 16, 4):                 # each thread owns every 4th block
                for piece in range(0, MiB, 256 * 1024):
                    img.write_at(blk * MiB + piece, bytes([blk + 1]) * (256 * 1024))
        except Exception as e:                          # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert img.allocated_blocks == 16
    img.close()
    img = open_image(p, read_only=True)
    for blk in range(16):
        assert img.read_at(blk * MiB, MiB) == bytes([blk + 1]) * MiB
    img.close()


def test_empty_requests_at_the_end_of_the_disk(tmp_path):
    img = create_vdi(str(tmp_path / "e.vdi"), 2 * MiB)
    assert img.read_at(2 * MiB, 0) == b""
    img.write_at(2 * MiB, b"")
    img.readinto_at(0, bytearray())
    assert img.allocated_blocks == 0
    img.close()


def test_a_closed_image_never_reads_a_file_that_reused_its_descriptor(tmp_path):
    img = create_vdi(str(tmp_path / "a.vdi"), 2 * MiB)
    img.write_at(0, b"a" * 512)
    img.close()
    other = os.open(tmp_path / "a.vdi", os.O_RDONLY)        # likely gets the same number
    try:
        with pytest.raises((OSError, DiskImageError)):
            img.read_at(0, 512)
    finally:
        os.close(other)
