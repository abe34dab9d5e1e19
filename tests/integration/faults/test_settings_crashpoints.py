"""The service dies at file-system steps of settings operations (creating and registering a machine,
renaming it with its folder, taking and deleting a snapshot, cloning, unregistering with --delete):
the next service must find every registration, every file loadable, old or new state."""

import random

import pytest

from .harness import OPERATIONS, Home, crash_points

PER_OP = 3      # steps per operation in the suite; scripts/fault_trials.py runs every step, many times


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = Home(tmp_path_factory.mktemp("faults"))
    h.cli("setproperty", "machinefolder", str(h.root / "VirtualBox VMs"), check=0)
    h.cli("createvm", "--name", "keep", "--register", check=0)
    yield h
    h.stop_service()


@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_a_crash_at_every_step_loses_nothing(home, tmp_path, op):
    points = crash_points(home, op, tmp_path)
    assert points, f"{op} passed no crash point"
    special = [p for p in points if not p.startswith("settings.")]     # the operation's own steps
    rest = [p for p in points if p not in special]
    chosen = special[:PER_OP] + random.Random(op).sample(rest, max(0, min(len(rest), PER_OP - len(special))))
    for i, at in enumerate(chosen, start=1):
        try:
            OPERATIONS[op](home, i, at)
        except AssertionError as e:
            raise AssertionError(f"{op} crashed at {at}: {e}") from None
