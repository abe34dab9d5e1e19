"""The `<Machine>` element of a .vbox file: attributes, description, media registry, extra data,
groups, the snapshot tree and the current hardware (Settings.cpp, MachineConfigFile)."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from . import hardware_xml, media_xml
from .hardware_xml import OWNER_CHILDREN
from .models import MachineSettings, Snapshot, now_utc
from .paths import relative_location, resolve_location
from .xmllists import read_extra_data, sync_keyed, write_extra_data
from .xmltree import (
    child,
    children,
    fmt_time,
    fmt_uuid,
    get_bool,
    get_uuid,
    is_empty,
    new_child,
    opt_uuid,
    parse_time,
    parse_uuid,
    problem,
    put,
    put_bool,
    put_str,
    remove,
    required,
    set_attr,
)

MACHINE_ATTRS = ("uuid", "name", "directoryIncludesUUID", "nameSync", "OSType", "stateKeyId",
                 "stateKeyStore", "logKeyId", "logKeyStore", "stateFile", "currentSnapshot",
                 "snapshotFolder", "currentStateModified", "lastStateChange", "aborted", "processPriority",
                 "executionEngine", "icon")
SNAPSHOT_ATTRS = ("uuid", "name", "timeStamp", "stateFile")
MAX_SNAPSHOT_DEPTH = 250  # SETTINGS_SNAPSHOT_DEPTH_MAX


# ------------------------------------------------------------------ reading

def _text(el: etree._Element | None) -> str:
    return (el.text or "") if el is not None else ""


def _state_path(folder: Path, text: str | None) -> str:
    return str(resolve_location(folder, text)) if text else ""


def _read_snapshot(el: etree._Element, sv: int, folder: Path, depth: int) -> Snapshot:
    if depth > MAX_SNAPSHOT_DEPTH:
        raise problem(el, f"Maximum snapshot tree depth of {MAX_SNAPSHOT_DEPTH} exceeded")
    ts = el.get("timeStamp")
    return Snapshot(
        uuid=get_uuid(el, "uuid"),
        name=required(el, "name"),
        description=_text(child(el, "Description")),
        time_stamp=parse_time(required(el, "timeStamp"), el) if ts is not None else now_utc(),
        state_file=_state_path(folder, el.get("stateFile")),
        hardware=hardware_xml.read_hardware(el, sv),
        children=[_read_snapshot(c, sv, folder, depth + 1)
                  for c in children(child(el, "Snapshots"), "Snapshot")] if child(el, "Snapshots") is not None
        else [],
    )


def read_machine(root: etree._Element, sv: int, folder: Path) -> MachineSettings:
    m = child(root, "Machine")
    if m is None:
        if child(root, "MachineEncrypted") is not None:
            raise problem(child(root, "MachineEncrypted"), "Encrypted machine settings are not supported")
        raise problem(root, "Required Machine element is missing")
    groups_el = child(m, "Groups")
    groups = [required(g, "name") for g in children(groups_el, "Group")] if groups_el is not None else []
    snap_el = child(m, "Snapshot")
    lsc = m.get("lastStateChange")
    try:
        settings = MachineSettings(
            uuid=get_uuid(m, "uuid"),
            name=required(m, "name"),
            name_sync=get_bool(m, "nameSync", True),
            directory_includes_uuid=get_bool(m, "directoryIncludesUUID", False),
            os_type=m.get("OSType", "Other"),
            description=_text(child(m, "Description")),
            groups=groups or ["/"],
            state_file=_state_path(folder, m.get("stateFile")),
            current_snapshot=opt_uuid(m, "currentSnapshot"),
            snapshot_folder=m.get("snapshotFolder", "Snapshots") or "Snapshots",
            current_state_modified=get_bool(m, "currentStateModified", True),
            last_state_change=parse_time(lsc, m) if lsc else now_utc(),
            aborted=get_bool(m, "aborted", False),
            extra_data=read_extra_data(m),
            media_registry=media_xml.read_registry(child(m, "MediaRegistry"), folder),
            hardware=hardware_xml.read_hardware(m, sv),
            snapshot=_read_snapshot(snap_el, sv, folder, 1) if snap_el is not None else None,
        )
    except ValueError as e:
        raise problem(m, f"Invalid machine settings: {e}")
    if settings.current_snapshot and settings.find_snapshot(settings.current_snapshot) is None:
        raise problem(m, f"Snapshot {fmt_uuid(settings.current_snapshot)} referenced by "
                         "Machine/@currentSnapshot does not exist")
    return settings


# ------------------------------------------------------------------ writing

def _put_uuid(el, name, value, order, default=None):
    put(el, name, value, default=default, always=default is None and value is not None, order=order,
        fmt=fmt_uuid, read=lambda e, n, d: parse_uuid(e.get(n)) if e.get(n) else d)


def _put_state_file(el, value: str, folder: Path, order) -> None:
    current = el.get("stateFile")
    if value and (current is None or str(resolve_location(folder, current)) != value):
        set_attr(el, "stateFile", relative_location(folder, value), order)
    elif not value:
        el.attrib.pop("stateFile", None)


def _put_description(el: etree._Element, text: str) -> None:
    desc = child(el, "Description")
    if text:
        desc = desc if desc is not None else new_child(el, "Description", OWNER_CHILDREN)
        if desc.text != text:
            desc.text = text
    else:
        remove(desc)


def _snapshot_key(e: etree._Element):
    try:
        return parse_uuid(e.get("uuid", ""))
    except Exception:
        return id(e)


def _write_snapshot(el: etree._Element, s: Snapshot, sv: int, folder: Path) -> None:
    _put_uuid(el, "uuid", s.uuid, SNAPSHOT_ATTRS)
    put_str(el, "name", s.name, always=True, order=SNAPSHOT_ATTRS)
    put(el, "timeStamp", s.time_stamp, always=True, order=SNAPSHOT_ATTRS, fmt=fmt_time,
        read=lambda e, n, d: parse_time(e.get(n)) if e.get(n) else d)
    _put_state_file(el, s.state_file, folder, SNAPSHOT_ATTRS)
    _put_description(el, s.description)
    hardware_xml.write_hardware(el, s.hardware, sv)
    box = child(el, "Snapshots")
    if box is None and s.children:
        box = new_child(el, "Snapshots", OWNER_CHILDREN)
    if box is not None:
        sync_keyed(box, "Snapshot", s.children, _snapshot_key, lambda c: c.uuid,
                   lambda e, c: _write_snapshot(e, c, sv, folder))
        if not s.children and is_empty(box):
            remove(box)


def write_machine(root: etree._Element, s: MachineSettings, sv: int, folder: Path) -> None:
    m = child(root, "Machine")
    if m is None:
        m = new_child(root, "Machine")
    o = MACHINE_ATTRS
    _put_uuid(m, "uuid", s.uuid, o)
    put_str(m, "name", s.name, always=True, order=o)
    put_bool(m, "directoryIncludesUUID", s.directory_includes_uuid, default=False, order=o)
    put_bool(m, "nameSync", s.name_sync, default=True, order=o)
    put_str(m, "OSType", s.os_type, default="Other", always=True, order=o)
    _put_state_file(m, s.state_file, folder, o)
    _put_uuid(m, "currentSnapshot", s.current_snapshot, o, default=None)
    if s.current_snapshot is None:
        m.attrib.pop("currentSnapshot", None)
    put_str(m, "snapshotFolder", s.snapshot_folder, default="Snapshots", always=True, order=o)
    put_bool(m, "currentStateModified", s.current_state_modified, default=True, order=o)
    put(m, "lastStateChange", s.last_state_change, always=True, order=o, fmt=fmt_time,
        read=lambda e, n, d: parse_time(e.get(n)) if e.get(n) else d)
    put_bool(m, "aborted", s.aborted, default=False, order=o)
    _put_description(m, s.description)
    media_xml.write_registry(m, s.media_registry, folder, OWNER_CHILDREN)
    write_extra_data(m, s.extra_data, OWNER_CHILDREN)
    snap = child(m, "Snapshot")
    if s.snapshot is None:
        remove(snap)
    else:
        if snap is not None and _snapshot_key(snap) != s.snapshot.uuid:
            remove(snap)
            snap = None
        if snap is None:
            snap = new_child(m, "Snapshot", OWNER_CHILDREN)
        _write_snapshot(snap, s.snapshot, sv, folder)
    hardware_xml.write_hardware(m, s.hardware, sv)
    groups = child(m, "Groups")
    current = [g.get("name") for g in children(groups, "Group")] if groups is not None else []
    if (current or ["/"]) != s.groups:
        if groups is None:
            groups = new_child(m, "Groups", OWNER_CHILDREN)
        for g in children(groups, "Group"):
            groups.remove(g)
        if s.groups == ["/"] and is_empty(groups):
            remove(groups)
        else:
            for name in s.groups:
                new_child(groups, "Group").set("name", name)
