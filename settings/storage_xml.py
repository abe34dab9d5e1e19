"""`<StorageControllers>` with their `<AttachedDevice>`s (Settings.cpp,
MachineConfigFile::readStorageControllers).

Attachments name their medium by UUID only; where the file lives is the media registry's job.
The element sits under `<Hardware>` from 1.17 on and under `<Machine>`/`<Snapshot>` before; the
caller passes the right parent.
"""

from __future__ import annotations

from lxml import etree

from .models import BUS_OF_CONTROLLER, DEFAULT_PORT_COUNT, AttachedDevice, StorageController
from .xmllists import sync_keyed
from .xmltree import (
    child,
    children,
    ensure_child,
    fmt_uuid,
    get_bool,
    get_int,
    get_uuid,
    new_child,
    parse_uuid,
    problem,
    put,
    put_bool,
    put_int,
    put_str,
    remove,
    required,
    set_attr,
)

XML_TYPE = {"IntelAhci": "AHCI"}
API_TYPE = {"AHCI": "IntelAhci", **{t: t for t in BUS_OF_CONTROLLER if t != "IntelAhci"}}
CTRL_ATTRS = ("name", "type", "PortCount", "Instance", "useHostIOCache", "Bootable",
              "IDE0MasterEmulationPort", "IDE0SlaveEmulationPort", "IDE1MasterEmulationPort",
              "IDE1SlaveEmulationPort")
IDE_EMULATION = CTRL_ATTRS[6:]
DEV_ATTRS = ("passthrough", "tempeject", "nonrotational", "discard", "type", "hotpluggable", "port",
             "device", "bandwidthGroup")
DEV_CHILDREN = ("Image", "HostDrive")
DEVICE_TYPES = ("HardDisk", "DVD", "Floppy")


SHORT_NAMES = {"IDE": "IDE Controller", "SATA": "SATA Controller", "SCSI": "SCSI Controller"}  # pre-1.8


def _read_device(el: etree._Element, sv: int, ctype: str) -> AttachedDevice:
    dtype = required(el, "type")
    if dtype not in DEVICE_TYPES:
        raise problem(el, f"Invalid value '{dtype}' in AttachedDevice/@type element")
    image = child(el, "Image")
    host = child(el, "HostDrive")
    return AttachedDevice(
        type=dtype,
        port=get_int(el, "port", 0),
        device=get_int(el, "device", 0),
        medium=get_uuid(image, "uuid") if image is not None else None,
        host_drive=required(host, "src") if host is not None else "",
        nonrotational=get_bool(el, "nonrotational", False),
        discard=get_bool(el, "discard", False),
        # before 1.15 there was no flag: AHCI ports were hot-pluggable, nothing else
        hotpluggable=get_bool(el, "hotpluggable", False) if sv >= 15 else ctype == "IntelAhci",
        passthrough=get_bool(el, "passthrough", False),
        temp_eject=get_bool(el, "tempeject", False),
        bandwidth_group=el.get("bandwidthGroup", ""),
    )


def read_controllers(parent: etree._Element | None, sv: int) -> list[StorageController]:
    box = child(parent, "StorageControllers")
    if box is None:
        return []
    out = []
    for el in children(box, "StorageController"):
        name = required(el, "name")
        if sv < 8:
            name = SHORT_NAMES.get(name, name)
        xml_type = required(el, "type")
        ctype = API_TYPE.get(xml_type)
        if ctype is None:
            raise problem(el, f"Invalid value '{xml_type}' for StorageController/@type attribute")
        bus = BUS_OF_CONTROLLER[ctype]
        out.append(StorageController(
            name=name, bus=bus, controller_type=ctype,
            port_count=get_int(el, "PortCount", DEFAULT_PORT_COUNT[bus]),
            instance=get_int(el, "Instance", 0),
            use_host_io_cache=get_bool(el, "useHostIOCache", True),
            bootable=get_bool(el, "Bootable", True),
            ide_emulation_ports=tuple(get_int(el, a, i) for i, a in enumerate(IDE_EMULATION)),
            devices=[_read_device(d, sv, ctype) for d in children(el, "AttachedDevice")],
        ))
    return out


def _dev_key(el: etree._Element):
    try:
        return (int(el.get("port", "0"), 0), int(el.get("device", "0"), 0))
    except ValueError:
        return id(el)


def _write_device(el: etree._Element, d: AttachedDevice, sv: int) -> None:
    if d.type == "DVD":
        put_bool(el, "passthrough", d.passthrough, default=False, always=True, order=DEV_ATTRS)
        put_bool(el, "tempeject", d.temp_eject, default=False, order=DEV_ATTRS)
    else:
        set_attr(el, "passthrough", None)
        set_attr(el, "tempeject", None)
    hd = d.type == "HardDisk"
    put_bool(el, "nonrotational", d.nonrotational and hd, default=False, order=DEV_ATTRS)
    put_bool(el, "discard", d.discard and hd, default=False, order=DEV_ATTRS)
    put_str(el, "type", d.type, always=True, order=DEV_ATTRS)
    if sv >= 15:
        put_bool(el, "hotpluggable", d.hotpluggable, default=False, always=True, order=DEV_ATTRS)
    put_int(el, "port", d.port, always=True, order=DEV_ATTRS)
    put_int(el, "device", d.device, always=True, order=DEV_ATTRS)
    put_str(el, "bandwidthGroup", d.bandwidth_group, order=DEV_ATTRS)
    image = child(el, "Image")
    if d.medium is not None:
        image = image if image is not None else new_child(el, "Image", DEV_CHILDREN)
        put(image, "uuid", d.medium, always=True, fmt=fmt_uuid,
            read=lambda e, n, dflt: parse_uuid(e.get(n)) if e.get(n) else dflt)
    else:
        remove(image)
    host = child(el, "HostDrive")
    if d.host_drive and d.medium is None:
        host = host if host is not None else new_child(el, "HostDrive", DEV_CHILDREN)
        put_str(host, "src", d.host_drive, always=True)
    else:
        remove(host)


def _write_controller(el: etree._Element, c: StorageController, sv: int) -> None:
    put_str(el, "name", c.name, always=True, order=CTRL_ATTRS)
    put(el, "type", XML_TYPE.get(c.controller_type, c.controller_type), always=True, order=CTRL_ATTRS,
        read=lambda e, n, d: XML_TYPE.get(API_TYPE.get(e.get(n, ""), ""), e.get(n)))
    put_int(el, "PortCount", c.port_count, default=DEFAULT_PORT_COUNT[c.bus], always=True, order=CTRL_ATTRS)
    put_int(el, "Instance", c.instance, default=0, order=CTRL_ATTRS)
    put_bool(el, "useHostIOCache", c.use_host_io_cache, default=True, always=True, order=CTRL_ATTRS)
    put_bool(el, "Bootable", c.bootable, default=True, always=True, order=CTRL_ATTRS)
    for i, attr in enumerate(IDE_EMULATION):
        if c.controller_type == "IntelAhci":
            put_int(el, attr, c.ide_emulation_ports[i], default=i, always=True, order=CTRL_ATTRS)
        else:
            set_attr(el, attr, None)
    sync_keyed(el, "AttachedDevice", c.devices, _dev_key, lambda d: (d.port, d.device),
               lambda e, d: _write_device(e, d, sv))


def write_controllers(parent: etree._Element, controllers: list[StorageController], sv: int,
                      order) -> None:
    box = child(parent, "StorageControllers")
    if box is None:
        if not controllers:
            return
        box = ensure_child(parent, "StorageControllers", order)
    sync_keyed(box, "StorageController", controllers, lambda e: e.get("name"), lambda c: c.name,
               lambda e, c: _write_controller(e, c, sv))


def read_pre_1_9_drives(hw: etree._Element, controllers: list[StorageController]) -> None:
    """Files older than 1.9 keep the DVD and floppy drive in `<Hardware>`: the DVD is the IDE
    secondary master, an enabled floppy gets its own controller (`readDVDAndFloppies_pre1_9`)."""
    dvd = child(hw, "DVDDrive")
    if dvd is not None:
        ide = next((c for c in controllers if c.bus == "IDE"), None)
        if ide is None:
            raise problem(dvd, "Internal error: found DVD drive but IDE controller does not exist")
        image, host = child(dvd, "Image"), child(dvd, "HostDrive")
        ide.devices.append(AttachedDevice(
            type="DVD", port=1, device=0, passthrough=get_bool(dvd, "passthrough", False),
            medium=get_uuid(image, "uuid") if image is not None and image.get("uuid") else None,
            host_drive=(host.get("src") or "") if host is not None else ""))
    floppy = child(hw, "FloppyDrive")
    if floppy is not None and get_bool(floppy, "enabled", False):
        image, host = child(floppy, "Image"), child(floppy, "HostDrive")
        controllers.append(StorageController(
            name="Floppy Controller", bus="Floppy", controller_type="I82078", port_count=1,
            devices=[AttachedDevice(
                type="Floppy", port=0, device=0,
                medium=get_uuid(image, "uuid") if image is not None and image.get("uuid") else None,
                host_drive=(host.get("src") or "") if host is not None else "")]))
