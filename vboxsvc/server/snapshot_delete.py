"""Deleting a snapshot (IMachine::deleteSnapshot) and the snapshots' part of unregistering.

Each disk the snapshot froze is merged with its one child as VirtualBox does: a base disk takes
its child's blocks back (backward), a differencing disk is merged forward into its child; a
childless differencing disk of the snapshot alone is deleted. Offline the service runs the
merges in a worker thread; for a running machine the VM process runs them (it holds the chain
open) through IConsole.mergeSnapshotOnline. The media tree, every attachment and the snapshot
tree then follow the surviving media.
"""

from __future__ import annotations

import uuid as uuidlib

import vmm.storage as st  # the only part of the VMM the service uses: image formats
from settings.models import Snapshot as SnapshotModel

from ..api import errors as rc
from ..api.enums import DeviceType, MachineState, MediumState, VBoxEventType, state_name
from ..api.errors import VBoxError
from .context import ctx
from .progress import Progress, run_in_thread
from .snapshots import (
    ONLINE_STATES,
    begin_transient,
    end_transient,
    forget_snapshot_object,
    hard_disks,
    parent_of,
    session_core,
    settings_copies,
    snapshotted_media,
    unlink_quietly,
)
from .statedeps import OFFLINE


def _err(code: int, text: str) -> VBoxError:
    return VBoxError(code, text, "IMachine", "SessionMachine")


def _merge_plan(core, snap: SnapshotModel) -> list[tuple[str, object, object]]:
    """(direction, source, target) per snapshot disk: 'backward' merges the child into a base disk,
    'forward' merges a differencing disk into its child, 'drop' deletes a childless diff."""
    d = core.data
    elsewhere = {str(dev.medium) for s in d.snapshots() if s.uuid != snap.uuid
                 for dev in hard_disks(s.hardware)}
    elsewhere |= {str(dev.medium) for dev in hard_disks(d.hardware)}
    plan = []
    for _dev, m in snapshotted_media(core, snap.hardware):
        if m.id in elsewhere and not m.children:
            continue   # shared with another state and not frozen by this snapshot
        kids = [c for c in m.children if c.state != MediumState.NotCreated]
        if len(kids) > 1:
            raise _err(rc.VBOX_E_INVALID_OBJECT_STATE,
                       f"Hard disk '{m.location}' has more than one child hard "
                                                       f"disk ({len(kids)})")
        if not kids:
            if m.parent is not None and m.id not in elsewhere:
                plan.append(("drop", m, None))
            continue
        child = kids[0]
        if m.parent is None:
            plan.append(("backward", child, m))
        else:
            plan.append(("forward", m, child))
    return plan


def delete_snapshot(view, snapshot_id: str) -> Progress:
    core = session_core(view)
    if core.state not in OFFLINE and core.state not in ONLINE_STATES:
        raise _err(rc.VBOX_E_INVALID_VM_STATE,
                   "Cannot delete a snapshot of the machine while it is changing the "
                                               f"state (machine state: {state_name(core.state)})")
    try:
        uid = uuidlib.UUID(snapshot_id.strip("{}"))
    except ValueError:
        raise _err(rc.E_INVALIDARG, f"Invalid snapshot UUID '{snapshot_id}'") from None
    d = core.data
    snap = d.find_snapshot(uid)
    if snap is None:
        raise _err(rc.VBOX_E_OBJECT_NOT_FOUND, f"Could not find a snapshot with UUID {{{uid}}}")
    if len(snap.children) > 1:
        raise _err(rc.VBOX_E_INVALID_OBJECT_STATE,
                   f"Snapshot '{snap.name}' of the machine '{d.name}' has more than "
                                                   f"one child snapshot ({len(snap.children)})")
    plan = _merge_plan(core, snap)
    if core.state in ONLINE_STATES:
        return _delete_online(view, core, snap, plan)
    reg = core.vbox.media
    resolver = reg.resolver()
    machine_state = d.state_file
    before = begin_transient(core, MachineState.DeletingSnapshot)
    progress = Progress(f"Deleting snapshot '{snap.name}'", initiator=view, cancelable=False,
                        operations=[("Setting up", 1)] + [(f"Merging differencing image '{s.name}'", 10)
                                                          for _k, s, _t in plan])
    jobs = _jobs(plan)

    def work(p: Progress):
        done_steps = []
        for i, (kind, src, tgt, relink) in enumerate(jobs):
            p.set_operation(i + 1)

            def cb(frac):
                p.set_percent(int(frac * 100))
            try:
                # the merged-away image is deleted once the .vbox no longer names it (_finish_delete):
                # a crash in between leaves an orphan file, never a machine pointing at a missing disk.
                # Merging again is harmless: the chain reads the same before and after a merge.
                if kind == "backward":
                    st.merge_into_parent(src, tgt, relink=relink, progress=cb, parent_resolver=resolver,
                                         delete_source=False)
                elif kind == "forward":
                    st.merge_into_child(src, tgt, progress=cb, parent_resolver=resolver, delete_source=False)
            except (st.DiskImageError, OSError) as e:
                return done_steps, VBoxError(rc.VBOX_E_FILE_ERROR, f"Could not merge the medium '{src}' to "
                                                                   f"'{tgt}'.\n{e}", "IMachine",
                                             "SessionMachine")
            done_steps.append(i)
        return done_steps, None

    def done(result, err):
        steps, merge_err = result if result is not None else ([], err)
        _finish_delete(core, snap, plan, steps, merge_err or err, machine_state)
        end_transient(core, before)
        if merge_err is not None:
            raise merge_err

    return run_in_thread(progress, work, done)


def _jobs(plan) -> list:
    return [[kind, src.location, tgt.location if tgt is not None else "",
             [c.location for c in src.children] if kind == "backward" else []] for kind, src, tgt in plan]


def _finish_delete(core, snap, plan, steps, err, machine_state: str) -> None:
    """The registries follow the merges that finished; the snapshot leaves the tree if all did.
    Files no longer used are deleted after the settings that stop naming them are saved."""
    gone = [plan[i][1].location for i in steps]
    for i in steps:
        _apply_merge(core, *plan[i])
    if err is None:
        _remove_from_tree(core, snap.uuid)
        if snap.state_file and snap.state_file != machine_state:
            gone.append(snap.state_file)
        forget_snapshot_object(core, snap.uuid)
    core.save()
    for path in gone:
        unlink_quietly(path)
    if err is None:
        ctx.fire(VBoxEventType.OnSnapshotDeleted, machine_id=core.id, snapshot_id=str(snap.uuid))


def _delete_online(view, core, snap, plan) -> Progress:
    """Deleting a snapshot of a running machine: the VM process holds the disk chain open, so it
    runs the merges (IConsole.mergeSnapshotOnline) with its vCPU held, then reopens its disks."""
    from ..ipc.dispatcher import CALL
    direct = core.direct
    console = direct.console if direct is not None else None
    if console is None or ctx.bus is None:
        raise _err(rc.VBOX_E_INVALID_VM_STATE,
                   f"The machine '{core.name}' has no console to delete a snapshot "
                                               "online with")
    before = core.state
    core.set_state(MachineState.DeletingSnapshotOnline if before == MachineState.Running
                   else MachineState.DeletingSnapshotPaused)
    progress = Progress(f"Deleting snapshot '{snap.name}'", initiator=view, cancelable=False)
    known = [[m.id, m.location] for m in core.vbox.media.by_id.values()
             if m.device_type == DeviceType.HardDisk]
    answer = ctx.bus.call_remote(console, CALL, "merge_snapshot_online", [_jobs(plan), known])

    def answered(value, err):
        steps = []
        if err is None:
            steps = [int(i) for i in (value or {}).get("done", [])]
            if (value or {}).get("error"):
                err = _err(rc.VBOX_E_FILE_ERROR, f"Could not delete the snapshot: {value['error']}")
        try:
            _finish_delete(core, snap, plan, steps, err, core.data.state_file)
        except VBoxError as e:
            err = err or e
        if core.state in (MachineState.DeletingSnapshotOnline, MachineState.DeletingSnapshotPaused):
            core.set_state(before)
        progress.complete(err)

    answer.add_callback(answered)
    return progress


def _apply_merge(core, kind: str, src, tgt) -> None:
    """After a merge on disk: the media tree and every attachment follow the surviving medium."""
    reg = core.vbox.media
    if kind == "drop":
        reg.drop_gone(src)
        return
    # "backward": src = a child merged into tgt = its parent; else src = a parent merged into its child
    reg.merged(src, tgt, into_parent=kind == "backward")
    gone, keep = src, tgt
    keep._info = None
    gone_id = uuidlib.UUID(gone.id)
    for t in settings_copies(core):
        for hw in [t.hardware] + [s.hardware for s in t.snapshots()]:
            for dev in hard_disks(hw):
                if dev.medium == gone_id:
                    dev.medium = uuidlib.UUID(keep.id)


def _remove_from_tree(core, uid: uuidlib.UUID) -> None:
    for t in settings_copies(core):
        snap = t.find_snapshot(uid)
        if snap is None:
            continue
        parent = parent_of(t, uid)
        heir = snap.children[0] if snap.children else None
        if parent is None:
            t.snapshot = heir
        else:
            i = next(i for i, c in enumerate(parent.children) if c.uuid == uid)
            parent.children[i:i + 1] = [heir] if heir is not None else []
        if t.current_snapshot == uid:
            t.current_snapshot = (parent.uuid
                                  if parent is not None else (heir.uuid if heir is not None else None))
        if t.snapshot is None:
            t.current_snapshot = None


# ------------------------------------------------------------------ unregister / deleteConfig

def detach_snapshot_media(core, media: list, cleanup_mode) -> list:
    """Machine::unregister with snapshots: the hard disks of every snapshot are detached and returned
    with the current state's, children before parents (so closing them in order works)."""
    from ..api.enums import CleanupMode
    reg = core.vbox.media
    out = list(media)
    for s in core.data.snapshots():
        for c in s.hardware.storage_controllers:
            for dev in c.devices:
                m = reg.by_id.get(str(dev.medium)) if dev.medium is not None else None
                if m is not None and m not in out and (m.device_type == DeviceType.HardDisk
                                                       or cleanup_mode == CleanupMode.Full):
                    out.append(m)
            c.devices = []

    def depth(m) -> int:
        n = 0
        while m.parent is not None:
            m, n = m.parent, n + 1
        return n
    if cleanup_mode == CleanupMode.DetachAllReturnNone:
        return media
    keep = set(map(id, out))
    for m in sorted(out, key=depth, reverse=True):   # a disk another machine builds on (a linked
        if any(id(c) not in keep for c in m.children):  # clone's parent) is not handed out for deletion
            keep.discard(id(m))
    return sorted((m for m in out if id(m) in keep), key=depth, reverse=True)


def snapshot_state_files(core) -> list[str]:
    """The saved-state files of the snapshots (deleteConfig removes them)."""
    return [s.state_file for s in core.data.snapshots() if s.state_file] if core.data is not None else []
