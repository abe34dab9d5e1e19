"""ISession and machine locks (Write, Shared, VM) with VirtualBox's rules.

Write: exclusive; the session gets a private copy of the settings (its session machine),
committed by save_settings and dropped on unlock. Shared: a link to whoever holds the
lock (its session machine and its console), or a Write lock when nobody does. VM: a Write
lock for the VM process, which also publishes its IConsole; only the process started by
launch_vm_process (it shows the launch token) may take it while a launch is pending.
"""

from __future__ import annotations

import logging

from ..api import errors as rc
from ..api.enums import LockType, MachineState, SessionState, SessionType, is_online, state_name
from ..api.errors import VBoxError
from ..ipc.busserver import current_client
from ..ipc.dispatcher import RemoteRef
from . import reattach

log = logging.getLogger("vboxsvc.session")


class Session:
    __interface__ = "ISession"
    __component__ = "SessionWrap"

    def __init__(self, client):
        self._client = client            # the bus client owning this session object
        self.__bus_tag__ = client.sid
        self.state = SessionState.Unlocked
        self.type = SessionType.Null
        self.name = ""
        self.lock_type = LockType.Null
        self.core = None                 # MachineCore while locked / linked / spawning
        self.data = None                 # private settings copy (Write/VM)
        self.view = None                 # the session machine view (Write/VM)
        self.holder = None               # for Shared/Remote: the direct session we link to
        self._console = None             # RemoteRef of the IConsole (VM sessions)
        self.launch = None               # vmproc.Launch when this session launched a VM

    # --- attributes -----------------------------------------------------------------------------
    @property
    def machine(self):
        if self.state == SessionState.Unlocked:
            return None
        if self.view is not None:
            return self.view
        if self.holder is not None and self.holder.view is not None:
            return self.holder.view
        return self.core.view if self.core is not None else None

    @property
    def console(self):
        if self.state == SessionState.Unlocked:
            return None
        if self._console is not None:
            return self._console
        if self.holder is not None:
            return self.holder._console
        return None

    # --- methods ------------------------------------------------------------------------------
    def unlock_machine(self) -> None:
        if self.state not in (SessionState.Locked, SessionState.Spawning):
            raise VBoxError(rc.VBOX_E_INVALID_SESSION_STATE,
                            f"The session is not locked (session state: {self.state.name})")
        self._release()

    def register_console(self, console) -> None:
        if self.state != SessionState.Locked or self.lock_type != LockType.VM:
            raise VBoxError(rc.VBOX_E_INVALID_SESSION_STATE,
                            "Only a session holding the VM lock can register a console")
        if not isinstance(console, RemoteRef):
            raise VBoxError(rc.E_INVALIDARG, "The console must be an object exported by the VM process")
        if console.owner != self._client.sid:
            raise VBoxError(rc.E_ACCESSDENIED, "The console must live in the process holding the VM lock")
        self._console = console

    # --- service side ----------------------------------------------------------------------------
    def _release(self) -> None:
        core = self.core
        if core is None:
            self._reset()
            return
        if core.direct is self:
            was_vm = self.lock_type == LockType.VM
            core.set_session_state(SessionState.Unlocking)
            for linked in list(core.remotes):
                linked._reset()  # shared and remote sessions lose their link with the lock
            core.remotes = []
            core.direct = None
            if was_vm:
                core.vm_client = None
                if is_online(core.state) or core.state >= MachineState.FirstTransient:
                    # the VM process let go of a live machine: VirtualBox marks it Aborted
                    saving = core.state == MachineState.Saving and bool(core.saving_state_file)
                    core.set_state(MachineState.AbortedSaved if saving else MachineState.Aborted)
                if core.launch is not None:
                    core.launch.vm_unlocked()
            if self.view is not None:
                self.view.kill()
            core.set_session_state(SessionState.Unlocked)
        else:
            if self in core.remotes:
                core.remotes.remove(self)
            if self.launch is not None and not self.launch.done:
                self.launch.launcher_detached()
        self._reset()

    def _reset(self) -> None:
        self.state = SessionState.Unlocked
        self.type = SessionType.Null
        self.lock_type = LockType.Null
        self.core = None
        self.data = None
        self.view = None
        self.holder = None
        self._console = None
        self.launch = None

    def client_gone(self) -> None:
        if self.state != SessionState.Unlocked:
            self._release()


def _session(obj) -> Session:
    if not isinstance(obj, Session):
        raise VBoxError(rc.E_INVALIDARG, "Invalid session object")
    return obj


def take_direct(core, s: Session, lock_type: LockType) -> None:
    s.state = SessionState.Locked
    s.type = SessionType.WriteLock
    s.lock_type = lock_type
    s.core = core
    s.data = core.data.model_copy(deep=True)
    s.view = core.session_view(s)
    core.direct = s
    core.set_session_state(SessionState.Locked)


def lock_machine(core, session, lock_type: LockType) -> None:
    s = _session(session)
    if s.state != SessionState.Unlocked:
        raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE, "The given session is busy", "IMachine",
                        "MachineWrap")
    if not core.registered:
        raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE, f"The machine '{core.name}' is not registered",
                        "IMachine", "MachineWrap")
    if core.data is None:
        raise VBoxError(rc.E_ACCESSDENIED, f"The machine '{core.name}' is inaccessible", "IMachine",
                        "MachineWrap")
    if lock_type == LockType.Null:
        raise VBoxError(rc.E_INVALIDARG, "Invalid lock type")
    client = current_client()
    launch = core.launch
    if lock_type != LockType.VM:
        # a VM process from before this service started runs the machine: wait for it to come back
        waiting = reattach.wait_for_reattach(core, lambda: lock_machine(core, session, lock_type))
        if waiting is not None:
            if lock_type != LockType.Shared:
                raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                                f"The machine '{core.name}' is already locked for a session (or "
                                f"being unlocked)",
                                "IMachine", "MachineWrap")
            return waiting
    if lock_type == LockType.Shared and (core.direct is not None):
        s.state = SessionState.Locked
        s.type = SessionType.Shared
        s.lock_type = LockType.Shared
        s.core = core
        s.holder = core.direct
        core.remotes.append(s)
        return
    if core.direct is not None:
        raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                        f"The machine '{core.name}' is already locked for a session (or being unlocked)",
                        "IMachine", "MachineWrap")
    if lock_type == LockType.VM and reattach.check_vm_lock(core, client):
        take_direct(core, s, LockType.VM)     # the state stays what the VM process recorded
        s.name = "headless"
        core.vm_client = client
        return
    if lock_type == LockType.VM:
        if launch is not None and not launch.done:
            token = client.token if client is not None else None
            if token != launch.token:
                pid = client.pid if client is not None else 0
                raise VBoxError(rc.E_ACCESSDENIED,
                                f"An unexpected process (PID=0x{pid:08X}) has tried to lock the machine "
                                f"'{core.name}', while only the process started by launchVMProcess "
                                f"(PID=0x{launch.pid:08X}) is allowed", "IMachine", "MachineWrap")
        elif is_online(core.state) or core.state >= MachineState.FirstTransient:
            raise VBoxError(rc.VBOX_E_INVALID_VM_STATE,
                            f"The machine '{core.name}' is not offline (state is {state_name(core.state)})",
                            "IMachine", "MachineWrap")
        take_direct(core, s, LockType.VM)
        pending = launch if launch is not None and not launch.done else None
        s.name = pending.frontend if pending is not None else "headless"
        core.vm_client = client
        if pending is not None:
            pending.vm_locked(s)
        return
    if launch is not None and not launch.done:
        raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                        f"The machine '{core.name}' already has a lock request pending", "IMachine",
                        "MachineWrap")
    take_direct(core, s, LockType.Write)
    s.name = client.name if client is not None else ""


def release_client_sessions(client) -> None:
    """A client went away: unlock (and roll back) its sessions; VM sessions leave Aborted machines."""
    for s in client.data.get("sessions", []):
        try:
            s.client_gone()
        except Exception:
            log.exception("releasing a session failed")
