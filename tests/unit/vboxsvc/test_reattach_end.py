"""A VM process that ends before it re-attached to a new service: the state it wrote last into its
machine's lock file decides PoweredOff (its guest powered off in order) or Aborted."""

import os

import pytest

from vboxsvc.api.enums import MachineState, SessionState
from vboxsvc.ipc.vmlock import VmLock
from vboxsvc.server import reattach


class _Core:
    name = "vm"

    def __init__(self, path):
        self.path = path
        self.states, self.sessions = [], []

    def set_state(self, state):
        self.states.append(state)

    def set_session_state(self, state):
        self.sessions.append(state)


@pytest.mark.parametrize(("last", "writer", "final"), [
    ("PoweredOff", "itself", MachineState.PoweredOff),
    ("Running", "itself", MachineState.Aborted),
    ("Stopping", "itself", MachineState.Aborted),
    ("PoweredOff", "another process", MachineState.Aborted),
    (None, "itself", MachineState.Aborted),
])
def test_a_detached_vm_process_that_ended(tmp_path, last, writer, final):
    settings = tmp_path / "vm.vbox"
    settings.write_text("")
    if last is not None:
        lock = VmLock(settings)
        lock.acquire()
        lock.update(last)
        lock.release()
    pid = os.getpid() if writer == "itself" else os.getpid() + 1
    core = _Core(settings)
    d = reattach.Detached(core, pid, MachineState.Running)
    core.detached = d
    reattach._ended(d)
    assert core.states == [final] and core.sessions == [SessionState.Unlocked] and core.detached is None
