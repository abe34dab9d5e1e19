"""A stand-in VM process for the service's launch/supervision tests (no VMM inside).

It does what the contract asks of `vboxheadless --startvm <uuid>`: connect, take the VM lock
(with the launch token from the environment), export an IConsole, report Starting -> Running,
and on power_down report Stopping -> PoweredOff, unlock and exit. FAKE_VM_DELAY (seconds)
waits before locking; FAKE_VM_CRASH=<code> exits with that code before locking.
"""

import os
import sys
import threading
import time

sys.path.insert(0,
                os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

from frontends.headless.vrde import VrdeServerInfo  # noqa: E402
from vboxsvc.api import LockType, MachineState, VBoxError  # noqa: E402
from vboxsvc.api import errors as rc  # noqa: E402
from vboxsvc.ipc.client import connect  # noqa: E402
from vboxsvc.ipc.localobjects import completed_progress  # noqa: E402


class FakeConsole:
    __interface__ = "IConsole"

    def __init__(self, session, done: threading.Event):
        self._s = session
        self._done = done

    shared_folders = []   # no transient shared folders in the stand-in
    vrde_server_info = VrdeServerInfo(None)   # the real console's object, with no VNC server

    @property
    def machine(self):
        return self._s.machine

    @property
    def state(self):
        return self._s.machine.state

    def _need(self, *states):
        st = self._s.machine.state
        if st not in states:
            raise VBoxError(rc.VBOX_E_INVALID_VM_STATE, f"Invalid machine state: {st.name}", "IConsole",
                            "ConsoleWrap")

    def power_up(self):
        raise VBoxError(rc.VBOX_E_INVALID_VM_STATE, "Already running", "IConsole", "ConsoleWrap")

    def pause(self):
        self._need(MachineState.Running)
        self._s.machine.update_state(MachineState.Paused)

    def resume(self):
        self._need(MachineState.Paused)
        self._s.machine.update_state(MachineState.Running)

    def reset(self):
        self._need(MachineState.Running)

    def power_button(self):
        self._need(MachineState.Running)

    def sleep_button(self):
        self._need(MachineState.Running)

    def get_power_button_handled(self):
        return False

    def get_guest_entered_acpi_mode(self):
        return False

    def save_state(self):
        self._need(MachineState.Running, MachineState.Paused)
        m = self._s.machine
        m.update_state(MachineState.Saving)
        with open(m.state_file_path, "wb") as f:
            f.write(b"fake saved state")
        m.update_state(MachineState.Saved)
        self._done.set()
        return completed_progress("Saving the execution state")

    def power_down(self):
        self._need(MachineState.Running, MachineState.Paused, MachineState.Stuck)
        m = self._s.machine
        m.update_state(MachineState.Stopping)
        m.update_state(MachineState.PoweredOff)
        self._done.set()
        return completed_progress("Powering off")


def main():
    uuid = sys.argv[sys.argv.index("--startvm") + 1]
    if os.environ.get("FAKE_VM_CRASH"):
        print("fake VM: crashing on purpose", flush=True)
        sys.exit(int(os.environ["FAKE_VM_CRASH"]))
    time.sleep(float(os.environ.get("FAKE_VM_DELAY", "0")))
    client = connect(autostart_service=False, name="fakevm")
    session = client.session()
    machine = client.virtualbox.find_machine(uuid)
    machine.lock_machine(session, LockType.VM)
    done = threading.Event()
    session.register_console(client.export(FakeConsole(session, done), "IConsole"))
    sm = session.machine
    restoring = sm.state in (MachineState.Saved, MachineState.AbortedSaved)
    sm.update_state(MachineState.Restoring if restoring else MachineState.Starting)
    sm.update_state(MachineState.Running)
    print(f"fake VM {uuid} running", flush=True)
    done.wait()
    time.sleep(0.05)  # let the console call's answer leave before unlocking
    session.unlock_machine()
    client.close()


if __name__ == "__main__":
    main()
