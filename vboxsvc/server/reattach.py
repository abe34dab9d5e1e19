"""VM processes that outlived a service: found at start-up, kept running, taken back.

A VM process holds its machine's lock file (ipc/vmlock.py) for its whole life and writes its
current state there. When a service starts (after a crash, a restart, an upgrade) it looks at the
lock of every machine: a held one means a VM process still runs it. The machine then shows that
process's state (not the Aborted/PoweredOff the settings files would suggest), no second VM process
or Write lock is allowed, Shared locks (controlvm, showvminfo) wait a little for the process to
re-attach, and if the process ends before it re-attached the machine becomes Aborted. The VM
process re-attaches with an ordinary VM lock (`lock_machine(session, VM)`), accepted because the
lock file's holder is the calling process.
"""

from __future__ import annotations

import logging
import os

from ..api import errors as rc
from ..api.enums import MachineState, SessionState, is_online
from ..api.errors import VBoxError
from ..ipc import vmlock
from ..ipc.dispatcher import Deferred
from .context import ctx

log = logging.getLogger("vboxsvc.reattach")

WAIT_S = 15.0           # how long a Shared lock waits for a detached VM process to re-attach
POLL_S = 0.05


class Detached:
    """A VM process found running its machine without a session in this service."""

    def __init__(self, core, pid: int, state: MachineState):
        self.core, self.pid, self.state = core, pid, state
        self.pidfd: int | None = None


def adopt_running(vbox) -> None:
    for core in vbox.cores:
        if core.data is None:
            continue
        held = vmlock.holder(core.path)
        if held is None:
            continue
        pid, name = held
        state = MachineState.__members__.get(name, MachineState.Running)
        if not is_online(state) and state < MachineState.FirstTransient:
            state = MachineState.Running
        d = Detached(core, pid, state)
        core.detached = d
        core.state = state
        core.session_state = SessionState.Locked
        log.warning("machine '%s' is run by VM process %d (%s) from before this service started: "
                    "waiting for it to re-attach", core.name, pid, state.name)
        try:
            d.pidfd = os.pidfd_open(pid) if pid else None
        except OSError:
            d.pidfd = None
        if d.pidfd is not None:
            ctx.bus.watch_fd(d.pidfd, lambda d=d: _ended(d))


def _ended(d: Detached) -> None:
    core = d.core
    _unwatch(d)
    if getattr(core, "detached", None) is not d:
        return
    core.detached = None
    # a guest that powered off while no service was there: the process wrote PoweredOff last
    last = vmlock.last_record(core.path)
    final = MachineState.PoweredOff if last == (d.pid, "PoweredOff") else MachineState.Aborted
    log.warning("VM process %d of '%s' ended before it re-attached: %s", d.pid, core.name, final.name)
    core.set_state(final)
    core.set_session_state(SessionState.Unlocked)


def _unwatch(d: Detached) -> None:
    if d.pidfd is not None:
        ctx.bus.unwatch_fd(d.pidfd)
        os.close(d.pidfd)
        d.pidfd = None


def running_elsewhere(core) -> int | None:
    """The pid of a live VM process holding the machine's lock file (whether or not attached)."""
    held = vmlock.holder(core.path)
    return held[0] if held is not None else None


def check_vm_lock(core, client) -> bool:
    """Before a VM lock: True when `client` is the detached VM process coming back (the state
    checks are then skipped); raises when another process runs the machine. A VM process takes
    the lock file before it asks for the VM lock, so a fresh start passes too (and gets False)."""
    pid = running_elsewhere(core)
    if pid is None:
        return False
    if client is not None and pid == client.pid:
        d = getattr(core, "detached", None)
        if d is None:
            return False
        _unwatch(d)
        core.detached = None
        log.info("VM process %d re-attached to '%s' (%s)", pid, core.name, core.state.name)
        return True
    raise VBoxError(
        rc.VBOX_E_INVALID_OBJECT_STATE,
        f"The machine '{core.name}' is already locked by a session (the VM process {pid} runs it)",
        "IMachine",
        "MachineWrap",
    )


def wait_for_reattach(core, then) -> Deferred | None:
    """A Shared lock on a machine whose VM process has not re-attached yet: a Deferred that runs
    `then()` once it has (or fails after WAIT_S); None when there is nothing to wait for."""
    if getattr(core, "detached", None) is None or core.direct is not None:
        return None
    d = Deferred()
    left = [int(WAIT_S / POLL_S)]

    def poll():
        if core.direct is not None or getattr(core, "detached", None) is None:
            try:
                d.resolve(then())
            except VBoxError as e:
                d.fail(e)
            return
        left[0] -= 1
        if left[0] <= 0:
            d.fail(VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                             f"The VM process of '{core.name}' has not re-attached to the service",
                             "IMachine", "MachineWrap"))
            return
        ctx.call_later(POLL_S, poll)
    ctx.call_later(POLL_S, poll)
    return d
