"""`<GuestProperties>` and `<SharedFolders>` of a `<Hardware>`: the guest-facing lists.

VirtualBox (Settings.cpp, buildHardwareXML) writes each list only when it has entries:
`<GuestProperty name value timestamp flags/>` (timestamp in nanoseconds since the epoch, flags
as GuestPropWriteFlags prints them) and `<SharedFolder name hostPath writable autoMount
[autoMountPoint]/>`. Transient guest properties (TRANSIENT, TRANSRESET) live only while the VM
runs and are never written. A list that did not change is left untouched in the tree.
"""

from __future__ import annotations

from lxml import etree

from .models import GuestProperty, SharedFolder
from .xmltree import child, children, fmt_bool, get_bool, get_int, new_child, problem, remove, required

_TRANSIENT_WORDS = ("TRANSIENT", "TRANSRESET")


def is_transient(flags: str) -> bool:
    return any(w.strip().upper() in _TRANSIENT_WORDS for w in flags.replace(" ", ",").split(","))


def read_guest_properties(hw: etree._Element) -> list[GuestProperty]:
    out = []
    for p in children(child(hw, "GuestProperties"), "GuestProperty"):
        name = required(p, "name", "GuestProperty")
        out.append(GuestProperty(name=name, value=p.get("value", ""), timestamp=get_int(p, "timestamp", 0),
                                 flags=p.get("flags", "")))
    return out


def read_shared_folders(hw: etree._Element) -> list[SharedFolder]:
    out: list[SharedFolder] = []
    for f in children(child(hw, "SharedFolders"), "SharedFolder"):
        name = required(f, "name", "SharedFolder")
        if any(o.name == name for o in out):
            raise problem(f, f"Shared folder named '{name}' already exists")
        out.append(SharedFolder(name=name, host_path=required(f, "hostPath", "SharedFolder"),
                                writable=get_bool(f, "writable", True),
                                auto_mount=get_bool(f, "autoMount", False),
                                auto_mount_point=f.get("autoMountPoint", "")))
    return out


def write_guest_properties(hw: etree._Element, props: list[GuestProperty], order) -> None:
    keep = [p for p in props if not is_transient(p.flags)]
    if read_guest_properties(hw) == keep:
        return
    remove(child(hw, "GuestProperties"))
    if not keep:
        return
    parent = new_child(hw, "GuestProperties", order)
    for p in keep:
        el = new_child(parent, "GuestProperty")
        el.set("name", p.name)
        el.set("value", p.value)
        el.set("timestamp", str(p.timestamp))
        el.set("flags", p.flags)


def write_shared_folders(hw: etree._Element, folders: list[SharedFolder], order) -> None:
    if read_shared_folders(hw) == folders:
        return
    remove(child(hw, "SharedFolders"))
    if not folders:
        return
    parent = new_child(hw, "SharedFolders", order)
    for f in folders:
        el = new_child(parent, "SharedFolder")
        el.set("name", f.name)
        el.set("hostPath", f.host_path)
        el.set("writable", fmt_bool(f.writable))
        el.set("autoMount", fmt_bool(f.auto_mount))
        if f.auto_mount_point:
            el.set("autoMountPoint", f.auto_mount_point)
