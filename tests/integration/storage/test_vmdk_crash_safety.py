"""Crash safety of VMDK sparse extents: a writer is killed with SIGKILL at random moments while it
allocates grains, overwrites and discards; the image must pass `qemu-img check`, keep its primary
and redundant grain tables identical, open in ours, and hold every write flushed before the kill."""

import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest

from vmm.storage import create_vmdk, open_image
from vmm.storage.vmdk_header import parse_header

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MiB = 1 << 20
SIZE = 48 * MiB
FLUSH_EVERY = 5

WRITER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from tests.integration.storage.test_vmdk_crash_safety import FLUSH_EVERY, make_ops
from vmm.storage import open_image
img = open_image(sys.argv[2])
print("ready", flush=True)
for i, (kind, off, data) in enumerate(make_ops(int(sys.argv[3]))):
    if kind == "w":
        img.write_at(off, data)
    else:
        img.discard(off, len(data))
    if (i + 1) % FLUSH_EVERY == 0:
        img.flush()
        print(i, flush=True)
"""


def make_ops(seed: int, count: int = 100000):
    rnd = random.Random(seed)
    for _ in range(count):
        r = rnd.random()
        off = rnd.randrange(0, SIZE - 1)
        n = min(rnd.randrange(1, 600 * 1024), SIZE - off)
        yield ("w", off, rnd.randbytes(n)) if r < 0.85 else ("d", off, bytes(n))


def _run_and_kill(path: str, seed: int, delay: float) -> int:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, ROOT, path, str(seed)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        out = proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()
    done = [int(x) for x in out.split()]
    return done[-1] if done else -1


def _tables_agree(path: str) -> None:
    raw = open(path, "rb").read()
    h = parse_header(raw[:512], path)
    n = h.gd_entries
    gd = struct.unpack_from(f"<{n}I", raw, h.gd_offset * 512)
    rgd = struct.unpack_from(f"<{n}I", raw, h.rgd_offset * 512)
    for a, b in zip(gd, rgd, strict=True):
        assert struct.unpack_from("<512I", raw, a * 512) == struct.unpack_from("<512I", raw, b * 512)


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (qemu-utils) not installed")
@pytest.mark.parametrize("trial", range(4))
def test_kill_9_while_writing_a_sparse_vmdk(tmp_path, trial):
    rnd = random.Random(300 + trial)
    path = str(tmp_path / "crash.vmdk")
    create_vmdk(path, SIZE).close()
    seed = 3000 + trial
    last = _run_and_kill(path, seed, rnd.uniform(0.05, 0.6))
    r = subprocess.run(["qemu-img", "check", "-f", "vmdk", path], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    _tables_agree(path)
    gen = make_ops(seed)
    ops = [next(gen) for _ in range(last + 1 + FLUSH_EVERY)]
    model = bytearray(SIZE)
    for _kind, off, data in ops[:last + 1]:
        model[off:off + len(data)] = data
    with open_image(path, read_only=True) as img:
        actual = img.read_at(0, SIZE)
    for _kind, off, data in ops[last + 1:]:        # may or may not have happened
        model[off:off + len(data)] = actual[off:off + len(data)]
    assert actual == model, f"flushed data lost (seed {seed}, last flushed op {last})"
    with open_image(path) as img:                  # and the image goes on working
        img.write_at(0, b"after the crash")
    with open_image(path, read_only=True) as img:
        assert img.read_at(0, 15) == b"after the crash"
