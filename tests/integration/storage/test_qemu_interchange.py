"""Interchange with the real peer: our images pass `qemu-img check` and convert to exactly our
content; images qemu-img makes (dynamic, static, converted) open and read exactly in ours."""

import json
import os
import random
import shutil
import subprocess

import pytest

from vmm.storage import (
    clone_image,
    compact,
    create_diff_vdi,
    create_vdi,
    image_info,
    open_image,
    resize,
)

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None,
                                reason="qemu-img (qemu-utils) not installed")

MiB = 1 << 20


def qemu_check(path):
    r = subprocess.run(["qemu-img", "check", "-f", "vdi", path], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No errors were found" in r.stdout


def qemu_raw(path, tmp_path):
    out = str(tmp_path / (os.path.basename(path) + ".qraw"))
    subprocess.run(["qemu-img", "convert", "-f", "vdi", "-O", "raw", path, out], check=True)
    with open(out, "rb") as f:
        data = f.read()
    os.unlink(out)
    return data


def qemu_head(path, tmp_path, mib):
    """The first `mib` MiB of an image as qemu reads them (qemu-img dd: no full-size raw file)."""
    out = tmp_path / "head.raw"
    subprocess.run(["qemu-img", "dd", "-f", "vdi", "-O", "raw", "bs=1M", f"count={mib}", f"if={path}",
                    f"of={out}"], check=True, capture_output=True)
    data = out.read_bytes()
    out.unlink()
    return data


def qemu_info(path):
    r = subprocess.run(["qemu-img", "info", "--output=json", path], check=True,
                       capture_output=True, text=True)
    return json.loads(r.stdout)


def _scribble(img, ref, rnd, count):
    for _ in range(count):
        off = rnd.randrange(0, len(ref))
        n = min(rnd.randrange(1, 3 * MiB), len(ref) - off)
        data = rnd.randbytes(n)
        img.write_at(off, data)
        ref[off:off + n] = data


def test_our_dynamic_and_fixed_images_pass_qemu_check_and_convert_identically(tmp_path):
    rnd = random.Random(11)
    for fixed in (False, True):
        p = str(tmp_path / f"ours_{fixed}.vdi")
        size = 20 * MiB + 4096
        img = create_vdi(p, size, fixed=fixed)
        ref = bytearray(size)
        qemu_check(p)
        _scribble(img, ref, rnd, 20)
        img.discard(2 * MiB, 3 * MiB)
        ref[2 * MiB:5 * MiB] = bytes(3 * MiB)
        img.write_at(7 * MiB, bytes(MiB))              # all-zero block write
        ref[7 * MiB:8 * MiB] = bytes(MiB)
        img.close()
        qemu_check(p)
        info = qemu_info(p)
        assert info["format"] == "vdi" and info["virtual-size"] == size
        assert qemu_raw(p, tmp_path) == ref


def test_flattened_clone_resized_and_compacted_images_pass_qemu(tmp_path):
    rnd = random.Random(12)
    base = str(tmp_path / "base.vdi")
    ref = bytearray(16 * MiB)
    img = create_vdi(base, len(ref))
    _scribble(img, ref, rnd, 10)
    img.close()
    child = create_diff_vdi(str(tmp_path / "child.vdi"), base)
    _scribble(child, ref, rnd, 5)
    child.write_at(MiB, bytes(MiB))
    ref[MiB:2 * MiB] = bytes(MiB)
    child.close()
    flat = str(tmp_path / "flat.vdi")
    clone_image(str(tmp_path / "child.vdi"), flat)
    qemu_check(flat)
    assert qemu_raw(flat, tmp_path) == ref
    big = 300 << 30
    resize(flat, big)                                 # the map outgrows its 1 MiB slot: blocks move
    img = open_image(flat, read_only=True)
    assert img.size == big and img.header.off_data == 3 * MiB
    img.close()
    qemu_check(flat)
    assert qemu_info(flat)["virtual-size"] == big
    assert qemu_head(flat, tmp_path, 20) == ref + bytes(4 * MiB)
    img = open_image(flat)
    img.write_at(0, bytes(4 * MiB))
    img.write_at(big - 5, b"last!")
    img.close()
    ref[0:4 * MiB] = bytes(4 * MiB)
    compact(flat)
    qemu_check(flat)
    assert qemu_head(flat, tmp_path, 16) == ref
    r = subprocess.run(["qemu-io", "-f", "vdi", "-c", f"read -v {big - 5} 5", flat],
                       check=True, capture_output=True, text=True)
    assert "6c 61 73 74 21" in r.stdout          # "last!"
    assert image_info(flat).file_size < 3 * MiB + 16 * MiB


@pytest.mark.parametrize("static", [False, True])
def test_images_made_by_qemu_create_read_and_write_in_ours(tmp_path, static):
    p = str(tmp_path / "q.vdi")
    cmd = ["qemu-img", "create", "-f", "vdi"] + (["-o", "static=on"] if static else []) + [p, "24M"]
    subprocess.run(cmd, check=True, capture_output=True)
    for off, pat in ((0, 0x11), (5 * MiB + 4096, 0x22), (23 * MiB, 0x33)):
        subprocess.run(["qemu-io", "-f", "vdi", "-c", f"write -P {pat} {off} 65536", p],
                       check=True, capture_output=True)
    img = open_image(p)
    assert img.size == 24 * MiB and img.variant == ("fixed" if static else "dynamic")
    assert img.header.cb_header == 384
    ref = bytearray(24 * MiB)
    ref[0:65536] = b"\x11" * 65536
    ref[5 * MiB + 4096:5 * MiB + 4096 + 65536] = b"\x22" * 65536
    ref[23 * MiB:23 * MiB + 65536] = b"\x33" * 65536
    assert img.read_at(0, img.size) == ref
    img.write_at(10 * MiB + 3, b"ours")              # and qemu reads what we wrote
    ref[10 * MiB + 3:10 * MiB + 7] = b"ours"
    img.close()
    qemu_check(p)
    assert qemu_raw(p, tmp_path) == ref


@pytest.mark.parametrize("static", [False, True])
def test_images_converted_by_qemu_read_exactly(tmp_path, static):
    rnd = random.Random(13 + static)
    raw = bytearray(12 * MiB)
    for _ in range(8):
        off = rnd.randrange(0, len(raw) - MiB)
        raw[off:off + MiB // 2] = rnd.randbytes(MiB // 2)
    src = tmp_path / "src.raw"
    src.write_bytes(raw)
    p = str(tmp_path / "conv.vdi")
    cmd = ["qemu-img", "convert", "-f", "raw", "-O", "vdi"] + (["-o", "static=on"] if static else [])
    subprocess.run(cmd + [str(src), p], check=True)
    img = open_image(p, read_only=True)
    assert img.read_at(0, img.size) == raw
    img.close()
    ours = str(tmp_path / "ours.vdi")
    clone_image(p, ours)
    qemu_check(ours)
    assert qemu_raw(ours, tmp_path) == raw
