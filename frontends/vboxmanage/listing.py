"""What `list` reports, read through the Main API, and its rendering; no click here.

Shared by the click command (cmd_list) and main's fast path for the plain `list vms` /
`list runningvms` forms that tools such as Vagrant call constantly, which then start
without importing click at all.
"""

import sys

from . import render_list
from .api import Api, call, is_api_error
from .names import RUNNING_LIST_STATES, enum_int

SUBCOMMANDS = ("vms", "runningvms", "hdds", "dvds", "floppies", "ostypes", "hostinfo", "systemproperties")
_FILE = "VBoxManageList.cpp"


def _get(obj, name: str, default):
    try:
        value = getattr(obj, name)
    except Exception:
        return default
    return default if value is None else value


def run(what: str, long_: bool, sort: bool, as_json: bool) -> int:
    data = collect(Api.vbox(), what, long_, sort)
    if as_json:
        import json

        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(render(what, data, long_))
    return 0


FAST_FORMS = {("vms",): ("vms", False), ("runningvms",): ("runningvms", False), ("vms", "--sorted"): ("vms", True),
              ("--sorted", "vms"): ("vms", True), ("-s", "vms"): ("vms", True), ("vms", "-s"): ("vms", True)}


def fast(rest: list[str]) -> int | None:
    """Handle the plain list forms without click; None when the arguments need the full parser."""
    form = FAST_FORMS.get(tuple(rest))
    if form is None:
        return None
    return run(form[0], False, form[1], False)


def collect(vbox, what: str, long_: bool, sort: bool):
    if what in ("vms", "runningvms"):
        return _machines(vbox, what == "runningvms", long_, sort)
    if what in ("hdds", "dvds", "floppies"):
        attr = {"hdds": "hard_disks", "dvds": "dvd_images", "floppies": "floppy_images"}[what]
        with call(f"COMGETTER({attr})(ComSafeArrayAsOutParam(media))", 1, _FILE):
            items = list_media(getattr(vbox, attr))
        if sort:
            items.sort(key=lambda m: m["location"])
        return items
    if what == "ostypes":
        return _ostypes(vbox, sort)
    if what == "hostinfo":
        return _hostinfo(vbox.host)
    return _systemproperties(vbox)


def render(what: str, data, long_: bool) -> str:
    if what in ("vms", "runningvms"):
        if long_:
            from .render_vminfo import human

            return "".join(human(info) for info in data)
        return render_list.vms([(m["name"], m["uuid"]) for m in data])
    if what in ("hdds", "dvds", "floppies"):
        return render_list.media(data)
    if what == "ostypes":
        return render_list.ostypes(data, long_)
    if what == "hostinfo":
        return render_list.hostinfo(data)
    return render_list.systemproperties(data)


def _machines(vbox, running_only: bool, long_: bool, sort: bool) -> list:
    with call("COMGETTER(Machines)(ComSafeArrayAsOutParam(machines))", 1, _FILE):
        machines = list(vbox.machines)
        if running_only:
            states = vbox.get_machine_states(machines)
            machines = [m for m, s in zip(machines, states, strict=True) if enum_int(s) in RUNNING_LIST_STATES]
        if long_:
            from .vminfo import collect

            rows = [collect(vbox, m) for m in machines]
            for row in rows:
                row.setdefault("name", "<inaccessible>")
        else:
            rows = [dict(zip(("name", "uuid"), machine_list_entry(m), strict=True)) for m in machines]
    if sort:
        rows.sort(key=lambda r: r["name"].lower())
    return rows


def machine_list_entry(machine) -> tuple[str, str]:
    """(name, uuid) for `list vms`; inaccessible machines show `<inaccessible>`.

    Two round trips per machine instead of VBoxManage's three: `accessible` is asked only
    when reading the name failed (VirtualBox's behaviour) or gave back the id (ours).
    """
    uuid = machine.id
    try:
        name = machine.name
    except Exception as exc:
        if not is_api_error(exc):
            raise
        name = None
    if (name is None or name == uuid) and not machine.accessible:
        return "<inaccessible>", uuid
    if name is None:
        name = machine.name  # accessible after all: let the error surface
    return name, uuid


def medium_dict(medium, with_children: bool = True) -> dict:
    parent = medium.parent
    try:
        state = enum_int(medium.refresh_state())
    except Exception:
        state = enum_int(medium.state)
    variants = 0
    for bit in medium.variant or []:
        variants |= enum_int(bit)
    data = {"uuid": medium.id, "parent": parent.id if parent is not None else "", "state": state,
            "type": enum_int(medium.type), "location": medium.location, "format": medium.format,
            "logical_size": int(medium.logical_size), "size": int(medium.size), "variant": variants,
            "description": medium.description or "", "auto_reset": bool(medium.auto_reset)}
    if with_children:
        data["children"] = [medium_dict(c) for c in medium.children]
    return data


def list_media(media) -> list[dict]:
    """Base media first, each followed depth-first by its children."""
    return [medium_dict(m) for m in media if m.parent is None]


def _ostypes(vbox, sort: bool) -> list[dict]:
    rows = []
    for t in vbox.guest_os_types:
        rows.append({"id": t.id, "description": t.description, "family_id": t.family_id,
                     "family_desc": t.family_description, "subtype": _get(t, "os_subtype", ""),
                     "arch": enum_int(_get(t, "platform_architecture", 1)), "is64": bool(t.is64_bit)})
    if sort:
        rows.sort(key=lambda r: r["description"].lower())
    return rows


def _hostinfo(host) -> dict:
    from vboxsvc.api.enums import ProcessorFeature

    count = int(host.processor_count)
    return {
        "time": render_list.host_time(int(host.utc_time)),
        "online_count": host.processor_online_count, "count": count,
        "online_cores": host.processor_online_core_count, "cores": host.processor_core_count,
        "features": {int(f): bool(host.get_processor_feature(f)) for f in ProcessorFeature},
        "cpus": [(int(host.get_processor_speed(i)), host.get_processor_description(i)) for i in range(count)],
        "memory": host.memory_size, "memory_available": host.memory_available,
        "os": host.operating_system, "os_version": host.os_version,
    }


def _systemproperties(vbox) -> list[tuple[str, object]]:
    from vboxsvc.api.enums import ChipsetType, StorageBus

    sp = vbox.system_properties
    rows = [
        ("API version:", _get(vbox, "api_version", "7_1")),
        ("Minimum guest RAM size:", f"{sp.min_guest_ram} Megabytes"),
        ("Maximum guest RAM size:", f"{sp.max_guest_ram} Megabytes"),
        ("Minimum video RAM size:", f"{sp.min_guest_vram} Megabytes"),
        ("Maximum video RAM size:", f"{sp.max_guest_vram} Megabytes"),
        ("Maximum guest monitor count:", sp.max_guest_monitors),
        ("Minimum guest CPU count:", sp.min_guest_cpu_count),
        ("Maximum guest CPU count:", sp.max_guest_cpu_count),
        ("Virtual disk limit (info):", f"{sp.info_vd_size} Bytes"),
        ("Free disk space warning at:", f"{_get(sp, 'free_disk_space_warning', 0)} Bytes"),
        ("Free disk space warning at:", f"{_get(sp, 'free_disk_space_percent_warning', 0)} %"),
        ("Free disk space error at:", f"{_get(sp, 'free_disk_space_error', 0)} Bytes"),
        ("Free disk space error at:", f"{_get(sp, 'free_disk_space_percent_error', 0)} %"),
        ("Default machine folder:", sp.default_machine_folder),
        ("Raw-mode Supported:", "no"),
        ("Exclusive HW virtualization use:", "on" if _get(sp, "exclusive_hw_virt", True) else "off"),
        ("Default hard disk format:", sp.default_hard_disk_format),
        ("VRDE auth library:", _get(sp, "vrde_auth_library", "")),
        ("Webservice auth. library:", _get(sp, "web_service_auth_library", "")),
        ("Remote desktop ExtPack:", _get(sp, "default_vrde_ext_pack", "")),
        ("VM encryption ExtPack:", ""),
        ("Log history count:", sp.log_history_count),
        ("Default frontend:", _get(sp, "default_frontend", "")),
        ("Default audio driver:", _get(sp, "default_audio_driver", "")),
        ("Autostart database path:", _get(sp, "autostart_database_path", "")),
        ("Default Guest Additions ISO:", _get(sp, "default_additions_iso", "")),
        ("Logging Level:", _get(sp, "logging_level", "")),
        ("Proxy Mode:", "System"),
        ("Proxy URL:", ""),
        ("User language:", "C"),
        ("Maximum Serial Port count:", sp.serial_port_count),
        ("Maximum Parallel Port count:", sp.parallel_port_count),
        ("Maximum Boot Position:", sp.max_boot_position),
        ("Supported chipsets:", "PIIX3, ICH9"),
    ]
    for chipset in (ChipsetType.PIIX3, ChipsetType.ICH9):
        rows.append((f"Maximum {chipset.name} Network Adapter count:", sp.get_max_network_adapters(chipset)))
    for bus in (StorageBus.IDE, StorageBus.SATA, StorageBus.SCSI, StorageBus.SAS, StorageBus.Floppy,
                StorageBus.PCIe, StorageBus.VirtioSCSI):
        label = {StorageBus.PCIe: "NVMe", StorageBus.VirtioSCSI: "virtio-scsi"}.get(bus, bus.name)
        rows.append((f"Maximum {label} Port count:", sp.get_max_port_count_for_storage_bus(bus)))
        rows.append((f"Maximum Devices per {label} Port:", sp.get_max_devices_per_port_for_storage_bus(bus)))
    return rows
