"""ISnapshot and IMachine's snapshot methods: take, restore, delete, find, edit.

A snapshot freezes the machine's hardware (a copy of its settings) and its disks: every
normal hard disk of the current state becomes read-only and the current state continues on
a new differencing image `Snapshots/{uuid}.vdi` whose parent it is. A saved machine's state
file is copied into the snapshot. Restoring puts the snapshot's hardware back and starts
fresh differencing images on its disks (the old current state's differencing images are
deleted); deleting merges each snapshot disk with its one child as VirtualBox does
(a base disk takes its child's blocks back; a differencing disk is merged forward into its
child). The tree, `currentSnapshot` and `currentStateModified` live in the .vbox through
`settings`. Image work runs in a worker thread; registries change on the bus thread.
Deletion is in snapshot_delete.py.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid as uuidlib
import weakref
from datetime import UTC, datetime
from pathlib import Path

import vmm.storage as st  # the only part of the VMM the service uses: image formats
from settings import paths as spaths
from settings.models import Hardware, MachineSettings
from settings.models import Snapshot as SnapshotModel

from ..api import errors as rc
from ..api.enums import DeviceType, MachineState, MediumState, MediumType, VBoxEventType, state_name
from ..api.errors import VBoxError
from .context import ctx
from .progress import Progress, run_in_thread
from .statedeps import OFFLINE

log = logging.getLogger("vboxsvc.snapshots")

ONLINE_STATES = (MachineState.Running, MachineState.Paused)
# snapshot objects per machine core, so a client keeps the same reference for the same snapshot
_objects: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _err(code: int, text: str) -> VBoxError:
    return VBoxError(code, text, "IMachine", "SessionMachine")


# ------------------------------------------------------------------ ISnapshot

class Snapshot:
    """ISnapshot: a live view of one node of the machine's snapshot tree."""

    __interface__ = "ISnapshot"
    __component__ = "SnapshotWrap"

    def __init__(self, core, uid: uuidlib.UUID):
        self._core = core
        self._uid = uid
        self._view = None

    @property
    def _m(self) -> SnapshotModel:
        return find_snapshot_model(self._core, self._uid, "ISnapshot", "SnapshotWrap")

    @property
    def id(self) -> str:
        return str(self._uid)

    @property
    def name(self) -> str:
        return self._m.name

    @name.setter
    def name(self, value: str) -> None:
        if not value:
            raise VBoxError(rc.E_INVALIDARG, "Snapshot name must not be empty", "ISnapshot", "SnapshotWrap")
        self._edit("name", value)

    @property
    def description(self) -> str:
        return self._m.description

    @description.setter
    def description(self, value: str) -> None:
        self._edit("description", value)

    def _edit(self, field: str, value: str) -> None:
        if getattr(self._m, field) == value:
            return
        for d in settings_copies(self._core):
            s = d.find_snapshot(self._uid)
            if s is not None:
                setattr(s, field, value)
        self._core.save()
        ctx.fire(VBoxEventType.OnSnapshotChanged, machine_id=self._core.id, snapshot_id=self.id)

    @property
    def time_stamp(self) -> int:
        return int(self._m.time_stamp.timestamp() * 1000)

    @property
    def online(self) -> bool:
        return bool(self._m.state_file)

    @property
    def machine(self):
        self._m  # noqa: B018 - raises when the snapshot is gone
        if self._view is None:
            self._view = self._core.snapshot_view(self._uid)
        return self._view

    @property
    def parent(self):
        p = parent_of(self._core.data, self._uid)
        return snapshot_object(self._core, p.uuid) if p is not None else None

    @property
    def children(self) -> list:
        return [snapshot_object(self._core, c.uuid) for c in self._m.children]

    @property
    def children_count(self) -> int:
        return len(self._m.children)

    def get_children_count(self) -> int:
        return len(list(self._m.walk())) - 1


def find_snapshot_model(core, uid: uuidlib.UUID, interface: str, component: str) -> SnapshotModel:
    """Snapshot `uid` of the machine's tree, or VBOX_E_OBJECT_NOT_FOUND in the name of the asking object."""
    d = core.data
    s = d.find_snapshot(uid) if d is not None else None
    if s is None:
        raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND,
                        f"Could not find a snapshot with UUID {{{uid}}}", interface,
                        component)
    return s


def snapshot_object(core, uid: uuidlib.UUID) -> Snapshot:
    objs = _objects.setdefault(core, {})
    obj = objs.get(uid)
    if obj is None:
        obj = objs[uid] = Snapshot(core, uid)
    return obj


def forget_snapshot_object(core, uid: uuidlib.UUID) -> None:
    obj = _objects.get(core, {}).pop(uid, None)
    if obj is not None and ctx.bus is not None:
        if obj._view is not None:
            obj._view.kill()
        ctx.bus.table.drop(obj)


# ------------------------------------------------------------------ helpers

def settings_copies(core) -> list[MachineSettings]:
    """The committed settings and the lock holder's working copy: snapshot changes go to both."""
    out = [core.data]
    if core.direct is not None and core.direct.data is not None and core.direct.data is not core.data:
        out.append(core.direct.data)
    return out


def parent_of(d: MachineSettings, uid: uuidlib.UUID) -> SnapshotModel | None:
    for s in d.snapshots():
        if any(c.uuid == uid for c in s.children):
            return s
    return None


def session_core(view):
    """Snapshot operations belong to the session machine (VirtualBox's SessionMachine)."""
    core = view._core
    if view._session is None or core.data is None:
        raise VBoxError(rc.VBOX_E_INVALID_VM_STATE, "The machine is not mutable (state is "
                                                    f"{state_name(core.state)})", "IMachine", "MachineWrap")
    if view.settings_modified:
        view.save_settings()   # VirtualBox commits pending changes before a snapshot operation
    return core


def hard_disks(hw: Hardware):
    for c in hw.storage_controllers:
        for dev in c.devices:
            if dev.type == "HardDisk" and dev.medium is not None:
                yield dev


def _snapshot_folder(core) -> Path:
    return spaths.snapshot_folder(core.path, core.data.snapshot_folder)


def _new_state_file_path(core) -> str:
    folder = _snapshot_folder(core)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spaths.state_file_name()
    while path.exists():
        path = folder / spaths.state_file_name()
    return str(path)


def _copy_state(src: str, dst: str) -> None:
    try:
        shutil.copyfile(src, dst + ".tmp")
        os.replace(dst + ".tmp", dst)
    except OSError as e:
        raise VBoxError(rc.VBOX_E_FILE_ERROR, f"Could not copy the state file '{src}' to '{dst}' "
                                              f"({e.strerror})") from None


def _create_diffs(
    p: Progress, folder: Path, state_src: str, state_dst: str, diffs, resolver, failure: str
) -> None:
    """The worker's half of taking or restoring a snapshot: copy the saved state `state_src` to
    `state_dst` (when there is one) and start a differencing image on every disk of `diffs`
    ((attachment, medium, new uuid) each), progress operation 1, 2, ... per disk.  On any failure
    what was made is removed and the error is "`failure`: reason"."""
    made = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if state_dst:
            _copy_state(state_src, state_dst)
        for i, (_dev, m, uid) in enumerate(diffs):
            p.set_operation(i + 1)
            loc = str(folder / spaths.diff_image_name(uid))
            st.create_diff_vdi(loc, m.location, uuid=uid, parent_resolver=resolver).close()
            made.append(loc)
    except BaseException as e:
        for loc in made + ([state_dst] if state_dst else []):
            unlink_quietly(loc)
        if isinstance(e, VBoxError):
            raise
        raise _err(rc.VBOX_E_FILE_ERROR, f"{failure}: {e}") from None


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("cannot delete %s: %s", path, e.strerror)


def _register_diff(reg, parent, uid: str, location: str):
    from .media import Medium
    m = Medium(reg, uid, location, "VDI", DeviceType.HardDisk)
    reg.add_made(m, parent, parent.base.registry)
    return m


def snapshotted_media(core, hw: Hardware) -> list[tuple[object, object]]:
    """(attachment, medium) of the disks a snapshot freezes: normal hard disks (not writethrough,
    shareable, ...), which get a differencing child for the state that follows."""
    reg = core.vbox.media
    out = []
    for dev in hard_disks(hw):
        m = reg.by_id.get(str(dev.medium))
        if m is None:
            raise _err(rc.VBOX_E_OBJECT_NOT_FOUND,
                       f"Could not find an open hard disk with UUID {{{dev.medium}}}")
        if m.base.type_ not in (MediumType.Normal,):
            continue
        if m.format not in ("VDI", "VMDK"):
            raise _err(rc.VBOX_E_NOT_SUPPORTED,
                       f"Medium '{m.location}' cannot be snapshotted: only VDI and VMDK "
                                                "images can have (VDI) differencing images")
        if m.state not in (MediumState.Created, MediumState.LockedRead, MediumState.LockedWrite):
            m.refresh_state()
            if m.state != MediumState.Created:
                raise _err(rc.VBOX_E_INVALID_OBJECT_STATE, f"Medium '{m.location}' is not accessible: "
                                                           f"{m.last_access_error}")
        out.append((dev, m))
    return out


def begin_transient(core, transient: MachineState) -> MachineState:
    before = core.state
    core.set_state(transient)
    return before


def end_transient(core, state: MachineState) -> None:
    core.set_state(state)


def mark_modified(core) -> None:
    """The current state differs from the current snapshot (settings saved, VM started)."""
    d = core.data
    if d is not None and d.snapshot is not None and not d.current_state_modified:
        for t in settings_copies(core):
            t.current_state_modified = True
        core.save()


# ------------------------------------------------------------------ find / current

def find_snapshot(view, name_or_id: str) -> Snapshot:
    d = view._d
    if d.snapshot is None:
        raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND, "This machine does not have any snapshots")
    if not name_or_id:
        return snapshot_object(view._core, d.snapshot.uuid)
    try:
        uid = uuidlib.UUID(name_or_id.strip("{}")) if len(name_or_id.strip("{}")) == 36 else None
    except ValueError:
        uid = None
    if uid is not None:
        if d.find_snapshot(uid) is None:
            raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND, f"Could not find a snapshot with UUID {{{uid}}}")
        return snapshot_object(view._core, uid)
    for s in d.snapshots():
        if s.name == name_or_id:
            return snapshot_object(view._core, s.uuid)
    raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND, f"Could not find a snapshot named '{name_or_id}'")


def current_snapshot(view):
    d = view._d
    if d.current_snapshot is None or d.find_snapshot(d.current_snapshot) is None:
        return None
    return snapshot_object(view._core, d.current_snapshot)


# ------------------------------------------------------------------ take

def take_snapshot(view, name: str, description: str = "", pause: bool = True):
    """IMachine::takeSnapshot -> [snapshot id, IProgress]."""
    core = session_core(view)
    if not name:
        raise _err(rc.E_INVALIDARG, "Snapshot name must not be empty")
    if core.state in ONLINE_STATES:
        return take_online(view, core, name, description, pause)
    if core.state not in OFFLINE:
        raise _err(rc.VBOX_E_INVALID_VM_STATE,
                   "Cannot take a snapshot of the machine while it is changing the "
                                               f"state (machine state: {state_name(core.state)})")
    d = core.data
    plan = snapshotted_media(core, d.hardware)
    snap_id = uuidlib.uuid4()
    folder = _snapshot_folder(core)
    diffs = [(dev, m, str(uuidlib.uuid4())) for dev, m in plan]
    saved = d.state_file if core.state in (MachineState.Saved, MachineState.AbortedSaved) else ""
    state_copy = _new_state_file_path(core) if saved else ""
    before = begin_transient(core, MachineState.Snapshotting)
    progress = Progress("Taking a snapshot of the virtual machine", initiator=view, cancelable=False,
                        operations=[("Setting up snapshot", 1)] + [(f"Creating differencing image for "
                                                                   f"'{m.name}'", 1) for _d, m in plan])
    resolver = core.vbox.media.resolver()

    def work(p: Progress):
        _create_diffs(p, folder, saved, state_copy, diffs, resolver,
                      "Could not create the differencing image for the snapshot")

    def done(_r, err):
        if err is None:
            _commit_snapshot(core, snap_id, name, description, state_copy, diffs, folder)
        end_transient(core, before)
        if err is None:
            ctx.fire(VBoxEventType.OnSnapshotTaken, machine_id=core.id, snapshot_id=str(snap_id))

    run_in_thread(progress, work, done)
    return [str(snap_id), progress]


def _commit_snapshot(core, snap_id, name, description, state_file, diffs, folder) -> None:
    """The snapshot enters the tree as a child of the current one, with the hardware as it is now;
    the current state moves onto the new differencing images."""
    reg = core.vbox.media
    frozen = core.data.hardware.model_copy(deep=True)
    snap = SnapshotModel(uuid=snap_id, name=name, description=description,
                         time_stamp=datetime.now(UTC), state_file=state_file, hardware=frozen)
    new_ids = {}
    for _dev, m, uid in diffs:
        _register_diff(reg, m, uid, str(folder / spaths.diff_image_name(uid)))
        new_ids[m.id] = uuidlib.UUID(uid)   # a hard disk is attached at most once per state
    for t in settings_copies(core):
        for dev in hard_disks(t.hardware):
            if str(dev.medium) in new_ids:
                dev.medium = new_ids[str(dev.medium)]
        copy = snap.model_copy(deep=True)
        parent = t.find_snapshot(t.current_snapshot) if t.current_snapshot else None
        if parent is None and t.snapshot is not None:
            parent = t.snapshot   # a current snapshot is always set when there are snapshots
            while parent.children:
                parent = parent.children[-1]
        if parent is None:
            t.snapshot = copy
        else:
            parent.children.append(copy)
        t.current_snapshot = snap_id
        t.current_state_modified = False
    core.save()


def take_online(view, core, name: str, description: str, pause: bool):
    """A snapshot of a running machine: the VM process (its IConsole) pauses the vCPU, writes the
    state into the snapshot's .sav, moves its open disks onto the new differencing images and
    resumes; the service then records the snapshot. State OnlineSnapshotting (or
    LiveSnapshotting when not asked to pause a running VM) meanwhile."""
    from ..ipc.dispatcher import CALL
    direct = core.direct
    console = direct.console if direct is not None else None
    if console is None or ctx.bus is None:
        raise _err(rc.VBOX_E_INVALID_VM_STATE, f"The machine '{core.name}' has no console to take an online "
                                               "snapshot with")
    d = core.data
    plan = snapshotted_media(core, d.hardware)
    snap_id = uuidlib.uuid4()
    folder = _snapshot_folder(core)
    diffs = [(dev, m, str(uuidlib.uuid4())) for dev, m in plan]
    state_file = _new_state_file_path(core)
    before = core.state
    live = not pause and before == MachineState.Running
    core.set_state(MachineState.LiveSnapshotting if live else MachineState.OnlineSnapshotting)
    progress = Progress("Taking a snapshot of the virtual machine", initiator=view, cancelable=False,
                        operations=[("Saving the machine state", 5)] +
                                   [(f"Creating differencing image for '{m.name}'", 1)
                                    for _d, m, _u in diffs])
    disks = [[m.location, str(folder / spaths.diff_image_name(uid)), uid] for _d, m, uid in diffs]
    answer = ctx.bus.call_remote(console, CALL, "take_snapshot_online", [state_file, disks, pause])

    def answered(_value, err):
        if err is None:
            try:
                _commit_snapshot(core, snap_id, name, description, state_file, diffs, folder)
            except VBoxError as e:
                err = e
        else:
            unlink_quietly(state_file)   # the VM process takes back the disks it switched
        if core.state in (MachineState.LiveSnapshotting, MachineState.OnlineSnapshotting):
            core.set_state(before)
        if err is None:
            ctx.fire(VBoxEventType.OnSnapshotTaken, machine_id=core.id, snapshot_id=str(snap_id))
        progress.complete(err)

    answer.add_callback(answered)
    return [str(snap_id), progress]


# ------------------------------------------------------------------ restore

def restore_snapshot(view, snapshot) -> Progress:
    core = session_core(view)
    if not isinstance(snapshot, Snapshot) or snapshot._core is not core:
        raise _err(rc.E_INVALIDARG, "Invalid snapshot object")
    if core.state not in OFFLINE:
        raise _err(rc.VBOX_E_INVALID_VM_STATE, "Cannot delete the current state of the running machine "
                                               f"(machine state: {state_name(core.state)})")
    d = core.data
    snap = snapshot._m
    reg = core.vbox.media
    hw = snap.hardware.model_copy(deep=True)
    plan = [(dev, m, str(uuidlib.uuid4())) for dev, m in snapshotted_media(core, hw)]
    folder = _snapshot_folder(core)
    still_used = {str(dev.medium) for s in d.snapshots() for dev in hard_disks(s.hardware)}
    orphans = []
    for dev in hard_disks(d.hardware):
        m = reg.by_id.get(str(dev.medium))
        if m is not None and m.parent is not None and not m.children and m.id not in still_used:
            orphans.append(m)
    old_state = d.state_file
    new_state = _new_state_file_path(core) if snap.state_file else ""
    before = begin_transient(core, MachineState.RestoringSnapshot)
    progress = Progress(f"Restoring snapshot '{snap.name}'", initiator=view, cancelable=False,
                        operations=[("Restoring the machine settings", 1)] +
                                   [(f"Creating differencing image for '{m.name}'", 1) for _d, m, _u in plan])
    resolver = reg.resolver()

    def work(p: Progress):
        _create_diffs(p, folder, snap.state_file, new_state, plan, resolver, "Could not restore the snapshot")

    def done(_r, err):
        if err is not None:
            end_transient(core, before)
            return
        for dev, m, uid in plan:
            _register_diff(reg, m, uid, str(folder / spaths.diff_image_name(uid)))
            dev.medium = uuidlib.UUID(uid)
        gone = [m.location for m in orphans]
        for m in orphans:
            reg.drop_gone(m)
        for t in settings_copies(core):
            t.hardware = hw.model_copy(deep=True)
            t.current_snapshot = snap.uuid
            t.current_state_modified = False
            t.state_file = new_state
            t.aborted = False
        core.save()     # the settings stop naming the old files before they go: a crash leaves orphans
        for loc in gone:
            unlink_quietly(loc)
        if old_state and old_state != new_state:
            unlink_quietly(old_state)
        end_transient(core, MachineState.Saved if new_state else MachineState.PoweredOff)
        ctx.fire(VBoxEventType.OnSnapshotRestored, machine_id=core.id, snapshot_id=str(snap.uuid))

    return run_in_thread(progress, work, done)
