"""Machine-state rules: which states allow changing settings, and which transitions are legal.

The messages are VirtualBox's (`The machine is not mutable (state is PoweredOff)`, ...).
"""

from __future__ import annotations

from ..api import errors as rc
from ..api.enums import MachineState as S
from ..api.enums import state_name
from ..api.errors import VBoxError

MUTABLE = "mutable"
MUTABLE_OR_SAVED = "mutable or saved"
MUTABLE_OR_RUNNING = "mutable or running"
MUTABLE_OR_SAVED_OR_RUNNING = "mutable, saved or running"

_MUTABLE_STATES = {S.PoweredOff, S.Aborted, S.Teleported}
_SAVED = {S.Saved, S.AbortedSaved}
_RUNNING = {S.Running, S.Paused}
ALLOWED = {
    MUTABLE: _MUTABLE_STATES,
    MUTABLE_OR_SAVED: _MUTABLE_STATES | _SAVED,
    MUTABLE_OR_RUNNING: _MUTABLE_STATES | _RUNNING,
    MUTABLE_OR_SAVED_OR_RUNNING: _MUTABLE_STATES | _SAVED | _RUNNING,
}

OFFLINE = {S.PoweredOff, S.Saved, S.Teleported, S.Aborted, S.AbortedSaved}

# legal transitions reported by a VM process (xidl MachineState diagram)
TRANSITIONS: dict[S, set[S]] = {
    S.PoweredOff: {S.Starting},
    S.Aborted: {S.Starting},
    S.Teleported: {S.Starting},
    S.Saved: {S.Restoring},
    S.AbortedSaved: {S.Restoring},
    S.Starting: {S.Running, S.Paused, S.PoweredOff, S.Stopping, S.Stuck},
    S.Restoring: {S.Running, S.Paused, S.Saved, S.PoweredOff, S.Stuck},
    S.Running: {S.Paused, S.Saving, S.Stopping, S.Stuck, S.LiveSnapshotting, S.OnlineSnapshotting,
                S.Teleporting, S.PoweredOff},
    S.Paused: {S.Running, S.Saving, S.Stopping, S.Stuck, S.OnlineSnapshotting, S.TeleportingPausedVM,
               S.PoweredOff},
    S.Stuck: {S.Stopping, S.PoweredOff},
    S.Saving: {S.Saved, S.Running, S.Paused, S.Stopping},
    S.Stopping: {S.PoweredOff},
    S.LiveSnapshotting: {S.Running, S.Paused},
    S.OnlineSnapshotting: {S.Running, S.Paused},
    S.DeletingSnapshotOnline: {S.Running, S.Paused},   # deleting a snapshot of a running VM
    S.DeletingSnapshotPaused: {S.Paused, S.Running},
    S.Teleporting: {S.Running, S.Teleported, S.Paused},
    S.TeleportingPausedVM: {S.Paused, S.Teleported},
}


def check_mutable(registered: bool, is_session: bool, state: int, dep: str) -> None:
    """Raise VBOX_E_INVALID_VM_STATE unless settings may change (Machine::i_checkStateDependency)."""
    if not registered:
        return  # a machine not registered yet is freely mutable
    if is_session and state in ALLOWED[dep]:
        return
    text = "The machine is not mutable" if dep == MUTABLE else "The machine is not " + dep
    raise VBoxError(rc.VBOX_E_INVALID_VM_STATE, f"{text} (state is {state_name(state)})", "IMachine",
                    "MachineWrap")


def check_transition(old: int, new: int) -> None:
    if new == old:
        return
    if new not in TRANSITIONS.get(S(old), set()):
        raise VBoxError(rc.VBOX_E_INVALID_VM_STATE,
                        f"Invalid machine state transition from {state_name(old)} to {state_name(new)}",
                        "IMachine", "SessionMachine")
