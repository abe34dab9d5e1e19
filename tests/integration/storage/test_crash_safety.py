"""Crash safety: a writer process is killed with SIGKILL at random moments while it allocates,
overwrites and discards blocks; the image must hold every write that was flushed before the kill,
and after our next read-write open (which repairs an unused data slot a crash can leave) pass
`qemu-img check`."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from vmm.storage import create_diff_vdi, create_vdi, open_image

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MiB = 1 << 20
SIZE = 48 * MiB
FLUSH_EVERY = 5

WRITER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from tests.integration.storage.test_crash_safety import FLUSH_EVERY, make_ops
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
    """Deterministic writes (mostly allocating) and discards (whole blocks move, partial ones zero)."""
    rnd = random.Random(seed)
    for _ in range(count):
        r = rnd.random()
        if r < 0.8:
            off = rnd.randrange(0, SIZE - 1)
            n = min(rnd.randrange(1, 600 * 1024), SIZE - off)
            yield "w", off, rnd.randbytes(n)
        else:
            blk = rnd.randrange(0, SIZE // MiB - 2)
            off = blk * MiB if r < 0.95 else blk * MiB + rnd.randrange(0, MiB)
            yield "d", off, bytes(rnd.randrange(1, 2 * MiB))


def _apply(model: bytearray, ops) -> None:
    for kind, off, data in ops:
        model[off:off + len(data)] = data if kind == "w" else bytes(len(data))


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


def _verify(path: str, base_model: bytearray, seed: int, last_flushed: int) -> None:
    ops = []
    gen = make_ops(seed)
    for _ in range(last_flushed + 1 + FLUSH_EVERY):
        ops.append(next(gen))
    model = bytearray(base_model)
    _apply(model, ops[:last_flushed + 1])
    img = open_image(path, read_only=True)
    try:
        actual = img.read_at(0, img.size)
    finally:
        img.close()
    for _kind, off, data in ops[last_flushed + 1:]:     # may or may not have happened
        model[off:off + len(data)] = actual[off:off + len(data)]
    assert actual == model, f"flushed data lost (seed {seed}, last flushed op {last_flushed})"


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (qemu-utils) not installed")
@pytest.mark.parametrize("trial", range(6))
def test_kill_9_while_writing_a_base_image(tmp_path, trial):
    rnd = random.Random(100 + trial)
    path = str(tmp_path / "crash.vdi")
    create_vdi(path, SIZE).close()
    seed = 1000 + trial
    last = _run_and_kill(path, seed, rnd.uniform(0.05, 0.6))
    _verify(path, bytearray(SIZE), seed, last)      # read-only: what the crash left reads right
    open_image(path).close()                        # read-write: repairs an unused slot, if any
    r = subprocess.run(["qemu-img", "check", "-f", "vdi", path], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    _verify(path, bytearray(SIZE), seed, last)


@pytest.mark.parametrize("trial", range(2))
def test_kill_9_while_writing_a_differencing_image(tmp_path, trial):
    rnd = random.Random(200 + trial)
    base = str(tmp_path / "base.vdi")
    img = create_vdi(base, SIZE)
    content = bytearray(rnd.randbytes(SIZE))
    img.write_at(0, content)
    img.close()
    child = str(tmp_path / "child.vdi")
    create_diff_vdi(child, base).close()
    seed = 2000 + trial
    last = _run_and_kill(child, seed, rnd.uniform(0.05, 0.6))
    _verify(child, content, seed, last)
