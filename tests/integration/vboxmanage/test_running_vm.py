"""startvm / controlvm / discardstate / list runningvms through the real service, with the service's
stand-in VM process (tests/integration/vboxsvc/fake_vm.py: no VMM, but the VM-process contract)."""

import os
import pathlib
import sys

import pytest

FAKE_VM = pathlib.Path(__file__).resolve().parents[1] / "vboxsvc" / "fake_vm.py"
PROGRESS = "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%\n"


@pytest.fixture
def vbm_vm(vbm):
    vbm.stop_service()  # restart it with the VM-process override in its environment
    vbm.env["VBOXPY_VM_PROCESS"] = f"{sys.executable} {FAKE_VM}"
    code, out, _ = vbm("createvm", "--name", "run1", "--register")
    assert code == 0
    vbm.uuid = out.splitlines()[1].split()[1]
    return vbm


def test_start_pause_resume_poweroff(vbm_vm):
    vbm = vbm_vm
    assert vbm("startvm", "run1", "--type", "headless") == (
        0, 'Waiting for VM "run1" to power on...\nVM "run1" has been successfully started.\n', "")
    assert vbm("list", "runningvms") == (0, f'"run1" {{{vbm.uuid}}}\n', "")
    assert vbm.machinereadable("run1")["VMState"] == "running"
    code, _, err = vbm("modifyvm", "run1", "--memory", "64")
    assert code == 1 and "is already locked for a session" in err.splitlines()[0]
    assert vbm("controlvm", "run1", "pause") == (0, "", "")
    assert vbm.machinereadable("run1")["VMState"] == "paused"
    assert vbm("list", "runningvms")[1] == f'"run1" {{{vbm.uuid}}}\n'
    code, _, err = vbm("controlvm", "run1", "reset")
    assert code == 1 and err.startswith("VBoxManage: error: Invalid machine state: Paused\n")
    assert "Context: \"console->Reset()\"" in err
    assert vbm("controlvm", "run1", "resume") == (0, "", "")
    assert vbm("controlvm", "run1", "acpipowerbutton") == (0, "", "")
    assert vbm("controlvm", "run1", "poweroff") == (0, "", PROGRESS)
    _wait_state(vbm, "poweroff")
    assert vbm("list", "runningvms") == (0, "", "")
    assert vbm("controlvm", "run1", "pause") == (1, "",
                                                 "VBoxManage: error: Machine 'run1' is not "
                                                 "currently running.\n")


def test_savestate_then_discardstate(vbm_vm):
    vbm = vbm_vm
    vbm("startvm", "run1", "--type", "headless", check=0)
    assert vbm("controlvm", "run1", "savestate") == (0, "", PROGRESS)
    _wait_state(vbm, "saved")
    state_file = vbm.machinereadable("run1")["VMStateFile"]
    assert os.path.exists(state_file)
    assert vbm("discardstate", "run1") == (0, "", "")
    assert vbm.machinereadable("run1")["VMState"] == "poweroff" and not os.path.exists(state_file)


def test_startvm_unknown_frontend(vbm_vm):
    code, out, err = vbm_vm("startvm", "run1", "--type", "nonsense")
    assert (code, out) == (1, "")
    assert err.splitlines()[0] == "VBoxManage: error: Invalid frontend name: 'nonsense'"


def _wait_state(vbm, state: str) -> None:
    import time

    for _ in range(100):
        if vbm.machinereadable("run1")["VMState"] == state:
            return
        time.sleep(0.1)
    raise AssertionError(f"VM never reached {state}")
