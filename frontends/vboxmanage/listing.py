"""What `list` reports, read through the Main API, and its rendering; no click here.

Shared by the click command (cmd_list) and main's fast path for the plain `list vms` /
`list runningvms` forms that tools such as Vagrant call constantly, which then start
without importing click at all.
"""

import sys

from . import render_list
from .api import Api, call, is_api_error, safe_get
from .names import RUNNING_LIST_STATES, enum_int
from .output import current_identity

SUBCOMMANDS = ("vms", "runningvms", "hdds", "dvds", "floppies", "ostypes", "hostinfo", "systemproperties",
               "intnets", "hostonlyifs", "bridgedifs", "natnets", "dhcpservers")
# Lists of host networking objects vboxpy does not create (no host-only interfaces, NAT networks or
# DHCP servers in the registry; bridging needs a tap the VM process may not open): VirtualBox prints
# nothing at all for an empty list.
EMPTY_LISTS = ("hostonlyifs", "bridgedifs", "natnets", "dhcpservers")
NIC_SLOTS = 8
_FILE = "VBoxManageList.cpp"


def run(what: str, long_: bool, sort: bool, as_json: bool) -> int:
    data = collect(Api.vbox(), what, long_, sort)
    if as_json:
        import json

        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(render(what, data, long_))
    return 0


FAST_FORMS = {("vms",): ("vms", False), ("runningvms",): ("runningvms", False),
              ("vms", "--sorted"): ("vms", True), ("--sorted", "vms"): ("vms", True),
              ("-s", "vms"): ("vms", True), ("vms", "-s"): ("vms", True)}


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
    if what == "intnets":
        return _internal_networks(vbox)
    if what in EMPTY_LISTS:
        return []
    return _systemproperties(vbox)


def _internal_networks(vbox) -> list[str]:
    """IVirtualBox::internalNetworks: the names on the adapters of the registered machines."""
    from vboxsvc.api import NetworkAttachmentType

    names: list[str] = []
    with call("COMGETTER(InternalNetworks)(ComSafeArrayAsOutParam(internalNetworks))", 1, _FILE):
        for m in vbox.machines:
            if not m.accessible:
                continue
            for slot in range(NIC_SLOTS):
                nic = m.get_network_adapter(slot)
                if enum_int(nic.attachment_type) == NetworkAttachmentType.Internal:
                    name = nic.internal_network or ""
                    if name and name not in names:
                        names.append(name)
    return names


def render(what: str, data, long_: bool) -> str:
    if what in ("vms", "runningvms"):
        if long_:
            from .render_vminfo import human

            return "".join(human(info) for info in data)
        return render_list.vms([(m["name"], m["uuid"]) for m in data])
    if what in ("hdds", "dvds", "floppies"):
        return render_list.media(data, parents=what == "hdds")
    if what == "ostypes":
        return render_list.ostypes_long(data) if long_ else render_list.ostypes(data)
    if what == "hostinfo":
        return render_list.hostinfo(data)
    if what == "intnets":
        return "".join(f"Name:        {n}\n" for n in data)
    if what in EMPTY_LISTS:
        return ""
    return render_list.systemproperties(data)


def _machines(vbox, running_only: bool, long_: bool, sort: bool) -> list:
    with call("COMGETTER(Machines)(ComSafeArrayAsOutParam(machines))", 1, _FILE):
        machines = list(vbox.machines)
        if running_only:
            states = vbox.get_machine_states(machines)
            machines = [m for m, s in zip(machines, states, strict=True)
                        if enum_int(s) in RUNNING_LIST_STATES]
        if long_:
            from .vminfo import collect

            rows = [collect(vbox, m) for m in machines]
            for row in rows:
                row.setdefault("name", "<inaccessible>")
        else:
            rows = [{"name": name, "uuid": uuid} for name, uuid in machine_list_entries(machines)]
    if sort:
        rows.sort(key=lambda r: r["name"].lower())
    return rows


def machine_list_entries(machines: list) -> list[tuple[str, str]]:
    """(name, uuid) of every machine, each read as machine_list_entry does, in one round trip."""
    if not machines:
        return []
    from .fetch import GET, batch

    got = batch([(m, GET, attr, ()) for m in machines for attr in ("id", "name")])
    out = []
    for i, machine in enumerate(machines):
        (id_ok, uuid), (name_ok, name) = got[2 * i], got[2 * i + 1]
        if not id_ok:
            raise uuid
        if not name_ok and not is_api_error(name):
            raise name
        out.append(machine_list_entry(machine, uuid, name if name_ok else None))
    return out


def machine_list_entry(machine, uuid: str | None = None, name: str | None = None) -> tuple[str, str]:
    """(name, uuid) for `list vms`; inaccessible machines show `<inaccessible>`.

    Two round trips per machine instead of VBoxManage's three: `accessible` is asked only
    when reading the name failed (VirtualBox's behaviour) or gave back the id (ours).
    """
    if uuid is None:
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
                     "family_desc": t.family_description, "subtype": safe_get(t, "os_subtype", ""),
                     "arch": enum_int(safe_get(t, "platform_architecture", 1)), "is64": bool(t.is64_bit)})
    if sort:
        rows.sort(key=lambda r: r["id"])  # VBoxManage sorts guest OS types by ID
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
    """listSystemProperties: (label with its column padding, value) rows; headings have no value."""
    from vboxsvc.api.enums import ChipsetType

    sp = vbox.system_properties
    if not current_identity().is_7_1:
        return _systemproperties_70(vbox, sp)

    def top(label: str, value) -> tuple[str, object]:
        return f"{label:<33}", value

    rows = [
        top("API version:", safe_get(vbox, "api_version", current_identity().api_version)),
        top("Minimum guest RAM size:", f"{sp.min_guest_ram} Megabytes"),
        top("Maximum guest RAM size:", f"{sp.max_guest_ram} Megabytes"),
        top("Minimum video RAM size:", f"{sp.min_guest_vram} Megabytes"),
        top("Maximum video RAM size:", f"{sp.max_guest_vram} Megabytes"),
        top("Maximum guest monitor count:", sp.max_guest_monitors),
        top("Minimum guest CPU count:", sp.min_guest_cpu_count),
        top("Maximum guest CPU count:", sp.max_guest_cpu_count),
        top("Virtual disk limit (info):", f"{sp.info_vd_size} Bytes"),
        top("Default machine folder:", sp.default_machine_folder),
        top("Raw-mode Supported:", "no"),
        top("Exclusive HW virtualization use:", "on" if safe_get(sp, "exclusive_hw_virt", True) else "off"),
        top("Default hard disk format:", sp.default_hard_disk_format),
        top("VRDE auth library:", safe_get(sp, "vrde_auth_library", "")),
        top("Webservice auth. library:", safe_get(sp, "web_service_auth_library", "")),
        top("Remote desktop ExtPack:", safe_get(sp, "default_vrde_ext_pack", "")),
        top("VM encryption ExtPack:", safe_get(sp, "default_crypto_ext_pack", "")),
        top("Log history count:", sp.log_history_count),
        top("Default frontend:", safe_get(sp, "default_frontend", "")),
        top("Default audio driver:", safe_get(sp, "default_audio_driver", "") or "Null"),
        top("Autostart database path:", safe_get(sp, "autostart_database_path", "")),
        top("Default Guest Additions ISO:", safe_get(sp, "default_additions_iso", "")),
        top("Logging Level:", safe_get(sp, "logging_level", "")),
        top("Proxy Mode:", "System"),
        top("Proxy URL:", ""),
        top("User language:", "C"),
        ("Host platform properties:", ""),
    ]
    platform = _platform_rows(sp, [ChipsetType.PIIX3, ChipsetType.ICH9])
    rows += platform + [("", ""), ("Supported platform architectures: ", "x86"), ("", ""),
                        ("x86 platform properties:", "")] + platform
    return rows


def _systemproperties_70(vbox, sp) -> list[tuple[str, object]]:
    """7.0's listSystemProperties: one flat list, the platform limits between the guest limits
    and the defaults (VBoxManage's own irregular label padding kept)."""
    from vboxsvc.api.enums import ChipsetType as C
    from vboxsvc.api.enums import StorageBus as B

    ports, devs = sp.get_max_port_count_for_storage_bus, sp.get_max_devices_per_port_for_storage_bus
    inst = sp.get_max_instances_of_storage_bus
    api_version = safe_get(vbox, "api_version", current_identity().api_version)
    rows = [("API version:                     ", api_version),
            ("Minimum guest RAM size:          ", f"{sp.min_guest_ram} Megabytes"),
            ("Maximum guest RAM size:          ", f"{sp.max_guest_ram} Megabytes"),
            ("Minimum video RAM size:          ", f"{sp.min_guest_vram} Megabytes"),
            ("Maximum video RAM size:          ", f"{sp.max_guest_vram} Megabytes"),
            ("Maximum guest monitor count:     ", sp.max_guest_monitors),
            ("Minimum guest CPU count:         ", sp.min_guest_cpu_count),
            ("Maximum guest CPU count:         ", sp.max_guest_cpu_count),
            ("Virtual disk limit (info):       ", f"{sp.info_vd_size} Bytes"),
            ("Maximum Serial Port count:       ", sp.serial_port_count),
            ("Maximum Parallel Port count:     ", sp.parallel_port_count),
            ("Maximum Boot Position:           ", sp.max_boot_position),
            ("Maximum PIIX3 Network Adapter count:   ", sp.get_max_network_adapters(C.PIIX3)),
            ("Maximum ICH9 Network Adapter count:   ", sp.get_max_network_adapters(C.ICH9))]
    for bus, _name, pi, ic, pc, dv in (
            (B.IDE, "IDE", "Maximum PIIX3 IDE Controllers:   ", "Maximum ICH9 IDE Controllers:    ",
             "Maximum IDE Port count:          ", "Maximum Devices per IDE Port:    "),
            (B.SATA, "SATA", "Maximum PIIX3 SATA Controllers:  ", "Maximum ICH9 SATA Controllers:   ",
             "Maximum SATA Port count:         ", "Maximum Devices per SATA Port:   "),
            (B.SCSI, "SCSI", "Maximum PIIX3 SCSI Controllers:  ", "Maximum ICH9 SCSI Controllers:   ",
             "Maximum SCSI Port count:         ", "Maximum Devices per SCSI Port:   "),
            (B.SAS, "SAS", "Maximum SAS PIIX3 Controllers:   ", "Maximum SAS ICH9 Controllers:    ",
             "Maximum SAS Port count:          ", "Maximum Devices per SAS Port:    "),
            (B.PCIe, "NVMe", "Maximum NVMe PIIX3 Controllers:  ", "Maximum NVMe ICH9 Controllers:   ",
             "Maximum NVMe Port count:         ", "Maximum Devices per NVMe Port:   "),
            (B.VirtioSCSI, "virtio-scsi", "Maximum virtio-scsi PIIX3 Controllers:  ",
             "Maximum virtio-scsi ICH9 Controllers:   ", "Maximum virtio-scsi Port count:         ",
             "Maximum Devices per virtio-scsi Port:   "),
            (B.Floppy, "Floppy", "Maximum PIIX3 Floppy Controllers:", "Maximum ICH9 Floppy Controllers: ",
             "Maximum Floppy Port count:       ", "Maximum Devices per Floppy Port: ")):
        rows += [(pi, inst(C.PIIX3, bus)), (ic, inst(C.ICH9, bus)), (pc, ports(bus)), (dv, devs(bus))]
    rows += [("Default machine folder:          ", sp.default_machine_folder),
             ("Raw-mode Supported:              ", "no"),
             ("Exclusive HW virtualization use: ",
              "on" if safe_get(sp, "exclusive_hw_virt", True) else "off"),
             ("Default hard disk format:        ", sp.default_hard_disk_format),
             ("VRDE auth library:               ", safe_get(sp, "vrde_auth_library", "")),
             ("Webservice auth. library:        ", safe_get(sp, "web_service_auth_library", "")),
             ("Remote desktop ExtPack:          ", safe_get(sp, "default_vrde_ext_pack", "")),
             ("VM encryption ExtPack:           ", safe_get(sp, "default_crypto_ext_pack", "")),
             ("Log history count:               ", sp.log_history_count),
             ("Default frontend:                ", safe_get(sp, "default_frontend", "")),
             ("Default audio driver:            ", safe_get(sp, "default_audio_driver", "") or "Null"),
             ("Autostart database path:         ", safe_get(sp, "autostart_database_path", "")),
             ("Default Guest Additions ISO:     ", safe_get(sp, "default_additions_iso", "")),
             ("Logging Level:                   ", safe_get(sp, "logging_level", "")),
             ("Proxy Mode:                      ", "System"),
             ("Proxy URL:                       ", ""),
             ("User language:                   ", "C")]
    return rows


def _platform_rows(sp, chipsets) -> list[tuple[str, object]]:
    """listPlatformProperties, with VBoxManage's own (irregular) label padding."""
    from vboxsvc.api.enums import StorageBus as B

    ports, devs = sp.get_max_port_count_for_storage_bus, sp.get_max_devices_per_port_for_storage_bus
    rows = [("Maximum Serial Port count:              ", sp.serial_port_count),
            ("Maximum Parallel Port count:            ", sp.parallel_port_count),
            ("Maximum Boot Position:                  ", sp.max_boot_position),
            ("Maximum Floppy Port count:              ", ports(B.Floppy)),
            ("Maximum Floppy Devices per Port:        ", devs(B.Floppy)),
            ("Maximum virtio-scsi Port count:         ", ports(B.VirtioSCSI)),
            ("Maximum virtio-scsi Devices per Port:   ", devs(B.VirtioSCSI)),
            ("Maximum IDE Port count:                 ", ports(B.IDE)),
            ("Maximum IDE Devices per port:           ", devs(B.IDE)),
            ("Maximum SATA Port count:                ", ports(B.SATA)),
            ("Maximum SATA Device per port:          ", devs(B.SATA)),
            ("Maximum SCSI Port count:                ", ports(B.SCSI)),
            ("Maximum SCSI Devices per port:          ", devs(B.SCSI)),
            ("Maximum SAS Port count:                 ", ports(B.SAS)),
            ("Maximum SAS Devices per Port:           ", devs(B.SAS)),
            ("Maximum NVMe Port count:                ", ports(B.PCIe)),
            ("Maximum NVMe Devices per Port:          ", devs(B.PCIe)),
            ("Supported chipsets:                     ", ", ".join(c.name for c in chipsets))]
    for i, chipset in enumerate(chipsets):
        name = chipset.name
        if i:
            rows.append(("", ""))

        def inst(bus, c=chipset):
            return sp.get_max_instances_of_storage_bus(c, bus)

        rows += [(f"{name} chipset properties:", ""),
                 (f"Maximum {name} Network Adapter count:   ", sp.get_max_network_adapters(chipset)),
                 (f"Maximum {name} IDE Controllers:   ", inst(B.IDE)),
                 (f"Maximum {name} SATA Controllers:  ", inst(B.SATA)),
                 (f"Maximum {name} SCSI Controllers:  ", inst(B.SCSI)),
                 (f"Maximum {name} SAS Controllers:   ", inst(B.SAS)),
                 (f"Maximum {name} NVMe Controllers:  ", inst(B.PCIe)),
                 (f"Maximum {name} virtio-scsi Controllers:  ", inst(B.VirtioSCSI)),
                 (f"Maximum {name} Floppy Controllers:", inst(B.Floppy))]
    return rows
