"""IConsole's saved-state steps in the VM process (ConsoleImpl.cpp's saveState and the restore at
power-up): they report the machine states through the session machine and call the VMM's
`vmm.savedstate` for the file itself, which knows nothing of the API."""

from __future__ import annotations

import os

from vboxsvc.api import MachineState
from vmm.savedstate import SavedStateError, SaveResult, restore_state, save_state


def console_save_state(machine, session_machine) -> SaveResult:
    """IConsole::saveState in the VM process: report Saving, write the state into the file the
    service names (`stateFilePath` while Saving), report Saved. On failure the machine goes back
    to the state it had (Running or Paused) and the error propagates. The caller powers the VM
    off afterwards (the process's job ends with a saved machine)."""
    before = session_machine.state
    running = before == MachineState.Running
    session_machine.update_state(MachineState.Saving)
    try:
        path = session_machine.state_file_path
        if not path:
            raise SavedStateError("the service named no state file for the saved state")
        result = save_state(machine, path)
    except BaseException:
        if running:
            machine.resume().result()
        session_machine.update_state(MachineState.Running if running else MachineState.Paused)
        raise
    session_machine.update_state(MachineState.Saved)
    return result


def console_restore_if_saved(machine, session_machine) -> bool:
    """At power-up: a Saved machine restores its state file instead of booting (Restoring). Returns
    True when restored (report Running after starting the machine), False for a normal boot. A bad
    file reports Saved again, so nothing is lost, and raises SavedStateError with the reason (the
    VM process then ends without starting the VM). Build the Machine with `restoring=True` when the
    session machine is Saved: it then skips loading the boot files the state replaces."""
    if session_machine.state not in (MachineState.Saved, MachineState.AbortedSaved):
        return False
    path = session_machine.state_file_path
    session_machine.update_state(MachineState.Restoring)
    try:
        if not path or not os.path.isfile(path):
            raise SavedStateError(f"the saved state file '{path}' is missing")
        restore_state(machine, path)
    except SavedStateError:
        session_machine.update_state(MachineState.Saved)
        raise
    return True
