"""A process dies at the steps of every disk metadata path: VDI (allocation, partial and all-zero
writes, discard of a middle and of the last block, a resize that moves data, writes into a
differencing image) and sparse VMDK (grain allocation, partial and all-zero writes, overwrite,
discard, a grain in a table the file never had). The image reads the old or the new content, and
after our read-write open passes `qemu-img check` and takes new writes."""

import pytest

from .image_ops import OPS, Trial

PER_OP = 6      # steps per operation in the suite (each distinct step first); scripts/fault_trials.py: all


@pytest.mark.parametrize("op", OPS)
def test_a_crash_at_every_metadata_step(tmp_path, op):
    trial = Trial(tmp_path, op)
    assert trial.before != trial.after or op.endswith("zero-full")
    steps = trial.steps()
    assert steps, f"{op} passed no crash point"
    first = [at for at in steps if at.endswith("#1")]
    chosen = (first + [at for at in steps if at not in first])[:max(PER_OP, 1)]
    failures = [f for f in (trial.crash_at(at) for at in chosen) if f]
    assert not failures, failures
