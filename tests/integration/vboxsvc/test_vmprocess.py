"""launch_vm_process and VM process supervision, with a stand-in VM process (fake_vm.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from settings.machine_file import MachineFile
from vboxsvc.api import LockType, MachineState, SessionState, SessionType, VBoxError, VBoxEventType
from vboxsvc.api import errors as rc

from .conftest import pid_alive, wait_for

FAKE_VM = os.path.join(os.path.dirname(__file__), "fake_vm.py")


@pytest.fixture(scope="module")
def svc_env(svc_env):
    mp = pytest.MonkeyPatch()
    mp.setenv("VBOXPY_VM_PROCESS", f"{sys.executable} {FAKE_VM}")  # inherited by the service
    yield svc_env
    mp.undo()


def _launch(client, m, env=()):
    s = client.session()
    p = m.launch_vm_process(s, "headless", list(env))
    return s, p


def test_launch_console_shared_and_poweroff(client, vbox, new_vm):
    m = new_vm()
    es = vbox.event_source
    listener = es.create_listener()
    es.register_listener(listener, [VBoxEventType.OnMachineStateChanged], False)
    s, p = _launch(client, m)
    assert s.state == SessionState.Spawning and m.session_state == SessionState.Spawning
    p.wait_for_completion(-1)
    assert p.completed and p.result_code == 0, p.error_info and p.error_info.text
    assert m.state == MachineState.Running and m.session_state == SessionState.Locked
    assert s.state == SessionState.Locked and s.type == SessionType.Remote
    assert m.session_name == "headless" and pid_alive(m.session_pid)
    seen = []
    while (ev := es.get_event(listener, 1000)) is not None:
        if ev.machine_id == m.id:
            seen.append(ev.state)
    assert seen[:2] == [MachineState.Starting, MachineState.Running]
    with pytest.raises(VBoxError) as e:  # a running VM holds the lock
        m.lock_machine(client.session(), LockType.Write)
    assert e.value.result_code == rc.VBOX_E_INVALID_OBJECT_STATE
    # Shared lock: the console lives in the VM process, the service routes the calls
    s2 = client.session()
    m.lock_machine(s2, LockType.Shared)
    assert s2.type == SessionType.Shared
    console = s2.console
    console.pause()
    assert m.state == MachineState.Paused and console.state == MachineState.Paused
    assert es.get_event(listener, 2000).state == MachineState.Paused
    with pytest.raises(VBoxError) as e:  # errors come back from the VM process
        console.pause()
    assert e.value.result_code == rc.VBOX_E_INVALID_VM_STATE and e.value.interface == "IConsole"
    console.resume()
    assert s.console.machine.id == m.id
    s2.unlock_machine()
    s.unlock_machine()  # the launcher lets go: the VM keeps running
    assert m.state == MachineState.Running
    s3 = client.session()
    m.lock_machine(s3, LockType.Shared)
    pid = m.session_pid
    pd = s3.console.power_down()
    pd.wait_for_completion(-1)
    assert pd.completed and pd.result_code == 0
    assert wait_for(lambda: m.session_state == SessionState.Unlocked and not pid_alive(pid))
    assert m.state == MachineState.PoweredOff
    assert s3.state == SessionState.Unlocked
    es.unregister_listener(listener)


def test_vm_process_death_aborts(client, vbox, new_vm):
    m = new_vm()
    s, p = _launch(client, m)
    p.wait_for_completion(-1)
    assert m.state == MachineState.Running
    os.kill(m.session_pid, signal.SIGKILL)
    assert wait_for(lambda: m.state == MachineState.Aborted, 20)
    assert m.session_state == SessionState.Unlocked
    f = MachineFile.load(m.settings_file_path).settings
    assert f.aborted and f.persisted_state == "Aborted"
    # an aborted machine starts again
    s, p = _launch(client, m)
    p.wait_for_completion(-1)
    assert p.result_code == 0 and m.state == MachineState.Running
    sm = client.session()
    m.lock_machine(sm, LockType.Shared)
    sm.console.power_down().wait_for_completion(-1)
    assert wait_for(lambda: m.session_state == SessionState.Unlocked)
    assert not MachineFile.load(m.settings_file_path).settings.aborted


def test_save_state_and_restore(client, new_vm):
    m = new_vm()
    s, p = _launch(client, m)
    p.wait_for_completion(-1)
    sh = client.session()
    m.lock_machine(sh, LockType.Shared)
    sh.console.save_state().wait_for_completion(-1)
    assert wait_for(lambda: m.session_state == SessionState.Unlocked)
    assert m.state == MachineState.Saved
    sav = m.state_file_path
    assert sav.endswith(".sav") and os.path.exists(sav)
    assert MachineFile.load(m.settings_file_path).settings.persisted_state == "Saved"
    s, p = _launch(client, m)
    p.wait_for_completion(-1)
    assert m.state == MachineState.Running and not os.path.exists(sav) and m.state_file_path == ""
    m.lock_machine(sh, LockType.Shared)
    sh.console.power_down().wait_for_completion(-1)
    assert wait_for(lambda: m.session_state == SessionState.Unlocked)


def test_only_the_launched_process_may_lock(client, new_vm):
    m = new_vm()
    s, p = _launch(client, m, ["FAKE_VM_DELAY=1.5"])
    intruder = client.session()
    with pytest.raises(VBoxError) as e:
        m.lock_machine(intruder, LockType.VM)
    assert e.value.result_code == rc.E_ACCESSDENIED
    assert "has tried to lock the machine" in e.value.text
    with pytest.raises(VBoxError) as e:
        m.lock_machine(intruder, LockType.Write)
    assert e.value.text == f"The machine '{m.name}' already has a lock request pending"
    with pytest.raises(VBoxError) as e:
        m.launch_vm_process(client.session(), "headless", [])
    assert "is already locked by a session" in e.value.text
    p.wait_for_completion(-1)
    assert p.result_code == 0
    os.kill(m.session_pid, signal.SIGKILL)
    assert wait_for(lambda: m.state == MachineState.Aborted)


def test_startup_crash_fails_progress(client, new_vm):
    m = new_vm()
    s, p = _launch(client, m, ["FAKE_VM_CRASH=3"])
    p.wait_for_completion(-1)
    assert p.completed and p.result_code == rc.E_FAIL
    text = p.error_info.text
    assert "has terminated unexpectedly during startup with exit code 3" in text
    assert "crashing on purpose" in text  # the tail of VBox.log
    assert m.state == MachineState.PoweredOff and m.session_state == SessionState.Unlocked
    assert s.state == SessionState.Unlocked
    assert m.read_log(0, 0, 4096).startswith(b"fake VM: crashing")


def test_frontend_names(client, new_vm):
    m = new_vm()
    with pytest.raises(VBoxError) as e:
        m.launch_vm_process(client.session(), "bogus", [])
    assert e.value.result_code == rc.E_INVALIDARG and e.value.text == "Invalid frontend name: 'bogus'"
    with pytest.raises(VBoxError) as e:
        m.launch_vm_process(client.session(), "gui", [])
    assert e.value.result_code == rc.VBOX_E_NOT_SUPPORTED


def test_active_listener_in_another_client(client, new_vm):
    """Events reach an active listener exported by another client process (here: another connection)."""
    from vboxsvc.ipc.client import connect
    other = connect()
    got = []
    done = threading.Event()

    def on_event(ev):
        got.append((ev.type, getattr(ev, "state", None)))
        if ev.type == VBoxEventType.OnMachineRegistered:
            done.set()
    other.subscribe(on_event, [VBoxEventType.MachineEvent])
    try:
        m = new_vm()
        assert done.wait(5)
        assert (VBoxEventType.OnMachineRegistered, None) in got
    finally:
        other.close()
    assert m.id


def test_client_death_releases_lock(client, new_vm, svc_env):
    m = new_vm()
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(FAKE_VM))))!r})
        from vboxsvc.ipc.client import connect
        from vboxsvc.api import LockType
        c = connect()
        s = c.session()
        c.virtualbox.find_machine({m.id!r}).lock_machine(s, LockType.Write)
        s.machine.memory_size = 999
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=svc_env.vars())
    try:
        assert proc.stdout.readline().strip() == b"locked"
        assert m.session_state == SessionState.Locked
        proc.kill()
        proc.wait()
        assert wait_for(lambda: m.session_state == SessionState.Unlocked, 10)
        assert m.memory_size == 128
        s = client.session()
        m.lock_machine(s, LockType.Write)
        s.unlock_machine()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
