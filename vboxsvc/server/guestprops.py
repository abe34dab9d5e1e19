"""IMachine's guest properties (MachineImpl.cpp: getGuestProperty, setGuestProperty,
enumerateGuestProperties, pushGuestProperty).

While the machine is powered off or saved the properties live in its settings (`<GuestProperties>`)
and are changed at once, like extra data. While a VM process runs, the VM process holds them: every
call is forwarded to its IConsole, which answers from its own store and reports each change back
with pushGuestProperty, so the service's copy follows and can fire OnGuestPropertyChanged. When the
VM stops, the transient properties (TRANSIENT, TRANSRESET) are dropped.
"""

from __future__ import annotations

import time

from settings.models import GuestProperty

from ..api import errors as rc
from ..api import guestprop as gp
from ..api.enums import LockType, MachineState, VBoxEventType, is_online
from ..api.errors import VBoxError
from .context import ctx
from .session import Session

GET, SET, DELETE = 0, 1, 2   # IInternalSessionControl::accessGuestProperty's access modes


def _console(core):
    direct = core.direct
    console = direct.console if direct is not None else None
    if console is None or ctx.bus is None or not is_online(core.state):
        return None
    return console


def _forward(console, member: str, args: list):
    from ..ipc.dispatcher import CALL
    return ctx.bus.call_remote(console, CALL, member, args)


def _find(props: list[GuestProperty], name: str) -> GuestProperty | None:
    return next((p for p in props if p.name == name), None)


def get(view, name: str):
    """[value, timestamp, flags]; an unknown name gives ["", 0, ""]."""
    gp.check_name(name)
    console = _console(view._core)
    if console is not None:
        return _forward(console, "access_guest_property", [name, "", "", GET])
    p = _find(view._d.hardware.guest_properties, name)
    return [p.value, p.timestamp, p.flags] if p is not None else ["", 0, ""]


def enumerate_(view, patterns: str):
    """[names, values, timestamps, flags] of the properties matching `patterns`."""
    console = _console(view._core)
    if console is not None:
        return _forward(console, "enumerate_guest_properties", [patterns])
    props = [p for p in view._d.hardware.guest_properties if gp.matches(patterns, p.name)]
    return [[p.name for p in props], [p.value for p in props], [p.timestamp for p in props],
            [p.flags for p in props]]


def set_(view, name: str, value: str, flags: str | None, delete: bool = False):
    gp.check_name(name)
    gp.check_value(value)
    new_flags = gp.normalise_flags(flags) if flags is not None else None
    core = view._core
    console = _console(core)
    if console is not None:
        mode = DELETE if delete or not value else SET
        return _forward(console, "access_guest_property", [name, value, new_flags or "", mode])
    if core.registered and view._session is None:
        raise VBoxError(rc.VBOX_E_INVALID_VM_STATE,
                        f"The machine is not mutable (state is {core.state.name})",
                        "IMachine", "MachineWrap")
    if core.state not in (MachineState.PoweredOff, MachineState.Aborted, MachineState.Teleported,
                          MachineState.Saved, MachineState.AbortedSaved):
        raise VBoxError(rc.VBOX_E_INVALID_VM_STATE,
                        f"The machine is not mutable (state is {core.state.name})",
                        "IMachine", "MachineWrap")
    old = _find(view._d.hardware.guest_properties, name)
    if old is not None and gp.parse_flags(old.flags) & gp.RDONLYHOST:
        raise VBoxError(rc.E_ACCESSDENIED, f"The property '{name}' cannot be changed by the host",
                        "IMachine", "MachineWrap")
    if delete or not value:
        if old is None:
            return None
        store(core, view, name, "", 0, "", deleted=True)
    else:
        keep = new_flags if new_flags is not None else (old.flags if old is not None else "")
        store(core, view, name, value, time.time_ns(), keep)
    if core.registered:
        core.save()
    return None


def store(core, view, name: str, value: str, timestamp: int, flags: str, deleted: bool = False) -> None:
    """Record a property (or its removal) in every copy of the settings and tell listeners."""
    targets = [core.data]
    if view is not None and view._session is not None and view._session.data is not None:
        targets.append(view._session.data)
    if core.direct is not None and core.direct.data is not None:
        targets.append(core.direct.data)
    seen = set()
    for t in targets:
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        props = t.hardware.guest_properties
        kept = [p for p in props if p.name != name]
        if not deleted:
            kept.append(GuestProperty(name=name, value=value, timestamp=timestamp, flags=flags))
        t.hardware.guest_properties = kept
    ctx.fire(VBoxEventType.OnGuestPropertyChanged, machine_id=core.id, name=name, value=value, flags=flags,
             was_deleted=deleted)


def push(view, name: str, value: str, timestamp: int, flags: str) -> None:
    """The VM process reports a change of its store (an empty value is a deletion)."""
    core = view._core
    s = view._session
    if s is None or not isinstance(s, Session) or s.lock_type != LockType.VM or core.direct is not s:
        raise VBoxError(rc.E_ACCESSDENIED,
                        "Only the VM process holding the VM lock may push guest properties")
    gp.check_name(name)
    store(core, view, name, value, int(timestamp), gp.normalise_flags(flags), deleted=not value)


def drop_transient(core) -> None:
    """The VM stopped: the transient properties go (they were never written to the file)."""
    for t in [core.data] + ([core.direct.data] if core.direct is not None and core.direct.data else []):
        if t is None:
            continue
        t.hardware.guest_properties = [p for p in t.hardware.guest_properties
                                       if not gp.parse_flags(p.flags) & gp.TRANSIENT]
