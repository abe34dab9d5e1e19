"""IMachine::cloneTo: copy a machine (its current state or a snapshot) into a new machine.

As VirtualBox's MachineCloneVM: the target is a fresh machine from createMachine; it gets the
source's settings with its own UUID and name, new MAC addresses (unless KeepAllMACs, or
KeepNATMACs for NAT adapters) and a new hardware UUID (unless KeepHwUUIDs). Mode MachineState
copies one state with every disk flattened into a new base image `<name>-disk<N>.vdi` (or the
source's file name with KeepDiskNames); MachineAndChildStates / AllStates also copy the
snapshots (of the source snapshot's subtree, or all), recreating each differencing chain under
new UUIDs. Link makes a linked clone of a snapshot: the target's disks are new differencing
images on the snapshot's disks, kept in the target's Snapshots folder. Saved states are copied.
"""

from __future__ import annotations

import logging
import os
import uuid as uuidlib
from pathlib import Path

import vmm.storage as st  # the only part of the VMM the service uses: image formats
from settings import paths as spaths
from settings.models import Hardware, MachineSettings, generate_mac

from ..api import errors as rc
from ..api.enums import CloneMode, CloneOptions, DeviceType, MachineState, MediumState
from ..api.errors import VBoxError
from .progress import Progress, run_in_thread
from .statedeps import OFFLINE

log = logging.getLogger("vboxsvc.clone")


def _err(code: int, text: str) -> VBoxError:
    return VBoxError(code, text, "IMachine", "MachineWrap")


def _hard_disks(hw: Hardware):
    for c in hw.storage_controllers:
        for dev in c.devices:
            if dev.type == "HardDisk" and dev.medium is not None:
                yield dev


def _fix_identity(hw: Hardware, options: set) -> None:
    for nic in hw.network_adapters:
        keep = CloneOptions.KeepAllMACs in options or (CloneOptions.KeepNATMACs in options
                                                      and nic.attachment_type == "NAT")
        if not keep:
            nic.mac = generate_mac()
    if CloneOptions.KeepHwUUIDs not in options:
        hw.hardware_uuid = None


def clone_to(view, target, mode: CloneMode, options: list) -> Progress:
    """`target`: the view of a new machine (the façade has checked that it is one)."""
    src_core = view._core
    snap_id = getattr(view, "snapshot_id", None)
    tcore = target._core
    if tcore.registered or tcore is src_core:
        raise _err(rc.E_INVALIDARG, "The target machine must be a new, unregistered machine")
    opts = {CloneOptions(o) for o in options}
    if CloneOptions.Link in opts and snap_id is None:
        raise _err(rc.E_INVALIDARG, "Linked clone can only be created from a snapshot")
    if src_core.data is None:
        raise _err(rc.E_ACCESSDENIED, f"The machine '{src_core.name}' is inaccessible")
    if snap_id is None and src_core.state not in OFFLINE:
        raise _err(rc.VBOX_E_INVALID_VM_STATE,
                   "Cloning the current state of a running machine is not supported by "
                                               "vboxpy; take a snapshot and clone the snapshot")
    plan = _Plan(src_core, tcore, snap_id, CloneMode(mode), opts)
    plan.build()
    progress = Progress(f"Cloning machine '{src_core.name}' to '{tcore.name}'", initiator=view,
                        cancelable=True,
                        operations=[("Copying settings", 1)] + [(f"Copying '{os.path.basename(s)}'", 10)
                                                                for _k, s, *_ in plan.jobs]
                        + [("Copying saved states", 1)])
    return run_in_thread(progress, plan.run, plan.finish)


class _Plan:
    def __init__(self, src, tgt, snap_id, mode: CloneMode, opts: set):
        self.src, self.tgt, self.snap_id, self.mode, self.opts = src, tgt, snap_id, mode, opts
        self.jobs: list[tuple] = []          # (kind, src path, dst path, new uuid, parent medium id | None)
        self.new_ids: dict[str, str] = {}    # source medium id -> target medium id
        self.states: list[tuple[str, str]] = []
        self.data: MachineSettings | None = None

    # --- planning (bus thread) ---------------------------------------------------------------
    def build(self) -> None:
        s = self.src.data
        t = self.tgt.data
        folder = self.tgt.path.parent
        self.snap_folder = spaths.snapshot_folder(self.tgt.path, "Snapshots")
        snap = s.find_snapshot(self.snap_id) if self.snap_id is not None else None
        if self.snap_id is not None and snap is None:
            raise _err(rc.VBOX_E_OBJECT_NOT_FOUND, f"Could not find a snapshot with UUID {{{self.snap_id}}}")
        data = s.model_copy(deep=True)
        if snap is not None:
            data.hardware = snap.hardware.model_copy(deep=True)
            data.state_file = snap.state_file
        keep_tree = self.mode != CloneMode.MachineState and CloneOptions.Link not in self.opts
        if keep_tree and snap is not None and self.mode == CloneMode.MachineAndChildStates:
            data.snapshot = snap.model_copy(deep=True)
            data.current_snapshot = snap.uuid
        elif keep_tree and snap is None and self.mode == CloneMode.AllStates:
            pass                              # the whole tree and the current state as they are
        elif keep_tree and snap is not None:  # AllStates from a snapshot: the tree, current = that snapshot
            data.current_snapshot = snap.uuid
        else:
            data.snapshot = None
            data.current_snapshot = None
        if data.snapshot is None:
            data.current_snapshot = None
            data.current_state_modified = True
        data.uuid = t.uuid
        data.name = t.name
        data.directory_includes_uuid = t.directory_includes_uuid
        data.snapshot_folder = "Snapshots"
        data.groups = list(t.groups)
        data.aborted = False
        data.last_state_change = t.last_state_change
        data.media_registry = t.media_registry.model_copy()
        for hw in [data.hardware] + [x.hardware for x in data.snapshots()]:
            _fix_identity(hw, self.opts)
        self.data = data
        self._plan_states(data)
        self._plan_media(data, folder)

    def _plan_states(self, data: MachineSettings) -> None:
        for holder in [data] + data.snapshots():
            if holder.state_file:
                if not os.path.isfile(holder.state_file):
                    raise _err(rc.VBOX_E_FILE_ERROR, f"Saved state file '{holder.state_file}' is missing")
                dst = str(self.snap_folder / spaths.state_file_name())
                while dst in [d for _s, d in self.states]:
                    dst = str(self.snap_folder / spaths.state_file_name())
                self.states.append((holder.state_file, dst))
                holder.state_file = dst

    def _plan_media(self, data: MachineSettings, folder: Path) -> None:
        reg = self.src.vbox.media
        hws = [data.hardware] + [x.hardware for x in data.snapshots()]
        used = []
        for hw in hws:
            for dev in _hard_disks(hw):
                m = reg.by_id.get(str(dev.medium))
                if m is None:
                    raise _err(rc.VBOX_E_OBJECT_NOT_FOUND, f"Could not find an open hard disk with UUID "
                                                           f"{{{dev.medium}}}")
                if m.state != MediumState.Created and m.refresh_state() != MediumState.Created:
                    raise _err(rc.VBOX_E_INVALID_OBJECT_STATE, f"Medium '{m.location}' is not accessible: "
                                                               f"{m.last_access_error}")
                if m not in used:
                    used.append(m)
        disk_no = 0
        taken: set[str] = set()

        def base_name(m) -> str:
            nonlocal disk_no
            if CloneOptions.KeepDiskNames in self.opts:
                name = os.path.basename(m.base.location)
            else:
                disk_no += 1
                name = f"{spaths.sanitise_name(data.name)}-disk{disk_no}.vdi"
            path = str(folder / name)
            if path in taken or os.path.exists(path):
                raise _err(rc.VBOX_E_FILE_ERROR,
                           f"Could not create the clone medium '{path}' (VERR_ALREADY_EXISTS)")
            taken.add(path)
            return path

        def diff_path(uid: str) -> str:
            return str(self.snap_folder / spaths.diff_image_name(uid))

        if CloneOptions.Link in self.opts:
            for m in used:
                uid = str(uuidlib.uuid4())
                self.jobs.append(("link", m.location, diff_path(uid), uid, m.id))
                self.new_ids[m.id] = uid
        elif self.mode == CloneMode.MachineState or data.snapshot is None:
            for m in used:
                uid = str(uuidlib.uuid4())
                self.jobs.append(("flat", m.location, base_name(m), uid, None))
                self.new_ids[m.id] = uid
        else:
            chain: list = []
            for m in used:
                line = []
                x = m
                while x is not None:
                    line.append(x)
                    x = x.parent
                for x in reversed(line):
                    if x not in chain:
                        chain.append(x)
            for m in chain:                      # parents before children
                uid = str(uuidlib.uuid4())
                if m.parent is None:
                    self.jobs.append(("flat", m.location, base_name(m), uid, None))
                else:
                    self.jobs.append(("diff", m.location, diff_path(uid), uid, m.parent.id))
                self.new_ids[m.id] = uid
        fresh: dict[int, str] = {}
        if data.snapshot is not None and CloneOptions.Link not in self.opts:
            # a current state taken from a snapshot must not write into that snapshot's disks:
            # it gets new differencing images on them, as after a restore
            frozen = {str(dev.medium) for x in data.snapshots() for dev in _hard_disks(x.hardware)}
            for dev in _hard_disks(data.hardware):
                if str(dev.medium) in frozen:
                    uid = str(uuidlib.uuid4())
                    self.jobs.append(("fresh", "", diff_path(uid), uid, str(dev.medium)))
                    fresh[id(dev)] = uid
        for hw in hws:
            for dev in _hard_disks(hw):
                dev.medium = uuidlib.UUID(fresh.get(id(dev)) or self.new_ids[str(dev.medium)])

    def _key(self, kind: str, uid: str) -> str:
        """Jobs are known by the source medium they copy (a fresh current-state diff by its own id)."""
        if kind == "fresh":
            return "fresh:" + uid
        return next(k for k, v in self.new_ids.items() if v == uid)

    # --- copying (worker thread) -----------------------------------------------------------------
    def run(self, p: Progress) -> None:
        made: list[str] = []
        resolver = self.src.vbox.media.resolver()
        dst_of = {}
        try:
            for i, (kind, src, dst, uid, parent_id) in enumerate(self.jobs):
                p.set_operation(i + 1)
                if p.canceled:
                    raise VBoxError(rc.E_FAIL, "Operation was canceled")
                os.makedirs(os.path.dirname(dst), exist_ok=True)

                def cb(frac):
                    if p.canceled:
                        raise VBoxError(rc.E_FAIL, "Operation was canceled")
                    p.set_percent(int(frac * 100))
                if kind == "link":
                    st.create_diff_vdi(dst, src, uuid=uid, parent_resolver=resolver).close()
                elif kind == "fresh":
                    made_by_uuid = {self.new_ids[k]: v for k, v in dst_of.items() if k in self.new_ids}
                    st.create_diff_vdi(dst, dst_of[parent_id], uuid=uid,
                                       parent_resolver=made_by_uuid.__getitem__).close()
                elif kind == "flat":
                    st.clone_image(src, dst, fmt="VDI", flatten=True, progress=cb, uuid=uid,
                                   parent_resolver=resolver)
                else:
                    st.clone_image(src, dst, fmt="VDI", flatten=False, progress=cb, uuid=uid,
                                   parent_resolver=resolver)
                    parent_dst = dst_of[parent_id]
                    info = st.image_info(parent_dst)
                    # the copied child points at the copied parent
                    st.set_uuids(dst, parent_uuid=info.uuid, parent_modify_uuid=info.modify_uuid)
                made.append(dst)
                dst_of[self._key(kind, uid)] = dst
            p.set_operation(len(self.jobs) + 1)
            for src, dst in self.states:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                with open(src, "rb") as fi, open(dst, "wb") as fo:
                    while chunk := fi.read(1 << 20):
                        fo.write(chunk)
                made.append(dst)
        except BaseException as e:
            for path in made:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            if isinstance(e, VBoxError):
                raise
            raise _err(rc.VBOX_E_FILE_ERROR, f"Could not clone the machine: {e}") from None
        self.dst_of = dst_of

    # --- registering (bus thread) ------------------------------------------------------------------
    def finish(self, _result, err) -> None:
        if err is not None:
            return
        from .media import Medium
        reg = self.src.vbox.media
        tid = self.tgt.id
        new_media = {}
        for kind, _src, dst, uid, parent_id in self.jobs:
            m = Medium(reg, uid, dst, "VDI", DeviceType.HardDisk)
            if kind == "link":
                parent = reg.by_id[parent_id]
            elif kind in ("diff", "fresh"):
                parent = new_media[parent_id]
            else:
                parent = None
            reg.add_made(m, parent, tid)
            new_media[self._key(kind, uid)] = m
        self.tgt.data = self.data
        self.tgt.state = MachineState[self.data.persisted_state]
        self.tgt.save(force=True)
