"""VMDK interchange with the real peer, both ways: every variant we write passes `qemu-img check`
and converts to exactly our content; every subformat qemu-img writes opens and reads exactly in
ours, and a qemu-made sparse image stays valid for qemu after we write into it."""

import random
import shutil
import subprocess

import pytest

from vmm.storage import clone_image, create_vmdk, image_info, open_image

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None,
                                reason="qemu-img (qemu-utils) not installed")

MiB = 1 << 20
SIZE = 24 * MiB


def _data(seed=1):
    rnd = random.Random(seed)
    ref = bytearray(SIZE)
    for _ in range(40):
        off = rnd.randrange(0, SIZE - 1)
        n = min(rnd.randrange(1, 400_000), SIZE - off)
        ref[off:off + n] = rnd.randbytes(n)
    return ref


def _raw(tmp_path, ref):
    p = tmp_path / "ref.raw"
    p.write_bytes(ref)
    return str(p)


def _check(path):
    r = subprocess.run(["qemu-img", "check", "-f", "vmdk", path], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No errors were found" in r.stdout


def _compare(a, b, fmt_b="vmdk"):
    r = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", fmt_b, a, b],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("variant, subformat", [("standard", "monolithicSparse"), ("fixed", "monolithicFlat"),
                                                ("split2g", "twoGbMaxExtentSparse"),
                                                ("split2g-fixed", "twoGbMaxExtentFlat"),
                                                ("stream", "streamOptimized")])
def test_ours_read_by_qemu(tmp_path, variant, subformat):
    ref = _data()
    raw = _raw(tmp_path, ref)
    path = str(tmp_path / "ours.vmdk")
    clone_image(raw, path, fmt="VMDK", variant=variant)
    info = subprocess.run(["qemu-img", "info", "--output=json", path], check=True,
                          capture_output=True, text=True)
    assert f'"create-type": "{subformat}"' in info.stdout
    if variant != "fixed" and variant != "split2g-fixed":
        _check(path)
    _compare(raw, path)


@pytest.mark.parametrize("subformat", ["monolithicSparse", "streamOptimized", "monolithicFlat",
                                       "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"])
def test_qemu_made_read_by_us(tmp_path, subformat):
    ref = _data(2)
    raw = _raw(tmp_path, ref)
    path = str(tmp_path / "q.vmdk")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o",
                    f"subformat={subformat}", raw, path],
                   check=True)
    with open_image(path, read_only=True) as img:
        assert img.size == SIZE
        assert img.read_at(0, SIZE) == ref
    assert image_info(path).format == "VMDK"


def test_we_write_into_qemu_made_sparse_and_qemu_agrees(tmp_path):
    ref = _data(3)
    raw = _raw(tmp_path, ref)
    path = str(tmp_path / "q.vmdk")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", raw, path], check=True)
    rnd = random.Random(4)
    with open_image(path) as img:
        for _ in range(30):
            off = rnd.randrange(0, SIZE - 1)
            n = min(rnd.randrange(1, 300_000), SIZE - off)
            data = rnd.randbytes(n)
            img.write_at(off, data)
            ref[off:off + n] = data
    _check(path)
    (tmp_path / "ref.raw").write_bytes(ref)
    _compare(raw, path)


def test_qemu_writes_into_ours(tmp_path):
    path = str(tmp_path / "ours.vmdk")
    create_vmdk(path, SIZE).close()
    pattern = tmp_path / "p.raw"
    pattern.write_bytes(b"\x5a" * (3 * MiB))
    subprocess.run(["qemu-io", "-f", "vmdk", "-c", "write -P 0x5a 1M 3M", path], check=True,
                   capture_output=True)
    _check(path)
    with open_image(path, read_only=True) as img:
        assert img.read_at(MiB, 3 * MiB) == b"\x5a" * (3 * MiB)
        assert img.read_at(0, MiB) == bytes(MiB)
