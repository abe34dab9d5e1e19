"""The VM process reports its state through the service; a service that died meanwhile does not
stop the VM (the lock file keeps the state for the next service)."""

import pytest

from frontends.headless.vmprocess import VmProcess
from vboxsvc.api import MachineState, VBoxError
from vboxsvc.api import errors as rc


class _Machine:
    def __init__(self, error=None):
        self.error = error
        self.states = []

    def update_state(self, state):
        if self.error is not None:
            raise self.error
        self.states.append(state)


class _Lock:
    def __init__(self):
        self.names = []

    def update(self, name):
        self.names.append(name)


def _process(machine):
    p = VmProcess(client=None, vm_ref="vm")
    p.sm, p.vmlock, p.state = machine, _Lock(), MachineState.Running
    return p


def test_report_goes_to_the_service_and_the_lock_file():
    p = _process(_Machine())
    p.report(MachineState.Paused)
    assert p.sm.states == [MachineState.Paused] and p.vmlock.names == ["Paused"]
    assert p.state == MachineState.Paused


def test_report_while_the_service_is_gone_keeps_the_vm_state():
    gone = VBoxError(rc.NS_ERROR_CALL_FAILED, "The VirtualBox service (vboxsvc) has terminated")
    p = _process(_Machine(gone))
    p.report(MachineState.Stopping)           # a guest power off while the service is down
    assert p.state == MachineState.Stopping and p.vmlock.names == ["Stopping"]


def test_report_refused_by_the_service_is_an_error():
    refused = VBoxError(rc.VBOX_E_INVALID_VM_STATE, "Invalid machine state")
    p = _process(_Machine(refused))
    with pytest.raises(VBoxError):
        p.report(MachineState.Paused)
    assert p.state == MachineState.Running
