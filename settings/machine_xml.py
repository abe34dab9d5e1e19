"""The `<Machine>` element of a .vbox file: attributes, description, media registry, extra data,
groups, the snapshot tree and the current hardware (reference §3.6).

Also the version rules: which settings need which format version (`required_minor`), and how an
existing tree is moved to a newer layout when a save has to bump it (`migrate_layout`).
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from . import hardware_xml, media_xml, storage_xml
from .hardware_xml import CPU_ATTRS, OWNER_CHILDREN, PLATFORM_CHILDREN
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


# ------------------------------------------------------------------ versions

SAME_KIND = {"LsiLogic": "LsiLogic", "BusLogic": "BusLogic"}


def _hardware_minor(h) -> int:
    """What one Hardware needs: `MachineConfigFile::bumpSettingsVersionIfNeeded` for the settings
    we model (7.1's rules for 1.20 from the reference)."""
    nics = h.network_adapters
    enabled = [a for a in nics if a.enabled]
    ctrls = h.storage_controllers
    used = [c for c in ctrls if c.devices]
    kinds = [SAME_KIND.get(c.controller_type, c.bus) for c in ctrls]
    rules = [
        (20, h.graphics_controller == "QemuRamFB" or h.chipset == "ARMv8Virtual"),
        # 7.0: host-only network attachment
        (19, any(a.attachment_type == "HostOnlyNetwork" for a in nics)),
        # 6.1: virtio-scsi, cloud networks
        (18, any(c.controller_type == "VirtioSCSI" for c in ctrls)
         or any(a.attachment_type == "Cloud" for a in enabled)),
        # 6.0: nested hardware virtualisation, UART type
        (17, h.nested_hw_virt or any(p.uart_type != "U16550A" for p in h.uarts)),
        # 5.1: NVMe, CPU profile, APIC settings
        (16, any(c.controller_type == "NVMe" for c in ctrls) or h.cpu_profile != "host"
         or h.bios_apic_mode != "APIC" or not h.apic or h.x2apic),
        # 5.0: paravirt providers, explicit hot-plug flag (AHCI used to be hot-pluggable, nothing
        # else), USB storage, TCP serial ports
        (15, h.paravirt_provider != "Legacy" or any(c.controller_type == "USB" for c in ctrls)
         or any(d.hotpluggable != (c.controller_type == "IntelAhci") for c in ctrls for d in c.devices)
         or any(p.port_mode == "TCP" for p in h.uarts)),
        # 4.3: graphics controller, explicit long mode, NAT networks
        (14, h.graphics_controller != "VBoxVGA" or h.long_mode is not None
         or any(a.attachment_type == "NATNetwork" for a in nics)),
        # 4.1: promiscuous mode policy, generic driver
        (12, any(a.promisc_mode_policy != "Deny" or a.attachment_type == "Generic" or a.generic_driver
                 for a in nics)),
        # 4.0: execution cap, ICH9, several controllers of one kind, bandwidth groups
        (11, h.cpu_execution_cap != 100 or h.chipset == "ICH9" or len(set(kinds)) != len(kinds)
         or any(d.bandwidth_group for c in ctrls for d in c.devices)),
        # 3.2: host I/O cache off, page fusion, UTC clock, CPU hot-plug, HID, HPET, NAT details
        (10, any(not c.use_host_io_cache for c in used) or h.page_fusion or h.rtc_use_utc or h.cpu_hotplug
         or (h.pointing_hid, h.keyboard_hid) != ("PS2Mouse", "PS2Keyboard") or h.hpet
         or any(a.attachment_type == "NAT" and a.nat_rules or a.boot_priority for a in enabled)),
        # 3.1: EFI, hardware UUID, controller instances; DVD and floppy moved into controllers
        (9, h.firmware != "BIOS" or h.hardware_uuid is not None or any(c.instance for c in used)),
    ]
    return max([v for v, needed in rules if needed], default=7)


def required_minor(s: MachineSettings, read_minor: int = 20) -> int:
    """The lowest 1.x that can hold the settings in use. Files read older than 1.9 are written
    as 1.9: their DVD/floppy drives are modelled as controller attachments."""
    need = max(_hardware_minor(h) for h in [s.hardware] + [x.hardware for x in s.snapshots()])
    if s.groups != ["/"] or s.directory_includes_uuid:  # 4.2: groups, UUID in the directory name
        need = max(need, 13)
    if not s.media_registry.is_empty():  # 4.0: per-machine media registries
        need = max(need, 11)
    if read_minor < 9:
        need = max(need, 9)
    return need


def _owners(root: etree._Element) -> list[etree._Element]:
    m = child(root, "Machine")
    if m is None:
        return []
    return [m] + [e for e in m.iter() if isinstance(e.tag, str) and etree.QName(e).localname == "Snapshot"]


def migrate_layout(root: etree._Element, old: int, new: int) -> None:
    """Move existing elements to where version `new` keeps them (content, unknown parts included,
    moves along)."""
    for owner in _owners(root):
        hw = child(owner, "Hardware")
        if hw is None:
            continue
        if old < 8 <= new:  # pre-1.8 short controller names
            for c in children(child(owner, "StorageControllers"), "StorageController"):
                if c.get("name") in storage_xml.SHORT_NAMES:
                    c.set("name", storage_xml.SHORT_NAMES[c.get("name")])
        if old < 9 <= new:  # the drives are written as attachments now
            for tag in ("DVDDrive", "FloppyDrive"):
                remove(child(hw, tag))
        if old < 17 <= new:
            sc = child(owner, "StorageControllers")
            if sc is not None:
                owner.remove(sc)
                anchor = hardware_xml.new_child(hw, "StorageControllers", hardware_xml.HW_CHILDREN)
                anchor.addprevious(sc)
                hw.remove(anchor)
        if old < 20 <= new:
            _to_platform(owner, hw)


def _to_platform(owner: etree._Element, hw: etree._Element) -> None:
    platform = child(owner, "Platform")
    if platform is None:
        platform = new_child(owner, "Platform", OWNER_CHILDREN)
        platform.set("architecture", "x86")
    for tag in ("RTC", "Chipset", "Iommu"):
        el = child(hw, tag)
        if el is not None:
            hw.remove(el)
            platform.append(el)
    x86 = child(platform, "x86")
    if x86 is None:
        x86 = new_child(platform, "x86", PLATFORM_CHILDREN)
    hpet = child(hw, "HPET")
    if hpet is not None:
        hw.remove(hpet)
        x86.insert(0, hpet)
    cpu = child(hw, "CPU")
    if cpu is not None:
        hw.remove(cpu)
        generic = new_child(platform, "CPU", PLATFORM_CHILDREN)
        for k in CPU_ATTRS:
            if k in cpu.attrib:
                generic.set(k, cpu.attrib.pop(k))
        tree = child(cpu, "CpuTree")
        if tree is not None:
            cpu.remove(tree)
            generic.append(tree)
        old = child(x86, "CPU")
        remove(old)
        x86.append(cpu)
    bios = child(hw, "BIOS")
    if bios is not None:
        fw = child(hw, "Firmware")
        if fw is None:
            fw = new_child(hw, "Firmware", hardware_xml.HW_CHILDREN)
        for c in list(bios):
            fw.append(c)
        for k, v in bios.attrib.items():
            fw.set(k, v)
        hw.remove(bios)
    for port in children(child(hw, "UART"), "Port") if child(hw, "UART") is not None else []:
        if "IOBase" in port.attrib and "IOAddress" not in port.attrib:
            items = [("IOAddress" if k == "IOBase" else k, v) for k, v in port.attrib.items()]
            port.attrib.clear()
            for k, v in items:
                port.set(k, v)
