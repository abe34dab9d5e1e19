"""Disk image metadata operations (VDI and sparse VMDK) for crash-point trials: each runs in a child
process that dies at a named step (VBOXPY_CRASH_AT); the image must then read as before or after
the operation, and after our read-write open (which repairs an unused VDI slot) pass `qemu-img
check` and take new writes.

    python3 -m tests.integration.faults.image_ops <op> <image>     # the child
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

MiB = 1 << 20
SIZE = 8 * MiB
GROWN = 300 << 30       # a map of 300 Ki entries no longer fits before the data: blocks must move
COMPARED = 16 * MiB     # what a trial compares (a grown disk beyond it is sparse, all zeros)
VMDK_SIZE = 64 * MiB    # two grain tables of 32 MiB (64 KiB grains)
GRAIN = 64 << 10        # a VMDK grain: the unit that reads old or new after a crash
FAR = 40 * MiB          # a VMDK offset in the second table, which the base image does not have
ROOT = Path(__file__).resolve().parents[3]


def _block(n: int, seed: int) -> bytes:
    return random.Random(seed * 1000 + n).randbytes(MiB)


def make_base(path: str) -> None:
    """Blocks 0..3 hold data (slots 0..3), block 4 is ZERO, the rest FREE."""
    from vmm.storage import create_vdi
    img = create_vdi(path, SIZE)
    for n in range(4):
        img.write_at(n * MiB, _block(n, 1))
    img.discard(4 * MiB, MiB)
    img.close()


def make_vmdk_base(path: str) -> None:
    """monolithicSparse: blocks 0..3 written, block 4 written then zeroed, and no grain table for
    the second 32 MiB (its directory entries cleared, as a file from another tool may have it)."""
    import struct

    from vmm.storage import create_vmdk
    from vmm.storage.vmdk_header import SECTOR, parse_header
    img = create_vmdk(path, VMDK_SIZE)
    for n in range(4):
        img.write_at(n * MiB, _block(n, 1))
    img.write_at(4 * MiB, _block(4, 1))
    img.discard(4 * MiB, MiB)
    img.close()
    with open(path, "r+b") as f:
        h = parse_header(f.read(SECTOR), path)
        for gd in (h.gd_offset, h.rgd_offset):
            f.seek(gd * SECTOR + 4)
            f.write(struct.pack("<I", 0))


def make_diff(base: str, child: str) -> None:
    from vmm.storage import create_diff_vdi
    create_diff_vdi(child, base).close()


def run_op(op: str, path: str) -> None:
    from vmm.storage import open_image
    from vmm.storage.maintenance import resize
    if op == "grow":
        resize(path, GROWN)         # the map outgrows its room: data blocks move, one atomic commit
        return
    img = open_image(path)
    if op.startswith("vmdk-"):
        what = op[5:]
        if what == "alloc":
            img.write_at(5 * MiB, _block(5, 2))
        elif what == "partial":
            img.write_at(6 * MiB + 4096, b"partial write" * 100)
        elif what == "zero-full":
            img.write_at(7 * MiB, bytes(MiB))
        elif what == "new-table":
            img.write_at(FAR + 8192, b"a grain in a table the file never had" * 40)
        elif what == "overwrite":
            img.write_at(2 * MiB + 512, b"over an allocated grain" * 60)
        elif what == "discard":
            img.discard(1 * MiB, MiB)   # the grains stay, zeroed
        else:
            raise SystemExit(f"unknown op {op}")
    elif op == "alloc":
        img.write_at(5 * MiB, _block(5, 2))
    elif op == "partial":
        img.write_at(6 * MiB + 4096, b"partial write" * 100)
    elif op == "discard-mid":
        img.discard(1 * MiB, MiB)   # slot 1 freed, the last slot's block moves into it
    elif op == "discard-last":
        img.discard(3 * MiB, MiB)
    elif op == "zero-full":
        img.write_at(7 * MiB, bytes(MiB))
    elif op == "diff-partial":
        img.write_at(2 * MiB + 100, b"over the parent" * 50)
    elif op == "diff-discard":
        img.discard(1 * MiB, MiB)   # the child's own block 1 (written at setup) goes: ZERO entry
    else:
        raise SystemExit(f"unknown op {op}")
    img.flush()
    img.close()


VDI_OPS = ["alloc", "partial", "discard-mid", "discard-last", "zero-full", "grow", "diff-partial",
           "diff-discard"]
VMDK_OPS = ["vmdk-alloc", "vmdk-partial", "vmdk-zero-full", "vmdk-overwrite", "vmdk-discard",
            "vmdk-new-table"]
OPS = VDI_OPS + VMDK_OPS


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("VBOXPY_CRASH_AT", None)
    env.pop("VBOXPY_CRASH_TRACE", None)
    env.update(extra)
    return env


def child(op: str, path: str, **extra) -> int:
    return subprocess.run([sys.executable, "-m", "tests.integration.faults.image_ops", op, path],
                          cwd=str(ROOT), env=_env(**extra), timeout=120).returncode


def _read_all(path: str) -> tuple[int, bytes]:
    """The disk's size and its first COMPARED bytes (and, on a VMDK, the MiB at FAR)."""
    from vmm.storage import open_image
    img = open_image(path, read_only=True)
    try:
        seen = img.read_at(0, min(img.size, COMPARED))
        if path.endswith(".vmdk"):
            seen += img.read_at(FAR, MiB)
        return img.size, seen
    finally:
        img.close()


class Trial:
    """A fresh image in `work`, its content before and after `op` (computed without crashing)."""

    def __init__(self, work: Path, op: str):
        self.work, self.op = Path(work), op
        self.work.mkdir(parents=True, exist_ok=True)
        self.fmt = "vmdk" if op.startswith("vmdk-") else "vdi"
        base = str(self.work / f"base.{self.fmt}")
        if self.fmt == "vmdk":
            make_vmdk_base(base)
        else:
            make_base(base)
        if op.startswith("diff-"):
            self.golden = str(self.work / "child.vdi")
            make_diff(base, self.golden)
            if op == "diff-discard":
                from vmm.storage import open_image
                img = open_image(self.golden)
                img.write_at(1 * MiB, _block(1, 3))
                img.write_at(3 * MiB, _block(3, 3))
                img.close()
        else:
            self.golden = base
        self.before = _read_all(self.golden)
        ref = self.work / "ref"
        ref.mkdir(exist_ok=True)
        self._copy_to(ref)
        target = str(ref / Path(self.golden).name)
        assert child(op, target) == 0
        self.after = _read_all(target)
        shutil.rmtree(ref)

    def _copy_to(self, d: Path) -> None:
        for f in self.work.glob(f"*.{self.fmt}"):
            shutil.copy(f, d / f.name)

    def steps(self) -> list[str]:
        from .harness import steps_of
        d = self.work / "trace-run"
        d.mkdir(exist_ok=True)
        self._copy_to(d)
        trace = self.work / "trace"
        trace.unlink(missing_ok=True)
        assert child(self.op, str(d / Path(self.golden).name), VBOXPY_CRASH_TRACE=str(trace)) == 0
        shutil.rmtree(d)
        names = steps_of(trace) if trace.exists() else []
        return [n for n in names if n.split("#")[0].startswith(("vdi.", "vmdk.", "image."))]

    def _old_or_new(self, seen: tuple[int, bytes]) -> bool:
        """A VDI block is written whole, so the image must read entirely old or entirely new. A write
        over many VMDK grains is not one atomic change (nor is it on a real disk): each grain must read
        old or new."""
        if seen in (self.before, self.after):
            return True
        if self.fmt != "vmdk" or seen[0] != self.before[0] or len(seen[1]) != len(self.before[1]):
            return False
        old, new, now = self.before[1], self.after[1], seen[1]
        return all(now[k:k + GRAIN] in (old[k:k + GRAIN], new[k:k + GRAIN])
                   for k in range(0, len(now), GRAIN))

    def crash_at(self, at: str) -> str | None:
        """Run the op dying at `at`; None if all is well, else what went wrong."""
        d = self.work / "crash"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        self._copy_to(d)
        target = str(d / Path(self.golden).name)
        rc = child(self.op, target, VBOXPY_CRASH_AT=at)
        if rc != 137:
            return f"the child did not die at {at} (exit {rc})"
        try:
            seen = _read_all(target)
        except Exception as e:      # a pending journal is replayed by this open too
            return f"{at}: the image does not open: {e}"
        if not self._old_or_new(seen):
            return f"{at}: the image reads neither the old nor the new content"
        from vmm.storage import open_image
        img = open_image(target)    # repairs an unused slot
        img.close()
        if _read_all(target) != seen:
            return f"{at}: the repair changed what the image reads"
        if shutil.which("qemu-img") and not self.op.startswith("diff-"):   # qemu opens no VDI diffs
            r = subprocess.run(["qemu-img", "check", "-f", self.fmt, target], capture_output=True, text=True)
            if r.returncode != 0:
                return f"{at}: qemu-img check: {r.stdout}{r.stderr}"
        img = open_image(target)
        img.write_at(0, b"still writable")
        img.close()
        if _read_all(target)[1][:14] != b"still writable":
            return f"{at}: a write after the repair was lost"
        return None


if __name__ == "__main__":
    run_op(sys.argv[1], sys.argv[2])
